"""Every ```python block of docs/*.md and README.md runs, and every script under examples/ runs.

Blocks of one page run in order in one fresh namespace (a page may build on its earlier blocks); each page starts
afresh. Use ```text, ```console or ```bash for anything that must not run.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
PAGES = sorted((ROOT / "docs").glob("*.md")) + [p for p in [ROOT / "README.md"] if p.exists()]
PAGES_WITH_CODE = [p for p in PAGES if FENCE.search(p.read_text(encoding="utf-8"))]
#: Extra arguments per example script (outputs go to the test's temporary folder).
EXAMPLE_ARGS = {"compare_cells.py": ["--seq-len", "40", "--plot", "{tmp}/cells.png"]}
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(line number, code)`` of each ```python block."""
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in FENCE.finditer(text)]


def test_the_pages_with_code_are_found() -> None:
    names = {p.name for p in PAGES_WITH_CODE}
    assert {"quickstart.md", "concepts.md", "metrics.md", "schema.md"} <= names


def test_block_extraction() -> None:
    text = "intro\n```python\nx = 1\n```\n```text\nnot run\n```\n```python\ny = x + 1\n```\n"
    assert python_blocks(text) == [(3, "x = 1\n"), (9, "y = x + 1\n")]


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: p.name)
def test_page_code_runs(page: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # blocks that write files write them here
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for line, code in python_blocks(page.read_text(encoding="utf-8")):
        compiled = compile(code, f"{page.name}:{line}", "exec")
        exec(compiled, namespace)


def test_examples_are_found() -> None:
    assert {"quickstart.py", "compare_cells.py"} <= {p.name for p in EXAMPLES}


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script: Path, tmp_path: Path) -> None:
    args = [a.format(tmp=tmp_path) for a in EXAMPLE_ARGS.get(script.name, [])]
    result = subprocess.run(
        [sys.executable, str(script), *args], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"{script.name} failed:\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip()
    for output in [a for a in args if a.startswith(str(tmp_path))]:
        assert Path(output).stat().st_size > 0, f"{script.name} did not write {output}"

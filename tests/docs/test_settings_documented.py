"""The docs list every setting of the faces they describe, with the table's defaults, and every ``[tool.gradhealth]``
example in the docs and examples is valid for the settings table."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from gradhealth import settings as table

ROOT = Path(__file__).resolve().parents[2]
TOML_BLOCK = re.compile(r"^```toml[ \t]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _row(text: str, first_cell: str) -> str:
    rows = [line for line in text.splitlines() if line.startswith(f"| {first_cell}")]
    assert rows, f"no table row for {first_cell}"
    return rows[0]


@pytest.mark.parametrize("setting", table.carried_by(table.CLI), ids=lambda s: s.name)
def test_cli_docs_list_every_option(setting: table.Setting) -> None:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert f"`{setting.flag}" in text
    default = setting.default_for(table.CLI)
    if setting.group in (table.AUDIT, table.PROBE) and isinstance(default, (int, float, str)):
        assert re.search(rf"\| `?{re.escape(table.display(default))}`? \|", _row(text, f"`{setting.flag}")), (
            setting.name
        )


@pytest.mark.parametrize("setting", table.carried_by(table.PYTEST), ids=lambda s: s.name)
def test_pytest_docs_list_every_setting(setting: table.Setting) -> None:
    text = (ROOT / "docs" / "pytest.md").read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if re.match(rf"\| (`\w+`, )*`{setting.name}`", line))
    default = setting.default_for(table.PYTEST)
    if isinstance(default, (int, float, str)) and not isinstance(default, bool):
        shown = {table.display(default), setting.describe_default(table.PYTEST)}  # 4294967296 may read 4GiB
        assert any(f"| {text} |" in row for text in shown), setting.name


def _toml_examples() -> list[tuple[str, str]]:
    found = [("examples/ci/pyproject-snippet.toml", (ROOT / "examples/ci/pyproject-snippet.toml").read_text())]
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in TOML_BLOCK.findall(page.read_text(encoding="utf-8")):
            if "[tool.gradhealth]" in block:
                found.append((page.name, block))
    return found


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is standard from Python 3.11")
@pytest.mark.parametrize(("where", "text"), _toml_examples(), ids=[w for w, _ in _toml_examples()])
def test_every_tool_gradhealth_example_is_valid(where: str, text: str) -> None:
    import tomllib

    section = tomllib.loads(text)["tool"]["gradhealth"]
    layer = table.parse_layer(section, face=table.PYPROJECT, source=where)
    table.check_horizon_within_reach(table.resolve(table.CLI, [layer]))

"""Every install instruction in the docs works as written: gradhealth is not on PyPI, so none may tell users to
``pip install gradhealth`` from an index; install from a checkout (``pip install -e .``) or a path."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted(
    [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    + [p for p in (ROOT / "examples").rglob("*") if p.suffix in {".md", ".yml", ".yaml", ".toml", ".ini", ".txt"}]
)
COMMAND = re.compile(r"\b(?:pip3?|pipx|uv pip|python3? -m pip)\s+install\s+([^\n`#|&;]*)")
#: pip options that take a value (which is never a requirement).
VALUED = {"-i", "--index-url", "--extra-index-url", "-f", "--find-links", "-c", "--constraint", "-r", "--requirement"}


def index_installs_of_gradhealth(text: str) -> list[str]:
    """The install commands in ``text`` that would fetch gradhealth from a package index."""
    found = []
    for match in COMMAND.finditer(text):
        try:
            tokens = shlex.split(match.group(1))
        except ValueError:
            tokens = match.group(1).split()
        skip_next = False
        for i, token in enumerate(tokens):
            if skip_next or token.startswith("-"):
                skip_next = token in VALUED
                continue
            if token.startswith((".", "/", "~")) or "/" in token or "@" in tokens[i + 1 : i + 2]:
                continue  # a path, a URL, or a direct reference "gradhealth @ ..."
            name = re.match(r"[A-Za-z0-9_.-]+", token)
            if name and re.sub(r"[-_.]+", "-", name.group(0)).lower() == "gradhealth" and "@" not in token:
                found.append(match.group(0).strip())
    return found


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("$ pip install gradhealth", True),
        ('pip install "gradhealth[plot]"', True),
        ("pip install -q torch gradhealth==0.1", True),
        ("python -m pip install --upgrade Gradhealth", True),
        ("pip install torch --index-url https://download.pytorch.org/whl/cpu", False),
        ('pip install torch==2.13.0 -e ".[plot]"', False),
        ("pip install ./tools/gradhealth", False),
        ('pip install "/path/to/gradhealth[plot]"', False),
        ("pip install gradhealth @ git+https://example.org/gradhealth.git", False),
        ("pip install gradhealth-example-plugin", False),
    ],
)
def test_the_detector(text: str, bad: bool) -> None:
    assert bool(index_installs_of_gradhealth(text)) is bad


def test_the_documents_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in DOCUMENTS}
    assert {"README.md", "docs/quickstart.md", "docs/ci.md", "examples/ci/gradhealth.yml"} <= names


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_document_installs_gradhealth_from_an_index(document: Path) -> None:
    assert index_installs_of_gradhealth(document.read_text(encoding="utf-8")) == []

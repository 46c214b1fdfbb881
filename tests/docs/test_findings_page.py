"""docs/findings.md lists every catalogued finding with its title, severity and advice, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

from gradhealth.findings import CATALOGUE

PAGE = (Path(__file__).parents[2] / "docs" / "findings.md").read_text(encoding="utf-8")


def test_every_code_is_documented_with_its_catalogue_text() -> None:
    for code, spec in CATALOGUE.items():
        assert f"| [{code}](#{code.lower()}) | {spec.severity} | {spec.title} |" in PAGE, code
        section = PAGE.split(f"### {code}\n", 1)[1].split("\n### ", 1)[0]
        assert f"**{spec.title}** ({spec.severity})" in section, code
        assert f"Advice: {spec.advice}" in section, code


def test_no_undocumented_or_stale_codes() -> None:
    assert set(re.findall(r"^### (GH\d{3})$", PAGE, flags=re.MULTILINE)) == set(CATALOGUE)

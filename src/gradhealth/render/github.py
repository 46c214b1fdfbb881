"""GitHub Actions output: workflow annotations on stdout and a Markdown table for the job summary.

Per audited model, one annotation: ``::error`` for a failed gate or an input that could not be audited, else
``::error``/``::warning`` for the worst finding (``info`` findings are not annotated). When the environment
variable ``GITHUB_STEP_SUMMARY`` names a file, the Markdown table is appended to it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from gradhealth.render import markdown
from gradhealth.render.escape import printable
from gradhealth.render.registry import NamedReport

__all__ = ["annotation", "render"]


def _escape_data(text: str) -> str:
    # GitHub's own escapes for % and line breaks; every other control character (ANSI, OSC) is written out.
    return printable(text, keep="\r\n").replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(level: str, path: str, title: str, message: str) -> str:
    """One workflow command line, escaped as GitHub requires."""
    return f"::{level} file={_escape_property(path)},title={_escape_property(title)}::{_escape_data(message)}"


def _entry_annotation(entry: NamedReport) -> str | None:
    if entry.report is None:
        return annotation("error", entry.path, f"gradhealth: cannot audit {entry.name}", entry.error or "")
    failed = entry.failed_gates
    if failed:
        text = "; ".join(f"{g.gate} ({g.direction}): {g.message}" for g in failed)
        return annotation("error", entry.path, f"gradhealth gate failed: {entry.name}", text)
    borderline = entry.borderline_gates
    if borderline:
        text = "; ".join(f"{g.gate} ({g.direction}): {g.message}" for g in borderline)
        return annotation("warning", entry.path, f"gradhealth gate borderline: {entry.name}", text)
    worst = next((f for f in entry.report.findings if f.severity in {"error", "warning"}), None)
    if worst is None:
        return None
    return annotation(
        worst.severity,
        entry.path,
        f"gradhealth {worst.code}: {worst.title}",
        f"{entry.name}: {worst.message}. {worst.advice}",
    )


def render(reports: Sequence[NamedReport], **options: Any) -> str:
    """Annotation lines; appends the Markdown summary to ``$GITHUB_STEP_SUMMARY`` when it is set."""
    lines = [line for line in (_entry_annotation(e) for e in reports) if line is not None]
    summary_path = options.get("step_summary") or os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_path:
        with open(summary_path, "a", encoding="utf-8") as f:
            f.write(markdown.render(reports, **options) + "\n")
    return "\n".join(lines) + ("\n" if lines else "")

"""The terminal table (rich): one row per audited model and direction, coloured by verdict."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gradhealth.formatting import VERDICT_STYLES
from gradhealth.render.markdown import COLUMNS, summary_rows
from gradhealth.render.registry import NamedReport

__all__ = ["render"]


def render(reports: Sequence[NamedReport], **options: Any) -> str:
    """A rich table as text; ``color=True`` keeps ANSI colours, ``width`` sets the line width (default 120)."""
    table = Table(title=options.get("title", "gradhealth audit"), show_lines=False)
    for column in COLUMNS:
        table.add_column(column, overflow="fold")
    for row in summary_rows(reports):
        style = VERDICT_STYLES.get(row[2], "")
        gate_style = "red" if row[6].startswith("FAIL") else ""
        table.add_row(
            *row[:2],
            f"[{style}]{row[2]}[/]" if style else row[2],
            *row[3:6],
            f"[{gate_style}]{row[6]}[/]" if gate_style else row[6],
        )
    buffer = io.StringIO()
    console = Console(
        file=buffer, force_terminal=bool(options.get("color", False)), width=options.get("width", 120), highlight=False
    )
    console.print(table)
    for entry in reports:
        for gate in entry.failed_gates:
            console.print(f"[red]FAIL[/] {entry.name} {gate.gate} ({gate.direction}): {gate.message}", markup=True)
        for gate in entry.borderline_gates:
            if gate.passed:
                text = f"{entry.name} {gate.gate} ({gate.direction}): {gate.message}"
                console.print("[yellow]BORDERLINE[/] " + escape(text), markup=True)
        if entry.report is not None and options.get("findings", True):
            for f in entry.report.findings:
                if f.severity != "info":
                    console.print(f"{entry.name}: {f.code} {f.severity}: {f.title}: {f.message}", markup=False)
    return buffer.getvalue()

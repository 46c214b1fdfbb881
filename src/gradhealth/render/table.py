"""The terminal table (rich): one row per audited model and direction, coloured by verdict."""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from typing import Any

# rich.style draws `random.getrandbits(24)` when it is first imported; the built-in renderers load with every
# audit (through the plugin hook), so the caller's `random` stream is put back as it was.
_RANDOM_STATE = random.getstate()
try:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text
finally:
    random.setstate(_RANDOM_STATE)

from gradhealth.formatting import VERDICT_STYLES, format_inputs  # noqa: E402
from gradhealth.render.escape import printable  # noqa: E402
from gradhealth.render.markdown import COLUMNS, summary_rows  # noqa: E402
from gradhealth.render.registry import NamedReport  # noqa: E402

__all__ = ["render"]


def render(reports: Sequence[NamedReport], **options: Any) -> str:
    """A rich table as text; ``color=True`` keeps ANSI colours, ``width`` sets the line width (default 120)."""
    table = Table(title=Text(printable(str(options.get("title", "gradhealth audit")))), show_lines=False)
    for column in COLUMNS:
        table.add_column(column, overflow="fold")
    # Cells are Text, never markup: a name such as "[link=...]x[/]" or one holding escape sequences comes from a
    # file and must print as written (control characters written out).
    for row in summary_rows(reports):
        style = VERDICT_STYLES.get(row[2], "")
        gate_style = "red" if row[6].startswith("FAIL") else ""
        styles = ["", "", style, "", "", "", gate_style]
        table.add_row(*(Text(printable(cell), style=cell_style) for cell, cell_style in zip(row, styles, strict=True)))
    buffer = io.StringIO()
    console = Console(
        file=buffer, force_terminal=bool(options.get("color", False)), width=options.get("width", 120), highlight=False
    )
    console.print(table)
    for entry in reports:
        if entry.report is not None and entry.report.inputs is not None:
            console.print(printable(f"{entry.name}: probed with {format_inputs(entry.report.inputs)}"), markup=False)
        for gate in entry.failed_gates:
            line = printable(f" {entry.name} {gate.gate} ({gate.direction}): {gate.message}")
            console.print(Text.assemble(("FAIL", "red"), line))
        for gate in entry.borderline_gates:
            if gate.passed:
                line = printable(f" {entry.name} {gate.gate} ({gate.direction}): {gate.message}")
                console.print(Text.assemble(("BORDERLINE", "yellow"), line))
        if entry.report is not None and options.get("findings", True):
            for f in entry.report.findings:
                if f.severity != "info":
                    console.print(Text(printable(f"{entry.name}: {f.code} {f.severity}: {f.title}: {f.message}")))
    return buffer.getvalue()

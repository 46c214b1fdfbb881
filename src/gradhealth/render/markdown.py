"""Markdown output: one table row per audited model and direction of time, then failed gates and errors.

:func:`summary_rows` is shared with the terminal table and the GitHub step summary, so they all show the same
columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gradhealth.formatting import format_horizon, format_inputs, format_interval, format_number
from gradhealth.render.escape import markdown_text
from gradhealth.render.registry import NamedReport
from gradhealth.report import LagMetrics

__all__ = ["COLUMNS", "horizon_cell", "render", "summary_rows"]

COLUMNS = ("model", "direction", "verdict", "horizon", "decay rate", "half-life", "gates")


def _gate_cell(entry: NamedReport, direction: str) -> str:
    if not entry.gates:
        return "-"
    mine = [g for g in entry.gates if g.direction == direction]
    bad = [g.gate for g in mine if not g.passed]
    borderline = [g.gate for g in mine if g.borderline]
    cell = "FAIL " + ", ".join(bad) if bad else "pass"
    return cell + (f" (borderline: {', '.join(borderline)})" if borderline else "")


def horizon_cell(m: LagMetrics) -> str:
    """The horizon as a table cell: the compact horizon and its interval (``11 [10, 12]``)."""
    horizon = format_horizon(m.horizon, reached=m.horizon_reached, censored=m.horizon_censored, compact=True)
    pair = m.horizon_ci
    return f"{horizon} {format_interval(pair, None)}" if pair is not None else horizon


def summary_rows(reports: Sequence[NamedReport]) -> list[tuple[str, ...]]:
    """Rows of :data:`COLUMNS`; an input that could not be audited gives one ``error`` row."""
    rows: list[tuple[str, ...]] = []
    for entry in reports:
        if entry.report is None:
            rows.append((entry.name, "-", "error", "-", "-", "-", entry.error or "not audited"))
            continue
        for d in entry.report.directions:
            m = d.metrics
            horizon = horizon_cell(m)
            rows.append(
                (
                    entry.name,
                    d.name,
                    d.verdict,
                    horizon,
                    format_number(m.decay_rate, "/step"),
                    format_number(m.half_life),
                    _gate_cell(entry, d.name),
                )
            )
    return rows


def _escape(cell: str) -> str:
    return markdown_text(cell)


def render(reports: Sequence[NamedReport], **options: Any) -> str:
    """A Markdown table, then the failed gates and unreadable inputs as a list."""
    title = _escape(str(options.get("title", "gradhealth audit")))
    lines = [f"### {title}", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_escape(c) for c in row) + " |" for row in summary_rows(reports)]
    probed = [
        f"- **{_escape(r.name)}**: probed with {_escape(format_inputs(r.report.inputs))}"
        for r in reports
        if r.report is not None and r.report.inputs is not None
    ]
    if probed:
        lines += ["", *probed]
    # Every name and message is untrusted (it may quote a file name): one escaped line each.
    problems = [
        f"- **{_escape(r.name)}**: {_escape(f'{g.gate} ({g.direction}): {g.message}')}"
        for r in reports
        for g in r.failed_gates
    ]
    problems += [
        f"- **{_escape(r.name)}**: {_escape(f'borderline {g.gate} ({g.direction}): {g.message}')}"
        for r in reports
        for g in r.borderline_gates
        if g.passed
    ]
    problems += [f"- **{_escape(r.name)}**: {_escape(r.error)}" for r in reports if r.error]
    if problems:
        lines += ["", *problems]
    return "\n".join(lines) + "\n"

"""Markdown output: one table row per audited model and direction of time, then failed gates and errors.

:func:`summary_rows` is shared with the terminal table and the GitHub step summary, so they all show the same
columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gradhealth.formatting import format_horizon, format_interval, format_number
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
    return cell.replace("|", "\\|").replace("\n", " ")


def render(reports: Sequence[NamedReport], **options: Any) -> str:
    """A Markdown table, then the failed gates and unreadable inputs as a list."""
    title = options.get("title", "gradhealth audit")
    lines = [f"### {title}", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_escape(c) for c in row) + " |" for row in summary_rows(reports)]
    problems = [f"- **{r.name}**: {g.gate} ({g.direction}): {g.message}" for r in reports for g in r.failed_gates]
    problems += [
        f"- **{r.name}**: borderline {g.gate} ({g.direction}): {g.message}"
        for r in reports
        for g in r.borderline_gates
        if g.passed
    ]
    problems += [f"- **{r.name}**: {r.error}" for r in reports if r.error]
    if problems:
        lines += ["", *problems]
    return "\n".join(lines) + "\n"

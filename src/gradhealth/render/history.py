"""A training history (:mod:`gradhealth.history`) as a terminal table and as a self-contained HTML page.

The page has the look of the HTML report: a summary of the first and last audits, the plots (horizon and decay
rate over steps, profiles overlaid at chosen steps) embedded as PNGs, and the table of every audit. Every string
from the file is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING

from gradhealth.formatting import VERDICT_STYLES, format_horizon, format_interval, format_number
from gradhealth.render.html import _badge, _figure_html, _page

if TYPE_CHECKING:
    from rich.table import Table

    from gradhealth.history import HistoryRecord

__all__ = ["default_profile_steps", "history_rows", "history_table", "render_history_html"]


def default_profile_steps(records: Sequence[HistoryRecord]) -> list[int]:
    """The steps whose profiles are shown unless the user picks: the first, the middle and the last audit."""
    steps = [r.step for r in records]
    return sorted({steps[0], steps[len(steps) // 2], steps[-1]})


def history_rows(records: Sequence[HistoryRecord]) -> list[tuple[str, str, str, str, str]]:
    """One row of text per audit: step, verdict, horizon, its interval, decay rate."""
    return [
        (
            str(r.step),
            r.verdict,
            format_horizon(r.horizon, reached=r.horizon_reached, censored=r.horizon_censored, compact=True),
            format_interval(r.horizon_interval),
            format_number(r.decay_rate, "/step"),
        )
        for r in records
    ]


def history_table(records: Sequence[HistoryRecord], *, title: str = "") -> Table:
    """A rich table of the history, one row per audit."""
    from rich.table import Table

    first = records[0]
    table = Table(title=title or f"Gradient horizon over training (K = {first.seq_len}, ε = {first.eps:g})")
    table.add_column("step", justify="right")
    table.add_column("verdict")
    table.add_column("horizon", justify="right")
    table.add_column("interval", justify="right")
    table.add_column("decay rate", justify="right")
    for row in history_rows(records):
        style = VERDICT_STYLES.get(row[1], "")
        table.add_row(row[0], f"[{style}]{row[1]}[/]" if style else row[1], *row[2:])
    return table


def render_history_html(
    records: Sequence[HistoryRecord], *, title: str, profiles_at: Sequence[int] = (), plots: bool = True
) -> str:
    """A self-contained HTML page of the history (the plots need matplotlib; without it a note says so)."""
    first, last = records[0], records[-1]
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">{len(records)} audits from step {first.step} to step {last.step}; dependency length '
        f"K = {first.seq_len}, ε = {first.eps:g}.</p>",
        f'<p class="headline">Horizon {escape(_horizon(first))} at step {first.step} '
        f"{_badge(first.verdict)} → {escape(_horizon(last))} at step {last.step} {_badge(last.verdict)}</p>",
    ]
    if plots:
        body.append(_plots(records, profiles_at))
    body.append("<h2>Every audit</h2>")
    body.append(_table(records))
    return _page(title, body)


def _horizon(record: HistoryRecord) -> str:
    text = format_horizon(record.horizon, reached=record.horizon_reached, censored=record.horizon_censored)
    interval = format_interval(record.horizon_interval)
    return f"{text} {interval}" if interval else text


def _plots(records: Sequence[HistoryRecord], profiles_at: Sequence[int]) -> str:
    from gradhealth.plot import MissingExtraError, plot_history

    try:
        fig = plot_history(records, profiles_at=profiles_at)
    except MissingExtraError as exc:
        return f'<p class="note">No plots: {escape(str(exc))}.</p>'
    steps = ", ".join(str(s) for s in profiles_at)
    caption = f"Horizon and decay rate over training steps; lag profiles g(k) at steps {steps}."
    return _figure_html(fig, "gradient horizon over training", caption)


def _table(records: Sequence[HistoryRecord]) -> str:
    head = "".join(f"<th>{name}</th>" for name in ("step", "verdict", "horizon", "interval", "decay rate"))
    rows = []
    for step, verdict, horizon, interval, rate in history_rows(records):
        rows.append(
            f'<tr><td class="num">{escape(step)}</td><td>{_badge(verdict)}</td><td class="num">{escape(horizon)}</td>'
            f'<td class="num">{escape(interval)}</td><td class="num">{escape(rate)}</td></tr>'
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"

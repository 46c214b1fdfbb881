"""``gradhealth history``: a training history written by :class:`gradhealth.monitor.Monitor`, over steps.

Imports nothing heavy at module level (``gradhealth --help`` stays cheap); reading a history needs neither torch
nor numpy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gradhealth.cli._common import clean_errors, die
from gradhealth.cli._options import cli_option

__all__ = ["history", "register"]

HELP = """Show how the gradient horizon changed during training, from a monitor's JSON-lines history.

The table lists every audit (step, verdict, horizon with its interval, decay rate); --plot and --html add the
horizon and decay rate over steps and the lag profiles overlaid at chosen steps (--at; default: the first, middle
and last audit).

Examples:

  gradhealth history runs/gradhealth.jsonl

  gradhealth history runs/gradhealth.jsonl --plot history.png --html history.html --at 0 --at 2000
"""


def history(
    file: Annotated[Path, typer.Argument(help="A history file written by gradhealth.monitor.Monitor (JSON lines).")],
    at: Annotated[
        list[int] | None,
        typer.Option("--at", help="A step whose lag profile is overlaid (repeat it); default: first, middle, last."),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write a PNG of the history (needs gradhealth[plot]).")
    ] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Write a self-contained HTML page of the history.")
    ] = None,
    debug: bool = cli_option("debug"),
) -> None:
    """Show how the gradient horizon changed during training."""
    from rich.console import Console

    from gradhealth.history import read_history
    from gradhealth.render.history import default_profile_steps, history_table, render_history_html

    with clean_errors(debug):
        records = read_history(file)
        steps = [r.step for r in records]
        missing = [step for step in at or () if step not in steps]
        if missing:
            die(f"--at {missing[0]}: no audit at that step in {file}; audited steps: {_span(steps)}")
        profiles_at = list(dict.fromkeys(at)) if at else default_profile_steps(records)
        console = Console()
        console.print(history_table(records))
        if plot is not None:
            from gradhealth.plot import plot_history, save_figure

            path = save_figure(plot_history(records, profiles_at=profiles_at), plot)
            console.print(f"plot written to {path}", highlight=False, markup=False)
        if html is not None:
            text = render_history_html(records, title=f"gradhealth history: {file.name}", profiles_at=profiles_at)
            html.write_text(text, encoding="utf-8")
            console.print(f"HTML written to {html}", highlight=False, markup=False)


def _span(steps: list[int]) -> str:
    shown = ", ".join(str(s) for s in steps[:8])
    return shown + (f", ... ({len(steps)} in all)" if len(steps) > 8 else "")


def register(app: typer.Typer) -> None:
    """Add the ``history`` command to the app."""
    app.command("history", help=HELP)(history)

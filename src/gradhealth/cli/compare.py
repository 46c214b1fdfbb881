"""``gradhealth compare``: per direction differences between two JSON reports, optionally gated."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gradhealth.cli._common import clean_errors, write_output
from gradhealth.cli._options import check_format, cli_option

if TYPE_CHECKING:
    from gradhealth.gates import GateResult
    from gradhealth.render.registry import NamedReport

__all__ = ["FORMATS", "Difference", "compare_reports", "register"]

_DROP_HELP = "Fail if a horizon fell more than this: a percentage like 20% or a number of steps."

#: The output formats of ``compare`` (the names are those of every command; see docs/cli.md).
FORMATS = ("table", "json", "markdown")

HELP = """Compare two JSON reports direction by direction: verdict, horizon, decay rate.

Examples:

  gradhealth compare main-report.json report.json

  gradhealth compare old.json new.json --max-horizon-drop 20%   # exit 1 if a horizon fell further

Reports are paired by name (a single report on each side is paired as is).
"""


@dataclass
class Difference:
    """How one direction of one model changed."""

    name: str
    direction: str
    old_verdict: str | None
    new_verdict: str | None
    old_horizon: float | None
    new_horizon: float | None
    old_decay_rate: float | None
    new_decay_rate: float | None
    gate: GateResult | None = None

    @property
    def horizon_change(self) -> float | None:
        """New minus old horizon (steps)."""
        if self.old_horizon is None or self.new_horizon is None:
            return None
        return self.new_horizon - self.old_horizon


def _pairs(old: list[NamedReport], new: list[NamedReport]) -> list[tuple[str, NamedReport | None, NamedReport | None]]:
    if len(old) == 1 and len(new) == 1:
        return [(new[0].name, old[0], new[0])]
    old_by_name = {e.name: e for e in old}
    new_by_name = {e.name: e for e in new}
    names = list(dict.fromkeys([*old_by_name, *new_by_name]))
    return [(n, old_by_name.get(n), new_by_name.get(n)) for n in names]


def compare_reports(old: list[NamedReport], new: list[NamedReport], drop: str | None = None) -> list[Difference]:
    """Differences per model and direction; with ``drop`` each carries the ``max_horizon_drop`` gate result.

    Raises:
        ConfigError: ``drop`` is not a percentage or a number of steps, or a pair of reports was measured with
            different settings (eps, seq_len, burn_in, task, input_scale, dtype).
    """
    from gradhealth.gates import Thresholds, check_comparable, evaluate_gates, parse_drop

    allowed = parse_drop(drop, source="--max-horizon-drop") if drop is not None else None
    out = []
    for name, before, after in _pairs(old, new):
        a = before.report if before is not None else None
        b = after.report if after is not None else None
        if a is not None and b is not None:
            check_comparable(a, b, what=name)
        directions = list(dict.fromkeys([d.name for r in (a, b) if r is not None for d in r.directions]))
        gates = {}
        if allowed is not None and a is not None and b is not None:
            gates = {g.direction: g for g in evaluate_gates(b, Thresholds(baseline=a, max_horizon_drop=allowed))}
        for direction in directions:
            da = next((d for d in a.directions if d.name == direction), None) if a else None
            db = next((d for d in b.directions if d.name == direction), None) if b else None
            out.append(
                Difference(
                    name,
                    direction,
                    da.verdict if da else None,
                    db.verdict if db else None,
                    da.metrics.horizon if da else None,
                    db.metrics.horizon if db else None,
                    da.metrics.decay_rate if da else None,
                    db.metrics.decay_rate if db else None,
                    gates.get(direction),
                )
            )
    return out


def _rows(diffs: list[Difference]) -> list[tuple[str, ...]]:
    from gradhealth.formatting import format_number

    rows: list[tuple[str, ...]] = []
    for d in diffs:
        change = d.horizon_change
        rows.append(
            (
                d.name,
                d.direction,
                f"{d.old_verdict or '-'} -> {d.new_verdict or '-'}",
                f"{format_number(d.old_horizon)} -> {format_number(d.new_horizon)}",
                "n/a" if change is None else ("+" if change > 0 else "") + format_number(change),
                f"{format_number(d.old_decay_rate)} -> {format_number(d.new_decay_rate)}",
                "-" if d.gate is None else ("pass" if d.gate.passed else "FAIL: " + d.gate.message),
            )
        )
    return rows


_COLUMNS = ("model", "direction", "verdict", "horizon", "change", "decay rate", "gate")


def _render(diffs: list[Difference], fmt: str) -> str:
    from gradhealth.render.escape import markdown_text, printable
    from gradhealth.report import encode_floats

    if fmt == "json":
        data = [
            {k: v for k, v in vars(d).items() if k != "gate"}
            | {"horizon_change": d.horizon_change, "gate": None if d.gate is None else vars(d.gate)}
            for d in diffs
        ]
        return json.dumps(encode_floats(data), indent=2)
    rows = _rows(diffs)
    if fmt == "markdown":
        lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
        return "\n".join(lines + ["| " + " | ".join(markdown_text(c) for c in r) + " |" for r in rows]) + "\n"
    import io

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title="gradhealth compare")
    for column in _COLUMNS:
        table.add_column(column, overflow="fold")
    for row in rows:
        # names come from the report files: Text, never markup, with control characters written out
        table.add_row(*(Text(printable(c)) for c in row))
    buffer = io.StringIO()
    Console(file=buffer, width=120, highlight=False).print(table)
    return buffer.getvalue()


def _read(path: Path) -> list[NamedReport]:
    from gradhealth.errors import ConfigError
    from gradhealth.render.json import read_reports

    try:
        return read_reports(path.read_text(encoding="utf-8"), name=str(path))
    except (OSError, ValueError) as exc:
        raise ConfigError("report", str(path), str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc


def compare_command(
    old: Annotated[Path, typer.Argument(help="The earlier JSON report (e.g. from main).", show_default=False)],
    new: Annotated[Path, typer.Argument(help="The later JSON report.", show_default=False)],
    max_horizon_drop: str | None = cli_option("max_horizon_drop", help_text=_DROP_HELP, show_default=False),
    output_format: str = cli_option("format", help_text="Output format: table, json or markdown."),
    output: str | None = cli_option("output"),
    debug: bool = cli_option("debug"),
) -> None:
    """Compare two JSON reports direction by direction."""
    with clean_errors(debug):
        check_format(output_format, FORMATS, command="compare")
        diffs = compare_reports(_read(old), _read(new), max_horizon_drop)
        write_output(_render(diffs, output_format), Path(output) if output else None)
    failed: Any = [d for d in diffs if d.gate is not None and not d.gate.passed]
    raise typer.Exit(1 if failed else 0)


def register(app: typer.Typer) -> None:
    """Add ``compare`` to the app."""
    app.command("compare", help=HELP, no_args_is_help=True)(compare_command)

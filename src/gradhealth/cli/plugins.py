"""``gradhealth plugins``: what is registered, where it came from, and what failed.

Honours ``GRADHEALTH_DISABLE_PLUGINS`` and ``GRADHEALTH_STRICT_PLUGINS`` (and whatever the global options passed to
:func:`gradhealth.plugins.configure`). Heavy modules are imported inside the command, so ``--help`` stays cheap.
"""

from __future__ import annotations

import json
import re
import warnings
from typing import Any

import typer

from gradhealth.cli._options import cli_option

__all__ = ["plugins_command", "register"]

JSON_HELP = "Print the plugin list as JSON (one object per plugin) instead of a table."
CHECK_HELP = "Exit with status 1 if any plugin failed (to import, to register, or inside a hook)."


def register(app: typer.Typer) -> None:
    """Add the ``plugins`` command to the app."""
    app.command("plugins")(plugins_command)


def plugins_command(
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    check: bool = typer.Option(False, "--check", help=CHECK_HELP),
    debug: bool = cli_option("debug"),
) -> None:
    """List the registered plugins: origin (built-in module, or entry point with its distribution and version),
    the hooks each implements, what it provides, and which are disabled or failed."""
    from gradhealth import plugins
    from gradhealth.errors import GradhealthError

    try:
        with warnings.catch_warnings():
            # the failures are listed below; the same text as a warning on stderr would only repeat them
            warnings.simplefilter("ignore", plugins.PluginWarning)
            provided = plugins.contributions()
            infos = plugins.plugin_infos()
            disabled = plugins.disabled_plugins()
            strict = plugins.is_strict()
    except GradhealthError as exc:
        typer.echo(f"gradhealth: error: {exc}", err=True)
        raise typer.Exit(2) from None
    rows = [dict(info.to_dict(), origin=info.origin, provides=provided.get(info.name, {})) for info in infos]
    known = {_normalize(n) for info in infos for n in (info.name, info.distribution) if n}
    unknown = sorted(name for name in disabled if _normalize(name) not in known)
    if as_json:
        payload = {"plugins": rows, "disabled": sorted(disabled), "unknown_disabled": unknown, "strict": strict}
        typer.echo(json.dumps(payload, indent=2))
    else:
        _print_table(rows, unknown)
    if check and any(row["status"] == "failed" for row in rows):
        raise typer.Exit(1)


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # as pip compares distribution names


def _source(row: dict[str, Any]) -> str:
    if row["source"] == "builtin":
        return "built-in"
    dist = f"{row['distribution']} {row['version'] or ''}".strip() if row["distribution"] else "unknown distribution"
    return f"{dist} ({row['source']} {row['module']})"


def _print_table(rows: list[dict[str, Any]], unknown: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="gradhealth plugins")
    table.add_column("plugin", no_wrap=True)
    for column in ("status", "from", "hooks", "provides"):
        table.add_column(column, overflow="fold")
    styles = {"active": "green", "disabled": "yellow", "failed": "bold red"}
    for row in rows:
        status = f"[{styles[row['status']]}]{row['status']}[/]"
        if row["error"]:
            where = f" in {row['failed_hook']}" if row["failed_hook"] else ""
            status += f"{where}: {row['error']}"
        hooks = ", ".join(h.removeprefix("gradhealth_") for h in row["hooks"])
        provides = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in row["provides"].items())
        table.add_row(row["name"], status, _source(row), hooks, provides)
    console = Console(width=max(Console().width, 120), highlight=False)
    console.print(table)
    for name in unknown:
        console.print(f"note: no installed plugin is called {name!r} (asked to disable it)")

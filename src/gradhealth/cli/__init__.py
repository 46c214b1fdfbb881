"""The ``gradhealth`` command line (Typer).

Each command lives in its own module of this package and is added by :func:`build_app`; command modules import
nothing heavy at module level, so ``gradhealth --help`` never imports torch. Exit codes: 0 healthy / all gates
passed, 1 a gate failed, 2 bad usage, an input that cannot be audited, or an internal error (never 1).
"""

from __future__ import annotations

import contextlib
import importlib
import warnings
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from gradhealth._version import __version__
from gradhealth.cli._common import guard_internal_errors

__all__ = ["COMMAND_MODULES", "EXIT_BAD_INPUT", "EXIT_GATE_FAILED", "EXIT_OK", "app", "build_app", "main"]

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_BAD_INPUT = 2

#: Modules that each define ``register(app: typer.Typer) -> None``; a missing one is skipped (not yet built).
COMMAND_MODULES = (
    "gradhealth.cli.audit",
    "gradhealth.cli.inspect",
    "gradhealth.cli.compare",
    "gradhealth.cli.demo",
    "gradhealth.cli.history",
    "gradhealth.cli.trainability",
    "gradhealth.cli.plugins",
)

HELP = """Does gradient still flow back through time, and how far?

Audit PyTorch recurrent models and saved checkpoints for vanishing and exploding gradients.

Examples:

  gradhealth demo

  gradhealth audit runs/*.pt --seq-len 256 --format json > report.json

  gradhealth audit model.safetensors --model mypkg.models:make_encoder --min-horizon 100
"""


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"gradhealth {__version__}")
        raise typer.Exit()


@contextlib.contextmanager
def _plugin_warnings_on_stderr() -> Iterator[None]:
    """Show a broken plugin's warning as one ``gradhealth: warning:`` line on stderr for the command's duration
    (Python's default would print the file and line inside pluggy where it was raised)."""
    from gradhealth.plugins import PluginWarning

    shown = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, PluginWarning):
            typer.echo(f"gradhealth: warning: {message}", err=True)
        else:
            shown(message, category, *args, **kwargs)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def build_app() -> typer.Typer:
    """Create the Typer app with every available command registered."""
    app = typer.Typer(name="gradhealth", help=HELP, no_args_is_help=True, rich_markup_mode="rich")

    @app.callback()
    def root(
        ctx: typer.Context,
        version: Annotated[
            bool,
            typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version and exit."),
        ] = False,
        disable_plugin: Annotated[
            list[str] | None,
            typer.Option(
                "--disable-plugin",
                help="Skip this plugin (entry-point or distribution name); repeatable; adds to "
                "GRADHEALTH_DISABLE_PLUGINS.",
            ),
        ] = None,
        strict_plugins: Annotated[
            bool | None,
            typer.Option(
                "--strict-plugins/--no-strict-plugins",
                help="Make a broken plugin fatal. [default: GRADHEALTH_STRICT_PLUGINS]",
            ),
        ] = None,
    ) -> None:
        """Does gradient still flow back through time, and how far?"""
        from gradhealth.plugins import configure

        configure(disabled=disable_plugin or (), strict=strict_plugins)
        ctx.with_resource(_plugin_warnings_on_stderr())

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(app)
    for command in app.registered_commands:
        if command.callback is not None:
            command.callback = guard_internal_errors(command.callback)
    return app


app = build_app()


def main() -> None:
    """Console-script entry point."""
    app()

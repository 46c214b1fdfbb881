"""The command-line face of the settings table: Typer options made from it, and their resolution.

:func:`table_options` gives a command one option per setting, built from the table (flag names, help text, default
shown in ``--help``, metavar) through the function's ``__signature__``, which Typer reads with
:func:`inspect.signature`. Every option reaches the command as the raw text the user typed (or ``None`` when not
given); :func:`resolve_command_line` parses it through the table, over ``[tool.gradhealth]`` and the defaults, so
every value, from whichever source, is validated by the same parser and its errors name the flag.

Standard library and typer only: ``gradhealth --help`` imports this module and must not import torch.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Optional, TypeVar

import typer

from gradhealth import settings as table
from gradhealth.cli._pyproject import read_pyproject

__all__ = [
    "check_format",
    "cli_option",
    "command_line_layer",
    "is_two_way_flag",
    "resolve_command_line",
    "table_options",
]

F = TypeVar("F", bound=Callable[..., Any])


def is_two_way_flag(setting: table.Setting) -> bool:
    """``--progress/--no-progress``: a flag whose default can be on, or that a config file can set."""
    return setting.is_flag and (setting.default is True or table.PYPROJECT in setting.faces)


def _negated(flag: str) -> str:
    return "--no-" + flag.removeprefix("--")


def _help(setting: table.Setting) -> str:
    text = setting.help[0].upper() + setting.help[1:]
    return text if text.endswith(".") else text + "."


def cli_option(name: str, *, help_text: str | None = None, show_default: bool | str | None = None) -> Any:
    """The Typer option of one setting: its flags, help text, metavar, and its default, shown in ``--help``.

    Args:
        name: the setting.
        help_text: replaces the table's help (a command that supports fewer values says so).
        show_default: replaces how the default is shown (``False``: not at all).
    """
    setting = table.SETTINGS[name]
    default = setting.default_for(table.CLI)
    text = help_text or _help(setting)
    flags = (setting.flag, *setting.short_flags)
    if setting.is_flag:
        if is_two_way_flag(setting):
            two_way = f"{setting.flag}/{_negated(setting.flag)}"
            return typer.Option(default, two_way, *setting.short_flags, help=text, show_default=True)
        return typer.Option(False, *flags, help=text, show_default=False)
    metavar = setting.type.metavar
    if setting.is_repeatable:
        return typer.Option(None, *flags, help=text, show_default=False, metavar=metavar)
    if default is None:
        shown: bool | str = setting.default_text or False
        shown = shown if show_default is None else show_default
        return typer.Option(None, *flags, help=text, show_default=shown, metavar=metavar)
    shown = True if show_default is None else show_default
    return typer.Option(table.display(default), *flags, help=text, show_default=shown, metavar=metavar)


def _annotation(setting: table.Setting) -> Any:
    if setting.is_flag:
        return Optional[bool] if is_two_way_flag(setting) else bool  # noqa: UP045 - a runtime type for Typer
    if setting.is_repeatable:
        return Optional[list[str]]  # noqa: UP045
    return Optional[str]  # noqa: UP045


def table_options(names: Iterable[str]) -> Callable[[F], F]:
    """Give a command ``def command(ctx: typer.Context, <its own parameters>, **given)`` one option per setting.

    The command's own parameters (the context, arguments such as ``inputs``) come first; the settings follow as
    keyword-only parameters in the order given, each with :func:`cli_option`'s Typer option. The context tells
    :func:`command_line_layer` which options were typed and which are defaults.
    """

    def decorate(func: F) -> F:
        own = inspect.signature(func)
        hints = typing.get_type_hints(func, include_extras=True)
        params = [
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in own.parameters.values()
            if p.kind is not inspect.Parameter.VAR_KEYWORD
        ]
        for name in names:
            setting = table.SETTINGS[name]
            params.append(
                inspect.Parameter(
                    name, inspect.Parameter.KEYWORD_ONLY, default=cli_option(name), annotation=_annotation(setting)
                )
            )
        func.__signature__ = own.replace(parameters=params, return_annotation=None)  # type: ignore[attr-defined]
        func.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
        return func

    return decorate


def _typed(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def command_line_layer(ctx: typer.Context, given: Mapping[str, Any]) -> table.Layer:
    """Parse the options typed on the command line (an option left at its default is not part of this layer).

    Raises:
        ConfigError: an invalid value, naming the flag.
    """
    layer = {}
    for name, raw in given.items():
        if _typed(ctx, name) and raw is not None:
            setting = table.SETTINGS[name]
            flag = _negated(setting.flag) if setting.is_flag and raw is False else setting.flag
            layer[name] = (setting.parse(raw, source=flag), flag)
    return layer


def resolve_command_line(ctx: typer.Context, given: Mapping[str, Any], *, start: Path | None = None) -> table.Resolved:
    """The command's settings: command line > ``[tool.gradhealth]`` of the nearest pyproject.toml > defaults.

    Raises:
        ConfigError: an invalid value, an unknown or code-running key in the config file, naming its source.
    """
    file_layer = read_pyproject(start or Path.cwd())
    return table.resolve(table.CLI, [file_layer, command_line_layer(ctx, given)])


def check_format(value: str, supported: tuple[str, ...], *, command: str) -> None:
    """A command that writes fewer formats than ``audit`` accepts the same names and refuses the others.

    Raises:
        ConfigError: naming ``--format``, what the command writes, and the closest name.
    """
    if value in supported:
        return
    from gradhealth._setting_types import did_you_mean
    from gradhealth.errors import ConfigError

    known = f"{', '.join(supported[:-1])} or {supported[-1]}"
    hint = did_you_mean(value, supported) if value not in table.FORMATS else ""
    raise ConfigError("format", value, f"{command} writes {known}{hint}", source="--format")

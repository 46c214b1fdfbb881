"""The reference pages name everything users can reach: every option of every command in docs/cli.md (read from the
click command tree, so options that are not settings count too), every command in a heading, and every name in
``gradhealth.__all__`` in docs/api.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer

import gradhealth
from gradhealth.cli import app

ROOT = Path(__file__).resolve().parents[2]
CLI_DOC = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
API_DOC = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")

# Typer ships its own copy of click: its classes are read by their attributes, not checked against click's.
ROOT_COMMAND: Any = typer.main.get_command(app)
COMMANDS: dict[str, Any] = dict(ROOT_COMMAND.commands)
#: Options every command has, documented once: help, and shell completion on the root.
GENERIC = {"--help", "--install-completion", "--show-completion"}


def _options() -> list[tuple[str, str]]:
    found = []
    for name, command in [("gradhealth", ROOT_COMMAND), *sorted(COMMANDS.items())]:
        for param in command.params:
            if param.param_type_name == "option":
                found.extend((name, flag) for flag in [*param.opts, *param.secondary_opts] if flag.startswith("--"))
    return [(name, flag) for name, flag in found if flag not in GENERIC]


def test_the_walk_finds_the_commands() -> None:
    assert {"audit", "compare", "inspect", "demo", "plugins", "history", "trainability"} <= set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_documented(command: str) -> None:
    assert f"gradhealth {command}" in CLI_DOC


@pytest.mark.parametrize(("command", "flag"), _options(), ids=lambda value: value)
def test_every_option_documented(command: str, flag: str) -> None:
    assert f"`{flag}" in CLI_DOC or f"/ {flag}`" in CLI_DOC or f"{flag} " in CLI_DOC, f"{command} {flag}"


@pytest.mark.parametrize("name", gradhealth.__all__)
def test_every_public_name_in_the_api_page(name: str) -> None:
    assert f"gradhealth.{name}" in API_DOC

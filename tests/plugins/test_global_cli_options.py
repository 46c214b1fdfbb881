"""The CLI's global ``--disable-plugin`` and ``--strict-plugins`` options reach the plugin manager."""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib.metadata import EntryPoint

from typer.testing import CliRunner

from gradhealth import __version__
from gradhealth.cli import app

GOOD = """
from gradhealth.hookspecs import hookimpl

@hookimpl
def gradhealth_register_tasks():
    return []
"""

BROKEN = "raise ImportError('this plugin cannot be imported')\n"


def statuses(output: str) -> dict[str, str]:
    return {p["name"]: p["status"] for p in json.loads(output)["plugins"]}


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"gradhealth {__version__}"


def test_disable_plugin_option(fake_entry_points: Callable[[dict[str, str]], list[EntryPoint]]) -> None:
    fake_entry_points({"fakeone": GOOD, "faketwo": GOOD})
    result = CliRunner().invoke(app, ["--disable-plugin", "fakeone", "plugins", "--json"])
    assert result.exit_code == 0, result.stderr
    found = statuses(result.stdout)
    assert found["fakeone"] == "disabled"
    assert found["faketwo"] == "active"


def test_strict_plugins_option(fake_entry_points: Callable[[dict[str, str]], list[EntryPoint]]) -> None:
    fake_entry_points({"fakebroken": BROKEN})
    lenient = CliRunner().invoke(app, ["plugins", "--json"])
    assert lenient.exit_code == 0
    assert statuses(lenient.stdout)["fakebroken"] == "failed"
    strict = CliRunner().invoke(app, ["--strict-plugins", "plugins"])
    assert strict.exit_code == 2
    [line] = strict.stderr.strip().splitlines()
    assert "fakebroken" in line
    assert "cannot be imported" in line

"""``gradhealth plugins``: the listing, JSON form, --check, and strict mode, through typer's CliRunner."""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib.metadata import EntryPoint

import pytest
from typer.testing import CliRunner

from gradhealth import plugins
from gradhealth.cli import build_app

InstallFn = Callable[[dict[str, str]], list[EntryPoint]]

BROKEN_IMPORT = """
raise ImportError("cannot import name 'gone' from 'somewhere'")
"""


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(build_app(), ["plugins", *args])
    return result.exit_code, result.stdout, result.stderr


def test_lists_builtins_with_hooks_and_what_they_provide() -> None:
    code, out, err = invoke("--json")
    assert (code, err) == (0, "")
    rows = {row["name"]: row for row in json.loads(out)["plugins"]}
    probes = rows["gradhealth.probes.builtin"]
    assert (probes["source"], probes["status"], probes["hooks"]) == (
        "builtin",
        "active",
        ["gradhealth_register_probes"],
    )
    assert probes["provides"]["probes"][0] == "lag_profile"
    assert "noise" in rows["gradhealth.tasks.builtin"]["provides"]["tasks"]


def test_table_shows_a_failed_plugin_and_check_fails(fake_entry_points: InstallFn) -> None:
    fake_entry_points({"broken": BROKEN_IMPORT})
    code, out, err = invoke()
    assert code == 0
    assert err == ""  # listed once, in the table, not repeated as a warning
    line = next(line for line in out.splitlines() if "broken" in line)
    assert "failed" in line
    assert "ImportError" in out
    code, out, _ = invoke("--check")
    assert code == 1


def test_json_reports_disabled_and_unknown_names(fake_entry_points: InstallFn, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points({"broken": BROKEN_IMPORT})
    monkeypatch.setenv(plugins.DISABLE_ENV, "broken,nosuch")
    code, out, _ = invoke("--json", "--check")
    payload = json.loads(out)
    assert code == 0
    assert {r["name"]: r["status"] for r in payload["plugins"]}["broken"] == "disabled"
    assert (payload["disabled"], payload["unknown_disabled"], payload["strict"]) == (
        ["broken", "nosuch"],
        ["nosuch"],
        False,
    )


def test_strict_mode_exits_2_with_one_line_naming_the_plugin(
    fake_entry_points: InstallFn, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_entry_points({"broken": BROKEN_IMPORT})
    monkeypatch.setenv(plugins.STRICT_ENV, "1")
    code, out, err = invoke()
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert err.startswith("gradhealth: error: gradhealth plugin 'broken' ")
    assert "ImportError: cannot import name 'gone'" in err

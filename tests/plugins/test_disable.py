"""Disabling plugins by name: GRADHEALTH_DISABLE_PLUGINS and configure(disabled=...); a disabled plugin is never
imported."""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib.metadata import EntryPoint

import pytest

from gradhealth import plugins
from gradhealth.hookspecs import hookimpl

InstallFn = Callable[[dict[str, str]], list[EntryPoint]]

# Importing this module would fail loudly: proves a disabled plugin is not even imported.
EXPLODES_ON_IMPORT = """
raise SystemError("imported although disabled")
"""

RENDERER = """
from gradhealth.hookspecs import hookimpl

@hookimpl
def gradhealth_register_renderers():
    return {"{name}": lambda reports, **options: "{name}"}
"""


def statuses() -> dict[str, str]:
    return {i.name: i.status for i in plugins.plugin_infos()}


@pytest.mark.parametrize("how", ["env", "configure", "both"])
def test_disabled_plugins_are_never_imported(
    how: str, fake_entry_points: InstallFn, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_entry_points(
        {"bomb": EXPLODES_ON_IMPORT, "dud": EXPLODES_ON_IMPORT, "kept": RENDERER.replace("{name}", "kept")}
    )
    if how == "env":
        monkeypatch.setenv(plugins.DISABLE_ENV, " bomb , dud ")
    elif how == "configure":
        plugins.configure(disabled=["bomb", "dud"])
    else:
        monkeypatch.setenv(plugins.DISABLE_ENV, "dud")
        plugins.configure(disabled=["bomb"])
    found = statuses()
    assert (found["bomb"], found["dud"], found["kept"]) == ("disabled", "disabled", "active")
    assert "gh_fake_bomb" not in sys.modules
    assert sorted(plugins.renderer_registry()).count("kept") == 1
    assert plugins.disabled_plugins() >= {"bomb", "dud"}


def test_configure_without_arguments_goes_back_to_the_environment(fake_entry_points: InstallFn) -> None:
    fake_entry_points({"kept": RENDERER.replace("{name}", "kept")})
    plugins.configure(disabled=["kept"])
    assert statuses()["kept"] == "disabled"
    plugins.configure()
    assert statuses()["kept"] == "active"


def test_builtins_cannot_be_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(plugins.DISABLE_ENV, "gradhealth.tasks.builtin")
    with pytest.warns(plugins.PluginWarning, match="built-in plugin gradhealth-tasks-builtin cannot be disabled"):
        plugins.get_plugin_manager()
    assert statuses()["gradhealth.tasks.builtin"] == "active"
    assert "noise" in plugins.task_registry()


def test_runtime_plugin_can_be_disabled() -> None:
    class Plugin:
        @hookimpl
        def gradhealth_register_renderers(self) -> dict[str, object]:
            return {"mine": lambda reports, **options: "mine"}

    plugins.configure(disabled=["mine"])
    assert plugins.register(Plugin(), name="mine") is False
    assert "mine" not in plugins.renderer_registry()
    assert statuses()["mine"] == "disabled"

"""The plugin manager: built-ins first, entry points scanned lazily and once, records of where plugins came from."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from importlib.metadata import EntryPoint

import pytest

from gradhealth import plugins
from gradhealth.hookspecs import hookimpl
from gradhealth.tasks import Task

GOOD_PLUGIN = """
from gradhealth.hookspecs import hookimpl

@hookimpl
def gradhealth_register_renderers():
    return {"shout": lambda reports, **options: "LOUD"}
"""


def test_builtins_register_first_in_declared_order() -> None:
    infos = plugins.plugin_infos()
    builtins = [i for i in infos if i.source == "builtin"]
    assert [i.name for i in builtins] == list(plugins.BUILTIN_PLUGINS)
    assert infos[: len(builtins)] == builtins
    assert all(i.status == "active" and i.distribution == "gradhealth" for i in builtins)
    by_name = {i.name: i for i in infos}
    assert by_name["gradhealth.adapters.builtin"].hooks == ["gradhealth_adapt_model"]
    assert plugins.probe_classes()["lag_profile"].__module__ == "gradhealth.probes.lag_profile"
    assert {"noise", "impulse", "copy", "adding", "delayed_recall"} <= set(plugins.task_registry())


def test_entry_points_are_scanned_lazily_and_once(
    monkeypatch: pytest.MonkeyPatch, fake_entry_points: Callable[[dict[str, str]], list[EntryPoint]]
) -> None:
    fake_entry_points({"shouter": GOOD_PLUGIN})
    scan = plugins._manager._entry_points
    calls: list[int] = []
    monkeypatch.setattr(plugins._manager, "_entry_points", lambda: calls.append(1) or scan())
    plugins.configure(strict=False)
    assert calls == []  # configuring builds nothing
    assert plugins.renderer_registry()["shout"]([]) == "LOUD"
    plugins.probe_classes()
    plugins.task_registry()
    plugins.get_plugin_manager()
    assert calls == [1]
    info = {i.name: i for i in plugins.plugin_infos()}["shouter"]
    assert (info.source, info.status, info.module, info.hooks) == (
        "entry point",
        "active",
        "gh_fake_shouter",
        ["gradhealth_register_renderers"],
    )
    plugins.reset_plugin_manager()
    plugins.get_plugin_manager()
    assert calls == [1, 1]


def test_contributions_name_the_plugin_of_each_probe_task_and_renderer(
    fake_entry_points: Callable[[dict[str, str]], list[EntryPoint]],
) -> None:
    fake_entry_points({"shouter": GOOD_PLUGIN})
    provided = plugins.contributions()
    assert provided["shouter"] == {"renderers": ["shout"]}
    assert provided["gradhealth.probes.builtin"]["probes"][0] == "lag_profile"
    assert "noise" in provided["gradhealth.tasks.builtin"]["tasks"]


def test_runtime_registration_goes_through_the_same_checks() -> None:
    class Tasks:
        @staticmethod
        @hookimpl
        def gradhealth_register_tasks() -> list[Task]:
            from gradhealth.tasks import NoiseTask

            class Loud(NoiseTask):
                name = "loud_noise"

            return [Loud()]

    assert plugins.register(Tasks, name="loud") is True
    assert "loud_noise" in plugins.task_registry()
    with pytest.warns(plugins.PluginWarning, match="'loud'.*already taken"):
        assert plugins.register(Tasks(), name="loud") is False


def test_importing_the_plugin_modules_loads_no_torch() -> None:
    code = textwrap.dedent(
        """
        import sys
        import gradhealth.plugins, gradhealth.hookspecs, gradhealth.cli.plugins
        gradhealth.plugins.configure(disabled=["x"], strict=True)
        heavy = sorted(m for m in ("torch", "numpy") if m in sys.modules)
        assert not heavy, heavy
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_registered_lasts_for_the_with_block_and_leaves_others_alone() -> None:
    class Renderer:
        @hookimpl
        def gradhealth_register_renderers(self) -> dict[str, object]:
            return {"tmp": lambda reports, **options: "tmp"}

    with plugins.registered(Renderer(), name="tmp") as is_registered:
        assert is_registered
        assert "tmp" in plugins.renderer_registry()
    assert "tmp" not in plugins.renderer_registry()
    assert "tmp" not in {i.name for i in plugins.plugin_infos()}
    with (
        pytest.warns(plugins.PluginWarning, match="already taken"),
        plugins.registered(Renderer(), name="gradhealth.tasks.builtin") as ok,
    ):
        assert not ok
    assert "noise" in plugins.task_registry()  # the built-in of that name is still there

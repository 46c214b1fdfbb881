"""A broken plugin never breaks an unrelated run: reported once (naming plugin and hook), skipped; fatal if strict.

Every run here audits reference.LinearRecurrence(ρ = 0.9), whose profile is g(k) = 0.9^k exactly (horizon 44), to
show the run that goes on despite the broken plugin still measures the right thing.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from importlib.metadata import EntryPoint
from typing import Any

import pytest

import gradhealth
from gradhealth import plugins, reference
from gradhealth.errors import AdapterError, ConfigError, PluginError
from gradhealth.hookspecs import hookimpl

IMPORT_ERROR = """
import gradhealth_no_such_dependency
"""

BAD_SIGNATURE = """
from gradhealth.hookspecs import hookimpl

@hookimpl
def gradhealth_adapt_model(model, layout, device):
    return None
"""

MISSPELLED = """
from gradhealth.hookspecs import hookimpl

@hookimpl
def gradhealth_register_probe():
    return []
"""

WRAPPER = """
from gradhealth.hookspecs import hookimpl

@hookimpl(wrapper=True)
def gradhealth_register_tasks():
    return (yield)
"""

RAISES_IN_ADAPTER = """
from gradhealth.hookspecs import hookimpl

@hookimpl
def gradhealth_adapt_model(model, layout):
    raise ZeroDivisionError("plugin bug")
"""

EXITS = """
import sys
sys.exit("this module is a script")
"""

BROKEN = {
    "import_error": (IMPORT_ERROR, None, "ModuleNotFoundError: No module named 'gradhealth_no_such_dependency'"),
    "exits": (EXITS, None, "SystemExit: this module is a script"),
    "bad_signature": (BAD_SIGNATURE, "gradhealth_adapt_model", "{'device'}"),
    "misspelled": (MISSPELLED, "gradhealth_register_probe", "not a gradhealth hook"),
    "wrapper": (WRAPPER, "gradhealth_register_tasks", "wrappers are not supported"),
    "raises": (RAISES_IN_ADAPTER, "gradhealth_adapt_model", "ZeroDivisionError: plugin bug"),
}

InstallFn = Callable[[dict[str, str]], list[EntryPoint]]


def audit_linear() -> gradhealth.Report:
    return gradhealth.audit(reference.LinearRecurrence(3, 0.9), seq_len=48, batch_size=4, probes="quick")


def assert_exact(report: gradhealth.Report) -> None:
    assert report.model["adapter"] == "sequence"
    assert max(abs(g - 0.9**k) for k, g in enumerate(report.profile.g)) < 1e-10
    assert report.metrics.horizon == 44.0


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_plugin_is_reported_once_and_skipped(case: str, fake_entry_points: InstallFn) -> None:
    source, hook, detail = BROKEN[case]
    fake_entry_points({case: source})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert_exact(audit_linear())
        assert_exact(audit_linear())
        plugins.probe_classes()
        plugins.task_registry()
    ours = [w for w in caught if issubclass(w.category, plugins.PluginWarning)]
    assert len(ours) == 1, [str(w.message) for w in ours]
    message = str(ours[0].message)
    assert f"gradhealth plugin {case!r}" in message
    assert detail in message
    assert (f"in hook {hook}" in message) if hook else ("in hook" not in message)
    info = {i.name: i for i in plugins.plugin_infos()}[case]
    assert (info.status, info.failed_hook) == ("failed", hook)
    assert plugins.get_plugin_manager().get_plugin(case) is None


def test_misspelled_hook_is_what_check_pending_catches() -> None:
    import pluggy

    from gradhealth import hookspecs

    class Misspelled:
        @hookimpl
        def gradhealth_register_probe(self) -> list[Any]:
            return []

    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.register(Misspelled(), name="typo")  # pluggy accepts it: the hook might be specified later
    with pytest.raises(pluggy.PluginValidationError, match="gradhealth_register_probe"):
        pm.check_pending()


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_strict_mode_makes_a_broken_plugin_fatal(
    case: str, fake_entry_points: InstallFn, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, hook, detail = BROKEN[case]
    fake_entry_points({case: source})
    monkeypatch.setenv(plugins.STRICT_ENV, "1")
    with pytest.raises(PluginError, match="strict plugin mode") as raised:
        audit_linear()
    assert (raised.value.plugin, raised.value.hook) == (case, hook)
    assert detail in str(raised.value)
    assert f"gradhealth plugin {case!r}" in str(raised.value)


def test_configure_strict_overrides_the_environment(
    fake_entry_points: InstallFn, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_entry_points({"raises": RAISES_IN_ADAPTER})
    monkeypatch.setenv(plugins.STRICT_ENV, "0")
    plugins.configure(strict=True)
    with pytest.raises(PluginError) as raised:
        audit_linear()
    assert isinstance(raised.value.__cause__, ZeroDivisionError)
    plugins.configure(strict=False)
    monkeypatch.setenv(plugins.STRICT_ENV, "1")
    with pytest.warns(plugins.PluginWarning, match="'raises' .*in hook gradhealth_adapt_model"):
        assert_exact(audit_linear())


def test_bad_strict_environment_value_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(plugins.STRICT_ENV, "maybe")
    with pytest.raises(ConfigError, match="'maybe' from environment variable GRADHEALTH_STRICT_PLUGINS"):
        plugins.is_strict()


@pytest.mark.parametrize(
    ("hook", "body", "problem"),
    [
        ("gradhealth_register_probes", "raise KeyError('x')", "raised KeyError"),
        ("gradhealth_register_probes", "return ['not a probe class']", "expected a list of Probe subclasses"),
        ("gradhealth_register_tasks", "return 3", "returned int, expected a list of Task instances"),
        ("gradhealth_add_findings", "raise ValueError('boom')", "raised ValueError: boom"),
        ("gradhealth_add_findings", "return ['not a finding']", "expected a list of Finding"),
        ("gradhealth_register_renderers", "return {'x': 3}", "expected a dict of format name to callable"),
        ("gradhealth_adapt_model", "return 'an adapter?'", "returned str, expected an Adapter"),
    ],
)
def test_hook_that_raises_or_returns_garbage_is_skipped(hook: str, body: str, problem: str) -> None:
    args = {"gradhealth_add_findings": "report", "gradhealth_adapt_model": "model, layout"}.get(hook, "")
    namespace: dict[str, Any] = {}
    exec(f"def {hook}({args}):\n    {body}\n", namespace)
    plugin = type("Plugin", (), {hook: staticmethod(hookimpl(namespace[hook]))})
    plugins.register(plugin, name="garbage")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = audit_linear()
        plugins.renderer_registry()
    assert_exact(report)
    messages = [str(w.message) for w in caught if issubclass(w.category, plugins.PluginWarning)]
    assert len(messages) == 1
    assert f"'garbage' (runtime 'garbage' (Plugin)) is broken in hook {hook}: " in messages[0]
    assert problem in messages[0]


def test_gradhealth_errors_from_a_plugin_are_the_users_problem_and_propagate() -> None:
    class Picky:
        @hookimpl
        def gradhealth_adapt_model(self, model: Any, layout: Any) -> None:
            raise AdapterError("Picky models need layout.output='y'")

    plugins.register(Picky(), name="picky")
    with pytest.raises(AdapterError, match="Picky models"):
        audit_linear()
    assert plugins.get_plugin_manager().get_plugin("picky") is not None


def test_builtin_plugin_errors_propagate(monkeypatch: pytest.MonkeyPatch) -> None:
    class OurBug:
        @hookimpl
        def gradhealth_register_tasks(self) -> list[Any]:
            raise ZeroDivisionError("our bug")

    pm = plugins.get_plugin_manager()
    monkeypatch.setattr(plugins._info, "BUILTIN_PLUGINS", (*plugins.BUILTIN_PLUGINS, "gradhealth.fake_builtin"))
    pm.register(OurBug(), name="gradhealth.fake_builtin")
    with pytest.raises(ZeroDivisionError, match="our bug"):
        plugins.task_registry()


def test_one_broken_plugin_leaves_a_working_one_alone(fake_entry_points: InstallFn) -> None:
    good = """
    from gradhealth.hookspecs import hookimpl

    @hookimpl
    def gradhealth_register_renderers():
        return {"ok": lambda reports, **options: "ok"}
    """
    fake_entry_points({"raises": RAISES_IN_ADAPTER, "good": good})
    with pytest.warns(plugins.PluginWarning, match="'raises'"):
        assert_exact(audit_linear())
    assert plugins.renderer_registry()["ok"]([]) == "ok"
    status = {i.name: i.status for i in plugins.plugin_infos()}
    assert (status["raises"], status["good"]) == ("failed", "active")


def test_warnings_as_errors_report_a_load_failure_once(fake_entry_points: InstallFn) -> None:
    fake_entry_points({"import_error": IMPORT_ERROR})
    with warnings.catch_warnings():
        warnings.simplefilter("error", plugins.PluginWarning)  # as under `pytest -W error`
        with pytest.raises(plugins.PluginWarning, match="'import_error'"):
            audit_linear()
        assert_exact(audit_linear())  # the manager was complete: no rebuild, no second report


WRONG_LOADER = """
from gradhealth.hookspecs import hookimpl

@hookimpl(tryfirst=True)
def {hook}({args}):
    return "not what the hook returns"
"""


@pytest.mark.parametrize(
    ("hook", "args"),
    [("gradhealth_load_checkpoint", "path, options"), ("gradhealth_build_model", "checkpoint, options")],
)
def test_loader_hook_returning_the_wrong_type_is_skipped_and_fatal_only_when_strict(
    hook: str, args: str, fake_entry_points: InstallFn, tmp_path: Any
) -> None:
    """It once crashed the CLI with an AttributeError and exit code 1, which means "a gate failed"."""
    import torch
    from typer.testing import CliRunner

    from gradhealth.cli import app

    fake_entry_points({"wrong": WRONG_LOADER.format(hook=hook, args=args)})
    path = tmp_path / "gru.pt"
    torch.save(torch.nn.GRU(2, 3, batch_first=True).state_dict(), path)
    fast = ["audit", str(path), "--seq-len", "8", "--batch-size", "2", "--probes", "quick", "-f", "json"]
    relaxed = CliRunner().invoke(app, fast)
    assert relaxed.exit_code == 0, relaxed.stderr
    assert f"'wrong' (entry point 'wrong' (gh_fake_wrong)) is broken in hook {hook}: returned str" in relaxed.stderr
    strict = CliRunner().invoke(app, ["--strict-plugins", *fast])
    assert strict.exit_code == 2
    assert strict.stderr.count("\n") == 1 and "strict plugin mode" in strict.stderr

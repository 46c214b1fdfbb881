"""Registration order and ``firstresult``: which adapter wins.

pluggy calls ``tryfirst`` implementations first, then plain ones (the last registered first), then ``trylast``.
The built-in torch.nn adapters are ``tryfirst`` and the generic sequence adapter is ``trylast``, so a plugin's
plain adapter beats the generic one but not the built-in one for ``nn.LSTM``; a ``tryfirst`` plugin beats both.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import gradhealth
from gradhealth import plugins, reference
from gradhealth.adapters import Adapter, Layout
from gradhealth.adapters.sequence import SequenceAdapter
from gradhealth.hookspecs import hookimpl
from gradhealth.plugins import adapt
from gradhealth.report import Finding


def make_adapter_plugin(family: str, *, tryfirst: bool = False, claims: type = object) -> Any:
    """A plugin whose adapter claims every model of type ``claims``, tagged with ``family``; records its calls."""

    class Tagged(SequenceAdapter):
        pass

    Tagged.family = family

    class Plugin:
        def __init__(self) -> None:
            self.calls: list[str] = []

        @hookimpl(tryfirst=tryfirst)
        def gradhealth_adapt_model(self, model: Any, layout: Layout) -> Adapter | None:
            self.calls.append(type(model).__name__)
            return Tagged(model, layout) if isinstance(model, claims) else None

    return Plugin()


def test_plugin_adapter_beats_the_generic_sequence_adapter() -> None:
    assert isinstance(adapt(reference.LinearRecurrence(3, 0.9)), SequenceAdapter)
    assert adapt(reference.LinearRecurrence(3, 0.9)).family == "sequence"
    plugins.register(make_adapter_plugin("plugin.any"), name="any")
    assert adapt(reference.LinearRecurrence(3, 0.9)).family == "plugin.any"


def test_builtin_torch_adapter_still_wins_for_lstm() -> None:
    plugin = make_adapter_plugin("plugin.any")
    plugins.register(plugin, name="any")
    assert adapt(nn.LSTM(2, 3, batch_first=True)).family == "torch.nn.LSTM"
    assert plugin.calls == []  # firstresult: the built-in answered, nobody after it was asked


def test_tryfirst_plugin_beats_the_builtin_adapters() -> None:
    plugins.register(make_adapter_plugin("plugin.first", tryfirst=True), name="first")
    assert adapt(nn.LSTM(2, 3, batch_first=True)).family == "plugin.first"


def test_later_plain_plugin_is_asked_first_and_none_passes_on() -> None:
    early, late = make_adapter_plugin("plugin.early"), make_adapter_plugin("plugin.late", claims=nn.GRU)
    plugins.register(early, name="early")
    plugins.register(late, name="late")
    assert adapt(reference.LinearRecurrence(2, 0.5)).family == "plugin.early"  # late passed (None)
    assert late.calls == ["LinearRecurrence"]
    assert early.calls == ["LinearRecurrence"]


def test_plugin_adapter_drives_the_audit_with_the_exact_profile() -> None:
    plugins.register(make_adapter_plugin("plugin.linear", claims=reference.LinearRecurrence), name="linear")
    report = gradhealth.audit(reference.LinearRecurrence(3, 0.9), seq_len=48, batch_size=4, probes="quick")
    assert report.model["adapter"] == "plugin.linear"
    assert max(abs(g - 0.9**k) for k, g in enumerate(report.profile.g)) < 1e-10
    assert report.metrics.horizon == 44.0


def test_plugin_probe_task_and_findings_join_the_audit() -> None:
    from gradhealth.probes.base import Probe, ProbeContext
    from gradhealth.tasks import NoiseTask

    class Width(Probe):
        name = "width"

        def run(self, ctx: ProbeContext) -> dict[str, int]:
            return {"input_size": ctx.input_size}

    class Quiet(NoiseTask):
        name = "quiet_noise"

    class Plugin:
        @hookimpl
        def gradhealth_register_probes(self) -> list[type[Probe]]:
            return [Width]

        @hookimpl
        def gradhealth_register_tasks(self) -> list[Any]:
            return [Quiet()]

        @hookimpl
        def gradhealth_add_findings(self, report: gradhealth.Report) -> list[Finding]:
            horizon = report.metrics.horizon
            return [Finding("PLUGIN001", "info", "horizon seen", f"horizon {horizon:g}", probe="plugin")]

    plugins.register(Plugin(), name="extras")
    report = gradhealth.audit(
        reference.LinearRecurrence(3, 0.9), seq_len=48, batch_size=4, task="quiet_noise", probes=["width"]
    )
    assert report.probes["width"] == {"input_size": 3}
    assert report.config["task"] == "quiet_noise"
    assert [f.message for f in report.findings if f.code == "PLUGIN001"] == ["horizon 44"]


@pytest.mark.parametrize("kind", ["probe", "task"])
def test_plugin_may_not_take_a_builtin_name(kind: str) -> None:
    from gradhealth.probes.base import Probe
    from gradhealth.tasks import ImpulseTask

    class FakeLag(Probe):
        name = "lag_profile"

        def run(self, ctx: Any) -> None:
            raise AssertionError("never run")

    class FakeNoise(ImpulseTask):
        name = "noise"

    class Plugin:
        @hookimpl
        def gradhealth_register_probes(self) -> list[type[Probe]]:
            return [FakeLag] if kind == "probe" else []

        @hookimpl
        def gradhealth_register_tasks(self) -> list[Any]:
            return [FakeNoise()] if kind == "task" else []

    plugins.register(Plugin(), name="squatter")
    registry = plugins.probe_classes if kind == "probe" else plugins.task_registry
    with pytest.warns(plugins.PluginWarning, match="'squatter'.*gradhealth_register_.*already registered"):
        found = registry()
    if kind == "probe":
        assert found["lag_profile"].__module__ == "gradhealth.probes.lag_profile"
    else:
        assert type(found["noise"]).__module__ == "gradhealth.tasks.synthetic"
    assert plugins.get_plugin_manager().get_plugin("squatter") is None


def test_firstresult_loader_hooks_ask_plugins_before_the_builtin_loader(tmp_path: Any) -> None:
    from gradhealth.loaders.load import Checkpoint

    class Loader:
        @hookimpl
        def gradhealth_load_checkpoint(self, path: Any, options: dict[str, Any]) -> Any:
            return Checkpoint(path, "mine", {"w": torch.zeros(1)}) if path.suffix == ".mine" else None

        @hookimpl
        def gradhealth_build_model(self, checkpoint: Any, options: dict[str, Any]) -> Any:
            return [("m", nn.GRU(2, 2))] if checkpoint.format == "mine" else None

    plugins.register(Loader(), name="mine")
    checkpoint = plugins.load_checkpoint(tmp_path / "w.mine", {})
    assert (checkpoint.format, checkpoint.path.name) == ("mine", "w.mine")
    assert plugins.build_model(checkpoint, {})[0][0] == "m"
    torch.save({"x": torch.zeros(1)}, tmp_path / "w.pt")
    assert plugins.load_checkpoint(tmp_path / "w.pt", {}) is not None  # the built-in loader answers the rest

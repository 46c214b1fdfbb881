"""The example plugin, installed: discovered through its entry point, and used by gradhealth.audit.

Ground truth: a DiagonalSSM with one decay a on every channel has the exact lag profile g(k) = a^k and the horizon
1 + floor(ln ε / ln a) (44 for a = 0.9, ε = 1e-2).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import gradhealth
import pytest
import torch
from gradhealth import plugins

from gradhealth_example_plugin import DiagonalSSM, DiagonalSSMAdapter
from gradhealth_example_plugin.plugin import gradhealth_build_model
from gradhealth_example_plugin.probe import analytic_horizon

# the checks below are exact to 1e-12: float64 asked for (auto would follow the float32 model)
SETTINGS = {"seq_len": 48, "batch_size": 4, "probes": ["ssm_decay"], "dtype": "float64"}


@pytest.fixture(autouse=True)
def fresh_plugins() -> Iterator[None]:
    plugins.configure()
    yield
    plugins.configure()


def test_entry_point_is_discovered_with_its_distribution() -> None:
    info = {i.name: i for i in plugins.plugin_infos()}["example"]
    assert (info.status, info.source, info.distribution, info.version) == (
        "active",
        "entry point",
        "gradhealth-example-plugin",
        "0.1.0",
    )
    assert info.hooks == ["gradhealth_adapt_model", "gradhealth_build_model", "gradhealth_register_probes"]
    assert plugins.probe_classes()["ssm_decay"].__module__ == "gradhealth_example_plugin.probe"


def test_equal_decays_give_exact_geometric_profile() -> None:
    model = DiagonalSSM(3, 0.9)
    report = gradhealth.audit(model, **SETTINGS)
    a = float(model.decay.detach()[0].double())
    assert report.model["adapter"] == "example.DiagonalSSM"
    errors = [abs(g - a**k) for k, g in enumerate(report.profile.g)]
    assert max(errors) < 1e-12
    assert report.metrics.horizon == 44.0
    assert report.metrics.decay_rate == pytest.approx(math.log(a), abs=1e-12)
    assert report.verdict == "vanishing"


def test_probe_reports_analytic_timescales_and_horizon() -> None:
    report = gradhealth.audit(DiagonalSSM(3, [0.5, 0.8, 0.95]), **SETTINGS)
    result = report.probes["ssm_decay"]
    decays = [float(torch.tensor(a)) for a in (0.5, 0.8, 0.95)]
    assert result["timescales"] == pytest.approx([-1 / math.log(a) for a in decays], rel=1e-12)
    assert result["horizon"] == 1 + math.floor(math.log(1e-2) / math.log(decays[2]))  # 90
    # the slowest channel sets the asymptotic rate the lag profile measures
    assert report.metrics.decay_rate_tail == pytest.approx(math.log(decays[2]), abs=1e-5)


def test_unstable_channel_explodes_and_is_flagged() -> None:
    report = gradhealth.audit(DiagonalSSM(2, 1.2), **SETTINGS)
    assert report.verdict == "exploding"
    assert report.metrics.first_explode_lag == math.ceil(math.log(100) / math.log(float(torch.tensor(1.2))))  # 26
    assert [f.code for f in report.findings if f.probe == "ssm_decay"] == ["EXAMPLE001"]
    assert report.probes["ssm_decay"]["is_stable"] is False


def test_probe_skips_other_models() -> None:
    report = gradhealth.audit(torch.nn.GRU(2, 3, batch_first=True), **SETTINGS)
    assert "ssm_decay" in report.skipped_probes
    assert report.model["adapter"] == "torch.nn.GRU"


def test_without_the_plugin_the_model_cannot_be_driven() -> None:
    plugins.configure(disabled=["example"])
    with pytest.raises(gradhealth.ModelCallError, match="DiagonalSSM"):
        gradhealth.audit(DiagonalSSM(2, 0.9), seq_len=8, input_size=2, batch_size=2, probes="quick")


def test_adapter_calls_time_major_with_zero_state() -> None:
    model = DiagonalSSM(2, 0.5).double()
    x = torch.zeros(1, 3, 2, dtype=torch.float64)
    x[0, 0] = 1.0
    out = DiagonalSSMAdapter(model, gradhealth.Layout()).run(x).output
    assert out[0, :, 0].tolist() == [1.0, 0.5, 0.25]


@pytest.mark.parametrize(("decay", "expected"), [(0.9, 44.0), (0.99, 459.0), (0.0, 1.0), (1.0, math.inf)])
def test_analytic_horizon(decay: float, expected: float) -> None:
    assert analytic_horizon(decay, 1e-2) == expected


def test_bare_state_dict_is_rebuilt_as_diagonal_ssm(tmp_path: Path) -> None:
    torch.save(DiagonalSSM(3, [0.5, 0.8, 0.9]).state_dict(), tmp_path / "ssm.pt")
    checkpoint = plugins.load_checkpoint(tmp_path / "ssm.pt", {})
    ((name, model),) = plugins.build_model(checkpoint, {})
    assert name == "DiagonalSSM"
    assert model.decay.detach().tolist() == pytest.approx([0.5, 0.8, 0.9], rel=1e-7)
    assert gradhealth_build_model(checkpoint, {"model": "pkg.mod:factory"}) is None  # --model given: pass

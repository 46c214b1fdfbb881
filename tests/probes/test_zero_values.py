"""Issue 12 item 4: every probe's findings with missing (None/NaN) and zero values; an all-zero parameter group
is neither formatted as ``None`` nor called starved."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import gradhealth
from gradhealth.plugins import get_task
from gradhealth.probes.parameter_gradients import (
    ClipAdvice,
    GroupStat,
    ParameterGradients,
    ParameterGradientsResult,
)

from .conftest import probe_context

ALL_PROBES = ("lag_profile", "parameter_gradients", "spectrum", "gates", "state_gradients", "length_scan", "lyapunov")


class ZeroBiasGRU(nn.Module):
    """The issue's reproduction: a GRU and one extra bias initialised to zero (a zero norm scale is the same)."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(3, 6, batch_first=True)
        self.bias = nn.Parameter(torch.zeros(6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(x)[0] + self.bias


def test_an_all_zero_group_is_not_starved_and_its_gradient_matches_autograd() -> None:
    torch.manual_seed(0)
    ctx = probe_context(ZeroBiasGRU(), seq_len=8, batch_size=4)
    result = ParameterGradients().run(ctx)
    groups = {g.group: g for g in result.groups}
    zero = groups["(model)"]
    assert zero.status == "zero_weight"
    assert zero.param_norm == 0.0
    assert zero.ratio is None
    # its gradient is still measured: d MSE(y[:, -1] @ r, target) / d bias, by hand
    reference = copy.deepcopy(ctx.module)
    assert reference is not None
    batch = ctx.make_batch("parameter_gradients", task=get_task("adding"))
    y = reference(batch.inputs)
    readout = ctx.randn("parameter_gradients/readout", (6,), like=y) / math.sqrt(6)
    assert batch.targets is not None
    F.mse_loss(y[:, -1] @ readout, batch.targets[:, -1, 0]).backward()
    assert zero.grad_norm == pytest.approx(float(reference.bias.grad.norm()), rel=1e-10)
    assert groups["gru.l0"].status == "ok"
    found = ParameterGradients().findings(result, ctx)
    assert not [f for f in found if f.code == "GH102"]


def test_the_standard_preset_audits_a_model_with_a_zero_group() -> None:
    torch.manual_seed(0)
    report = gradhealth.audit(ZeroBiasGRU(), seq_len=10, batch_size=2, probes="standard", dtype="float64")
    statuses = {g["group"]: g["status"] for g in report.probes["parameter_gradients"]["groups"]}
    assert statuses["(model)"] == "zero_weight"
    assert all("None" not in f.message for f in report.findings)


@pytest.mark.parametrize("kind", ["GRU", "LSTM", "RNN"])
def test_every_probe_on_an_all_zero_model_formats_every_finding(kind: str) -> None:
    # all weights zero: zero gradients, undefined ratios and timescales, empty fits; nothing may crash or print None
    model = getattr(nn, kind)(2, 4, batch_first=True)
    for p in model.parameters():
        nn.init.zeros_(p)
    report = gradhealth.audit(model, seq_len=6, batch_size=2, probes=ALL_PROBES, dtype="float64")
    assert report.findings
    for f in report.findings:
        assert "None" not in f.message, f.message
    assert report.verdict in ("vanishing", "healthy", "inconclusive")


def _result(ratio: float | None, status: str, total: float) -> ParameterGradientsResult:
    group = GroupStat("layer", 0.0, 0.0, ratio, 0, status)
    clip = ClipAdvice(1.0, total, True, math.nan, math.nan, [total])
    return ParameterGradientsResult("adding", 0.0, [], [group], clip)


@pytest.mark.parametrize("ratio", [None, 0.0, math.nan])
def test_parameter_findings_format_missing_and_zero_values(ratio: float | None) -> None:
    ctx = probe_context(nn.GRU(2, 3, batch_first=True), seq_len=4, batch_size=2)
    found = ParameterGradients().findings(_result(ratio, "starved", 5.0), ctx)
    starved = [f for f in found if f.code == "GH102"]
    assert len(starved) == 1
    expected = "0" if ratio == 0.0 else "n/a"
    assert f"ratio {expected} is starved" in starved[0].message
    clip = [f for f in found if f.code == "GH104"]
    assert "scale it by n/a" in clip[0].message

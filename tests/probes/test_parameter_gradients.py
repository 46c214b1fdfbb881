"""Parameter gradients against an independent full-batch backward pass, and the starved/flooded logic."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import gradhealth
from gradhealth.plugins import get_task
from gradhealth.probes.parameter_gradients import ParameterGradients

from .conftest import probe_context


def test_matches_a_plain_full_batch_backward_and_clip_grad_norm() -> None:
    torch.manual_seed(0)
    gru = nn.GRU(3, 5, num_layers=2, batch_first=True)
    ctx = probe_context(gru, seq_len=10, batch_size=6)
    result = ParameterGradients(splits=4).run(ctx)

    reference = copy.deepcopy(ctx.module)
    assert reference is not None
    batch = ctx.make_batch("parameter_gradients", task=get_task("adding"))
    y = reference(batch.inputs)[0]
    readout = ctx.randn("parameter_gradients/readout", (5,), like=y) / math.sqrt(5)
    assert batch.targets is not None
    F.mse_loss(y[:, -1] @ readout, batch.targets[:, -1, 0]).backward()
    for stat in result.parameters:
        expected = reference.get_parameter(stat.name).grad
        assert expected is not None
        assert stat.grad_norm == pytest.approx(float(expected.norm()), rel=1e-10), stat.name
    total = float(nn.utils.clip_grad_norm_(reference.parameters(), max_norm=1e-3))
    assert result.clip.total_norm == pytest.approx(total, rel=1e-10)
    assert result.clip.scale == pytest.approx(1.0 if total <= 1.0 else 1.0 / (total + 1e-6), rel=1e-12)
    assert len(result.clip.split_norms) == 4
    assert result.clip.suggested_threshold == pytest.approx(sum(result.clip.split_norms) / 4)
    assert all(p.grad is None for p in ctx.module.parameters())


def test_gate_blocks_split_each_layer_and_direction() -> None:
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 4, bidirectional=True, batch_first=True)
    result = ParameterGradients().run(probe_context(lstm, seq_len=8))
    groups = {g.group: g for g in result.groups}
    assert sorted(groups) == ["LSTM.l0", "LSTM.l0_reverse"]
    forward = groups["LSTM.l0"]
    assert list(forward.blocks) == ["i", "f", "g", "o"]
    block_total = math.sqrt(sum(b["grad_norm"] ** 2 for b in forward.blocks.values()))  # type: ignore[operator]
    assert block_total == pytest.approx(forward.grad_norm, rel=1e-12)


class TwoStage(nn.Module):
    """y = second(s · first(x)): the first layer's gradient is scaled by s."""

    def __init__(self, s: float) -> None:
        super().__init__()
        self.first = nn.GRU(3, 4, batch_first=True)
        self.second = nn.GRU(4, 4, batch_first=True)
        self.input_size = 3
        self.s = s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.s * self.first(x)[0])[0]


def test_a_layer_cut_off_from_the_loss_is_starved() -> None:
    torch.manual_seed(0)
    report = gradhealth.audit(TwoStage(1e-5), seq_len=8, batch_size=4, probes=["parameter_gradients"])
    groups = {g["group"]: g for g in report.probes["parameter_gradients"]["groups"]}
    assert groups["first.l0"]["status"] == "starved"
    assert groups["second.l0"]["status"] == "ok"
    assert "GH102" in [f.code for f in report.findings]


def test_non_finite_gradients_raise_gh101() -> None:
    torch.manual_seed(0)
    rnn = nn.RNN(3, 4, batch_first=True)
    with torch.no_grad():
        rnn.weight_hh_l0[0, 0] = math.inf
    result = ParameterGradients().run(probe_context(rnn, seq_len=6))
    assert any(p.nonfinite for p in result.parameters)
    assert result.groups[0].status == "non_finite"
    report = gradhealth.audit(rnn, seq_len=6, batch_size=2, probes=["parameter_gradients"])
    assert "GH101" in [f.code for f in report.findings]


def test_copy_task_and_fallback_for_token_models() -> None:
    torch.manual_seed(0)
    copy_result = ParameterGradients(task="copy").run(probe_context(nn.LSTM(5, 4, batch_first=True), seq_len=12))
    assert copy_result.task == "copy"
    assert copy_result.loss > 0

    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(7, 3)
            self.rnn = nn.GRU(3, 4, batch_first=True)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.rnn(self.embed(ids))[0]

    token_result = ParameterGradients().run(probe_context(Tokens(), seq_len=6))
    assert token_result.task == "output_projection"
    assert token_result.notes
    embed = next(p for p in token_result.parameters if p.name == "embed.weight")
    assert embed.grad_norm is None  # the gradient is taken at the embedding output


def test_bad_task_option_is_a_config_error() -> None:
    with pytest.raises(gradhealth.ConfigError, match="use 'adding' or 'copy'"):
        ParameterGradients(task="noise")

"""Findings and advice fit the architecture the adapter found: a finite receptive field is finite memory, not
vanishing; attention has no recurrent product to vanish through; only recurrences get recurrent advice."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradhealth
import gradhealth.testing as ght
from gradhealth import reference
from gradhealth.adapters.architecture import classify_architecture


def quick(model: object, seq_len: int = 20) -> gradhealth.Report:
    return gradhealth.audit(model, seq_len=seq_len, batch_size=3, probes="quick")  # type: ignore[arg-type]


class CausalConv(nn.Module):
    """Stacked causal convolutions (kernel 3, dilations ``dilations``), linear, positive weights: the output at t
    depends on exactly the inputs t - field + 1 .. t, field = 1 + 2·sum(dilations), and on none before."""

    def __init__(self, dilations: tuple[int, ...], channels: int = 3) -> None:
        super().__init__()
        self.dilations = dilations
        self.convs = nn.ModuleList(nn.Conv1d(channels, channels, 3, dilation=d) for d in dilations)
        with torch.no_grad():
            for conv in self.convs:
                conv.weight.fill_(0.5)
                conv.bias.zero_()
        self.input_size = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.transpose(1, 2)
        for conv, d in zip(self.convs, self.dilations, strict=True):
            y = conv(nn.functional.pad(y, (2 * d, 0)))
        return y.transpose(1, 2)


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(4, 8)
        self.enc = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        self.input_size = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc(self.proj(x))


class HandWrittenRNN(nn.Module):
    """A recurrence in a Python loop over nn.Linear layers: nothing in the module tree says it is recurrent."""

    def __init__(self) -> None:
        super().__init__()
        self.ih = nn.Linear(3, 5)
        self.hh = nn.Linear(5, 5)
        self.input_size = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(x.shape[0], 5, dtype=x.dtype)
        out = []
        for t in range(x.shape[1]):
            h = torch.tanh(self.ih(x[:, t]) + self.hh(h))
            out.append(h)
        return torch.stack(out, 1)


class AttentionOverGRU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(3, 8, batch_first=True)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.input_size = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.gru(x)[0]
        return self.attn(h, h, h)[0]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (nn.Linear(4, 4), "feedforward"),
        (nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.LayerNorm(8)), "feedforward"),
        (nn.LSTM(4, 8), "recurrent"),
        (nn.GRUCell(4, 8), "recurrent"),
        (reference.LinearRecurrence(3, 0.9), "recurrent"),
        (reference.DelayLine(3, 4), "recurrent"),
        (CausalConv((1, 2)), "convolutional"),
        (Encoder(), "attention"),
        (AttentionOverGRU(), "recurrent"),
        (HandWrittenRNN(), "unknown"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else str(v),
)
def test_classify_architecture(model: nn.Module, expected: str) -> None:
    assert classify_architecture(model) == expected


def test_a_model_can_declare_its_architecture() -> None:
    model = HandWrittenRNN()
    model.gradhealth_architecture = "recurrent"  # type: ignore[assignment]
    assert classify_architecture(model) == "recurrent"
    model.gradhealth_architecture = "nonsense"  # type: ignore[assignment]
    assert classify_architecture(model) == "unknown"


def _recurrent_advice(report: gradhealth.Report) -> list[str]:
    return [f.code for f in report.findings if "LSTM" in f.advice]


def test_per_step_linear_layer_is_finite_memory_of_one_step_not_vanishing() -> None:
    report = quick(nn.Linear(4, 4))
    assert report.model["architecture"] == "feedforward"
    assert report.verdict == "finite_memory"
    assert report.metrics.horizon == 1  # y_t depends on x_t only
    assert report.profile.g[1:] == [0.0] * 20
    codes = [f.code for f in report.findings]
    assert "GH020" in codes and "GH001" not in codes
    assert _recurrent_advice(report) == []


@pytest.mark.parametrize("dilations", [(1,), (1, 2), (1, 2, 4)])
def test_causal_convolution_reports_its_receptive_field(dilations: tuple[int, ...]) -> None:
    field = 1 + 2 * sum(dilations)  # 3, 7, 15
    report = quick(CausalConv(dilations), seq_len=24)
    g = report.profile.g
    assert report.model["architecture"] == "convolutional"
    assert report.verdict == "finite_memory"
    assert all(v > 0 for v in g[:field]) and g[field:] == [0.0] * (25 - field)
    (gh020,) = [f for f in report.findings if f.code == "GH020"]
    assert f"beyond lag {field - 1}" in gh020.message
    assert "GH001" not in [f.code for f in report.findings]
    assert _recurrent_advice(report) == []


def test_attention_gets_no_recurrent_advice_and_says_what_it_found() -> None:
    report = quick(Encoder())
    assert report.model["architecture"] == "attention"
    assert report.verdict != "finite_memory"  # attention reaches every lag: no exact zeros
    codes = [f.code for f in report.findings]
    assert "GH021" in codes and "GH001" not in codes
    assert _recurrent_advice(report) == []


def test_recurrent_models_keep_the_vanishing_verdict_and_its_advice() -> None:
    report = quick(reference.DelayLine(3, 5))  # a shift register: recurrent, horizon exactly 5
    assert report.verdict == "vanishing" and report.metrics.horizon == 5
    torch.manual_seed(0)
    rnn = quick(nn.RNN(3, 8, batch_first=True), seq_len=40)
    assert rnn.model["architecture"] == "recurrent"
    assert rnn.verdict == "vanishing"
    assert "GH001" in [f.code for f in rnn.findings]


def test_assertions_fail_on_finite_memory_with_a_message_that_says_so() -> None:
    with pytest.raises(AssertionError, match="finite memory"):
        ght.assert_no_vanishing(nn.Linear(3, 3), over=10, batch_size=2)


def test_architecture_round_trips_through_json() -> None:
    report = quick(CausalConv((1,)), seq_len=8)
    again = gradhealth.Report.from_json(report.to_json())
    assert again.model["architecture"] == "convolutional"
    assert again.verdict == "finite_memory"

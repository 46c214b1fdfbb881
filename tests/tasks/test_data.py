"""Probing with the user's own sequences: the data reaches the probes, the lag window follows its length.

Ground truth: ``scaled_orthogonal_rnn(4, 0.9)`` (tanh, W_hh = 0.9 Q, W_ih = I, zero bias) has g(k) = 0.9^k while its
inputs keep tanh linear (horizon@0.01 = 44: 0.9^43 = 0.0108 >= 0.01 > 0.9^44 = 0.0097), and a saturated tanh
(|h| >= 0.9999 for inputs of +-5, tanh' <= 2e-4 per step) cuts g(1) below 1e-3: horizon 1. So the same model
gives 44 or 1 depending only on which sequences it is probed with.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import gradhealth
from gradhealth import reference
from gradhealth.errors import ConfigError
from gradhealth.tasks.data import probe_window, read_inputs


def _signs(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 2, shape, generator=torch.Generator().manual_seed(seed)).double() * 2 - 1


def test_the_probes_see_the_users_sequences() -> None:
    rnn = reference.scaled_orthogonal_rnn(4, 0.9)
    linear = gradhealth.audit(rnn, inputs=1e-4 * _signs((4, 101, 4)), probes="quick")
    saturated = gradhealth.audit(rnn, inputs=5.0 * _signs((4, 101, 4)), probes="quick")
    assert linear.config["seq_len"] == 50 and linear.config["burn_in"] == 50
    assert linear.metrics.horizon == 44
    assert linear.profile.g[10] == pytest.approx(0.9**10, rel=1e-6)
    assert saturated.metrics.horizon == 1
    assert saturated.profile.g[1] < 1e-3


class TokenRNN(nn.Module):
    """Token 0 embeds to a tiny input (linear tanh), token 1 to a large one (saturated tanh)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(2, 4)
        self.rnn = reference.scaled_orthogonal_rnn(4, 0.9)
        with torch.no_grad():
            self.embed.weight.copy_(torch.tensor([[1e-4, -1e-4, 1e-4, -1e-4], [5.0, -5.0, 5.0, -5.0]]))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.rnn(self.embed(ids))[0]


def test_token_ids_feed_token_models() -> None:
    model = TokenRNN()
    quiet = gradhealth.audit(model, inputs=torch.zeros(3, 101, dtype=torch.long), probes="quick")
    loud = gradhealth.audit(model, inputs=np.ones((3, 101), dtype=np.int64), probes="quick")
    assert quiet.metrics.horizon == 44 and loud.metrics.horizon == 1
    assert loud.inputs is not None
    assert (loud.inputs.kind, loud.inputs.shape, loud.inputs.dtype) == ("token_ids", [3, 101], "int64")
    with pytest.raises(ConfigError, match=r"token ids span 0\.\.2, the vocabulary is 0\.\.1"):
        gradhealth.audit(model, inputs=torch.tensor([[0, 1, 2, 0]]), probes="quick")
    with pytest.raises(ConfigError, match="the model takes token ids"):
        gradhealth.audit(model, inputs=torch.zeros(2, 9, 4), probes="quick")


@pytest.mark.parametrize(
    ("total", "seq_len", "burn_in", "expected"),
    [
        (101, None, None, (50, 50)),
        (100, None, None, (49, 50)),
        (101, 20, None, (20, 80)),
        (101, None, 30, (70, 30)),
        (101, 20, 30, (20, 30)),
        (3, None, None, (1, 1)),
        (2, None, None, (1, 0)),
    ],
)
def test_the_lag_window_follows_the_length(total: int, seq_len: int, burn_in: int, expected: tuple[int, int]) -> None:
    k, burn = probe_window(total, seq_len=seq_len, burn_in=burn_in)
    assert (k, burn) == expected
    assert burn + k + 1 <= total


@pytest.mark.parametrize(
    ("total", "seq_len", "burn_in", "message"),
    [
        (41, 50, None, "the longest K they allow is 40"),
        (41, 20, 30, "the longest K they allow after a burn-in of 30 is 10"),
        (41, None, 40, "they allow no lag at all"),
    ],
)
def test_sequences_too_short_name_the_longest_k(total: int, seq_len: int, burn_in: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        probe_window(total, seq_len=seq_len, burn_in=burn_in)


def test_too_short_for_the_asked_k_through_the_api() -> None:
    with pytest.raises(ConfigError, match="sequences have 41 steps.*the longest K they allow is 40"):
        gradhealth.audit(nn.GRU(2, 3, batch_first=True), inputs=torch.zeros(2, 41, 2), seq_len=64)


def test_every_container_gives_the_first_n_sequences() -> None:
    x = torch.randn(10, 9, 2, generator=torch.Generator().manual_seed(1))
    loader = DataLoader(TensorDataset(x, torch.zeros(10)), batch_size=3)
    expected = x[:7]
    for data in (x, x.numpy(), [x[:4], x[4:]], {"inputs": x}, loader, iter([{"input_ids": x[:5]}, {"x": x[5:]}])):
        got = read_inputs(data, limit=7)
        assert torch.equal(got.tensor, expected), type(data)
        assert got.info.shape == [7, 9, 2]
        assert got.info.dtype == "float32"
    assert read_inputs(loader, limit=7).info.source == "DataLoader"


def test_the_hash_is_of_dtype_shape_and_content() -> None:
    x = np.arange(24, dtype=np.float32).reshape(2, 4, 3)
    expected = hashlib.sha256(b"float32 [2, 4, 3]\n" + x.tobytes()).hexdigest()[:16]
    assert read_inputs(x, limit=8).info.sha256 == expected
    assert read_inputs(torch.from_numpy(x), limit=8).info.sha256 == expected
    assert read_inputs(x.astype(np.float64), limit=8).info.sha256 != expected
    changed = x.copy()
    changed[1, 3, 2] += 1
    assert read_inputs(changed, limit=8).info.sha256 != expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (torch.zeros(4, 9), "integer|float inputs must be"),
        (torch.zeros(4, 9, 2, dtype=torch.long), "token ids and must be"),
        (torch.zeros(4, 1, 2), "at least 2 steps"),
        (torch.full((2, 5, 1), float("nan")), "NaN or Inf"),
        ("data.npy", "expected a"),
        ([torch.zeros(2, 5, 1), torch.zeros(2, 6, 1)], "batches differ"),
        ({"labels": torch.zeros(2, 5, 1)}, "needs one of the keys"),
        (np.array([{"a": 1}], dtype=object), "not numeric"),
        ([], "holds no sequences"),
    ],
)
def test_bad_data_is_one_clear_error(data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        read_inputs(data, limit=4)
    assert "\n" not in str(info.value)


def test_the_report_records_the_inputs_never_the_data() -> None:
    x = torch.full((3, 21, 2), 0.123456789)
    report = gradhealth.audit(nn.GRU(2, 3, batch_first=True), inputs=x, probes="quick")
    text = report.to_json()
    assert "0.123456" not in text
    back = gradhealth.Report.from_json(text)
    assert back.inputs == report.inputs
    assert back.inputs is not None and back.inputs.shape == [3, 21, 2]
    assert report.config["task"] == "inputs" and report.config["batch_size"] == 3
    assert gradhealth.audit(nn.GRU(2, 3, batch_first=True), seq_len=4, batch_size=2, probes="quick").inputs is None


def test_every_probe_runs_on_the_data() -> None:
    torch.manual_seed(0)
    report = gradhealth.audit(nn.LSTM(2, 4, batch_first=True), inputs=torch.randn(4, 41, 2), probes="thorough")
    assert not report.skipped_probes or "length_scan" not in report.skipped_probes
    scan = report.probes["length_scan"]
    assert [p["length"] for p in scan["points"]] == [16, 32] and scan["stopped"] == "data_length"
    with pytest.raises(ConfigError, match="cannot be combined with inputs"):
        gradhealth.audit(nn.GRU(2, 3, batch_first=True), inputs=torch.zeros(2, 9, 2), task="adding")

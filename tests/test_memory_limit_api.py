"""The Python API and the pytest faces refuse an audit whose probes would not fit, before allocating anything."""

from __future__ import annotations

from typing import Any

import pytest
from torch import nn

import gradhealth
import gradhealth.engine
from gradhealth.errors import ConfigError, MemoryLimitError
from gradhealth.testing import Auditor


class ReachedError(Exception):
    """Raised in place of the probe copy: the audit got past the memory check."""


@pytest.fixture
def no_allocation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any step that makes the probe copy (the first allocation of the model's size) raises :class:`ReachedError`."""

    def refuse(*_: Any, **__: Any) -> None:
        raise ReachedError

    monkeypatch.setattr(gradhealth.engine, "_prepare", refuse)


def _rnn_estimate(input_size: int, hidden: int, seq_len: int, batch_size: int, *, window_only: bool = False) -> int:
    # the documented sum (gradhealth.memory), float64, no length scan: parameters x 8 x 3,
    # activations batch x (burn_in = K, + K) x units x 8 x 20, jacobians units^2 x 8 x 4; the lag profile alone
    # on a model that hands its state over keeps the K-step window only (the burn-in runs without a graph)
    parameters = hidden * input_size + hidden * hidden + 2 * hidden
    steps = seq_len if window_only else 2 * seq_len
    return parameters * 8 * 3 + batch_size * steps * hidden * 8 * 20 + hidden * hidden * 8 * 4


def test_a_huge_seq_len_is_refused_before_the_probe_copy(no_allocation: None) -> None:
    with pytest.raises(MemoryLimitError) as info:
        gradhealth.audit(nn.RNN(4, 16, batch_first=True), seq_len=10**7)
    message = str(info.value)
    assert "\n" not in message
    assert "needs about 1.5 TiB" in message and "4.0 GiB" in message and "memory_limit=" in message
    assert info.value.estimate == _rnn_estimate(4, 16, 10**7, 32)
    assert info.value.limit == 4 * 2**30


def test_a_large_hidden_size_is_refused_and_the_limit_can_be_raised(no_allocation: None) -> None:
    model = nn.GRU(4, 1024, batch_first=True)
    with pytest.raises(MemoryLimitError, match=r"1024 state units\) needs about 19\.6 GiB") as info:
        gradhealth.audit(model, seq_len=2000)
    parameters = 3 * (1024 * 4 + 1024 * 1024 + 2 * 1024)
    activations = 32 * 2 * 2000 * 1024 * 8 * 20
    assert info.value.estimate == parameters * 8 * 3 + activations + 1024 * 1024 * 8 * 4
    with pytest.raises(ReachedError):
        gradhealth.audit(model, seq_len=2000, memory_limit="32GiB")
    with pytest.raises(ReachedError):
        gradhealth.audit(model, seq_len=2000, memory_limit="none")


def test_the_limit_is_the_estimate_to_the_byte(no_allocation: None) -> None:
    estimate = _rnn_estimate(3, 8, 10, 2, window_only=True)
    model = nn.RNN(3, 8, batch_first=True)
    with pytest.raises(ReachedError):
        gradhealth.audit(model, seq_len=10, batch_size=2, probes="quick", memory_limit=estimate)
    with pytest.raises(MemoryLimitError):
        gradhealth.audit(model, seq_len=10, batch_size=2, probes="quick", memory_limit=estimate - 1)


def test_the_lag_profile_alone_counts_the_window_only_where_the_burn_in_has_no_graph(no_allocation: None) -> None:
    # a unidirectional nn.RNN hands its burn-in state over (no graph): the quick preset keeps K steps; the
    # standard preset's parameter gradients and a bidirectional layer keep burn-in + K
    for probes, window_only in (("quick", True), ("standard", False)):
        with pytest.raises(MemoryLimitError) as info:
            gradhealth.audit(nn.RNN(4, 16, batch_first=True), seq_len=10**7, probes=probes)
        assert info.value.estimate == _rnn_estimate(4, 16, 10**7, 32, window_only=window_only), probes
    with pytest.raises(MemoryLimitError) as info:
        gradhealth.audit(nn.RNN(4, 8, batch_first=True, bidirectional=True), seq_len=10**7, probes="quick")
    parameters = 2 * (8 * 4 + 8 * 8 + 2 * 8)
    assert info.value.estimate == parameters * 8 * 3 + 32 * 2 * 10**7 * 16 * 8 * 20 + 16 * 16 * 8 * 4


def test_the_thorough_preset_of_a_common_model_fits_the_default_limit(no_allocation: None) -> None:
    # nn.LSTM(32, 256, 2 layers) at the defaults: the length scan's 4096 steps x 32 sequences dominate; measured
    # peak 1.6 GB over the import in float64, estimated 2.5 GiB (it was refused at 4.1 GiB before the scan factor
    # was measured)
    with pytest.raises(ReachedError):
        gradhealth.audit(nn.LSTM(32, 256, num_layers=2, batch_first=True), probes="thorough")


@pytest.mark.parametrize("bad", [0, -5, "lots", 1.5, True])
def test_an_invalid_limit_is_a_config_error(bad: object) -> None:
    with pytest.raises(ConfigError, match="memory_limit"):
        gradhealth.audit(nn.RNN(3, 8, batch_first=True), seq_len=10, memory_limit=bad)  # type: ignore[arg-type]


def test_checkpoint_chunks_count_in_the_estimate_of_the_lag_profile_alone(no_allocation: None) -> None:
    model = nn.GRU(4, 1024, batch_first=True)
    with pytest.raises(MemoryLimitError):  # 19.6 GiB in one piece, and the standard preset keeps every step
        gradhealth.audit(model, seq_len=2000, checkpoint_chunks=8)
    with pytest.raises(ReachedError):  # the lag profile alone in 8 pieces: 1/8 of the activations, 2.5 GiB
        gradhealth.audit(model, seq_len=2000, checkpoint_chunks=8, probes="quick")
    with pytest.raises(MemoryLimitError):  # a bidirectional layer runs whole whatever the setting
        gradhealth.audit(nn.GRU(4, 512, bidirectional=True), seq_len=2000, checkpoint_chunks=8, probes="quick")


def test_a_normal_model_is_audited_under_the_default_limit() -> None:
    report = gradhealth.audit(nn.GRU(3, 8, batch_first=True), seq_len=12, batch_size=4, probes="quick")
    assert report.verdict in {"vanishing", "healthy"}


def test_the_pytest_face_passes_the_limit(no_allocation: None) -> None:
    model = nn.RNN(4, 16, batch_first=True)
    with pytest.raises(MemoryLimitError, match="needs about"):
        Auditor().with_settings(seq_len=10**6).audit(model)
    with pytest.raises(ReachedError):  # none: no limit
        Auditor().with_settings(seq_len=10**6, memory_limit=None).audit(model)
    with pytest.raises(MemoryLimitError, match="above the memory limit of 1.0 KiB"):
        Auditor().with_settings(seq_len=10, memory_limit=1024).audit(model)


def test_the_cli_counts_checkpoint_chunks_in_its_estimate(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from typer.testing import CliRunner

    from gradhealth.cli import app

    def run_audit(*_: Any, **__: Any) -> None:
        raise ReachedError

    monkeypatch.setattr(gradhealth.engine, "run_audit", run_audit)  # the CLI imports it when it audits
    torch.save(nn.LSTM(4, 256, batch_first=True).state_dict(), tmp_path / "lstm.pt")
    torch.save(nn.LSTM(4, 256, batch_first=True, bidirectional=True).state_dict(), tmp_path / "bi.pt")
    args = ["audit", "--seq-len", "4000", "--probes", "quick", "--memory-limit", "2GiB"]
    whole = CliRunner().invoke(app, [*args, str(tmp_path / "lstm.pt")])
    # the lag profile alone keeps the window only: 32 x 4000 x 256 x 8 x 20 + ...
    assert whole.exit_code == 2 and "needs about 4.9 GiB" in whole.output
    chunked = CliRunner().invoke(app, [*args, "--checkpoint-chunks", "8", str(tmp_path / "lstm.pt")])
    assert isinstance(chunked.exception, ReachedError) or "internal error: ReachedError" in chunked.output
    bidirectional = CliRunner().invoke(app, [*args, "--checkpoint-chunks", "8", str(tmp_path / "bi.pt")])
    assert bidirectional.exit_code == 2 and "needs about 19.6 GiB" in bidirectional.output

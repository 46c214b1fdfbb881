"""The training monitor: it never changes the run, its history is the audits of the saved checkpoints, and the
numbers reach TensorBoard, W&B and extra loggers."""

from __future__ import annotations

import copy
import random
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import gradhealth
from gradhealth.errors import ConfigError
from gradhealth.history import HistoryError, HistoryRecord, append_record, read_history, record_from_report
from gradhealth.monitor import Monitor, history_metrics
from gradhealth.reference import LinearRecurrence

SETTINGS: dict[str, Any] = {"seq_len": 24, "batch_size": 4, "input_size": 3}
STEPS, EVERY = 12, 4


class Net(nn.Module):
    """A GRU with dropout (so training consumes the torch RNG) and a linear readout: [B, T, 3] -> [B, T, 2]."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(3, 8, batch_first=True)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.rnn(x)[0]))


def train(monitor_kwargs: dict[str, Any] | None) -> tuple[list[float], nn.Module, list[dict[str, torch.Tensor]], Any]:
    """A run whose every step draws from the torch, NumPy and Python random streams."""
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    model = Net()
    handle = model.register_forward_hook(lambda *_: None)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    monitor = Monitor(model, every=EVERY, **monitor_kwargs, **SETTINGS) if monitor_kwargs is not None else None
    losses, checkpoints = [], []
    for _ in range(STEPS):
        x = torch.randn(5, 10, 3) * (1 + np.random.rand()) * (1 + random.random())
        loss = (model(x)[:, -1] - x[:, 0, :2]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if monitor is not None:
            monitor.step()
        checkpoints.append(copy.deepcopy(model.state_dict()))
    assert list(model._forward_hooks) == [handle.id]  # the user's hook is still there, and nothing else
    return losses, model, checkpoints, monitor


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    history = tmp_path_factory.mktemp("monitor") / "run.jsonl"
    plain = train(None)
    monitored = train({"history": history})
    return {"plain": plain, "monitored": monitored, "history": history}


def test_a_monitored_run_is_bit_identical_to_an_unmonitored_one(runs: dict[str, Any]) -> None:
    losses, model, _, _ = runs["plain"]
    losses_m, model_m, _, monitor = runs["monitored"]
    assert [r.step for r in monitor.records] == [4, 8, 12]
    assert losses == losses_m
    for (name, p), (_, q) in zip(model.named_parameters(), model_m.named_parameters(), strict=True):
        assert torch.equal(p, q), name
        assert torch.equal(p.grad, q.grad), name
    assert model_m.training and model_m.drop.training
    assert all(p.requires_grad for p in model_m.parameters())
    # and the random streams are where the unmonitored run left them
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    train(None)
    expected = (torch.rand(3), np.random.rand(), random.random())
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    train({})
    assert torch.equal(torch.rand(3), expected[0]) and (np.random.rand(), random.random()) == expected[1:]


def test_history_equals_auditing_the_checkpoints_saved_at_the_same_steps(runs: dict[str, Any]) -> None:
    _, _, checkpoints, monitor = runs["monitored"]
    from_file = read_history(runs["history"])
    assert from_file == monitor.records
    for record in from_file:
        model = Net()
        model.load_state_dict(checkpoints[record.step - 1])
        report = gradhealth.audit(model, probes="quick", dtype="float32", **SETTINGS)
        assert record == record_from_report(report, step=record.step)
        assert record.horizon == report.metrics.horizon and record.verdict == report.verdict
        assert record.g == report.profile.g and record.seq_len == SETTINGS["seq_len"]
    # the weights moved, so the profiles differ between audits (the history is not one audit repeated)
    assert from_file[0].g != from_file[-1].g


def test_fixed_probe_inputs_give_the_analytic_horizon_at_every_audit(tmp_path: Path) -> None:
    # h_t = 0.9 Q h_{t-1} + x_t: g(k) = 0.9^k, horizon at 1e-2 is 44 whatever the step
    model = LinearRecurrence(4, rho=0.9)
    monitor = Monitor(model, every=1, seq_len=60, batch_size=2, dtype="float64")
    for _ in range(3):
        monitor.step()
    assert [r.horizon for r in monitor.records] == [44, 44, 44]
    assert monitor.records[0].g[10] == pytest.approx(0.9**10, rel=1e-9)
    assert monitor.records[0].decay_rate == pytest.approx(np.log(0.9), rel=1e-9)


def test_explicit_steps_and_an_audit_before_training() -> None:
    monitor = Monitor(nn.RNN(2, 4, batch_first=True), every=10, seq_len=12, batch_size=2)
    monitor.audit(0)
    assert monitor.step(5) is None
    assert monitor.step(20) is not None
    assert [r.step for r in monitor.records] == [0, 20]


def test_tensorboard_scalars_can_be_read_back(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logdir = tmp_path / "tb"
    with Monitor(nn.LSTM(3, 6, batch_first=True), every=2, writer=logdir, seq_len=16, batch_size=2) as monitor:
        for _ in range(4):
            monitor.step()
    events = EventAccumulator(str(logdir))
    events.Reload()
    horizons = events.Scalars("gradhealth/horizon")
    assert [e.step for e in horizons] == [2, 4]
    assert [e.value for e in horizons] == pytest.approx([r.horizon for r in monitor.records], rel=1e-6)
    rates = events.Scalars("gradhealth/decay_rate")
    assert [e.value for e in rates] == pytest.approx([r.decay_rate for r in monitor.records], rel=1e-6)
    verdicts = [e.value for e in events.Scalars("gradhealth/verdict")]
    assert verdicts == [float(gradhealth.report.VERDICTS.index(r.verdict)) for r in monitor.records]


def test_a_user_writer_and_loggers_receive_the_metrics() -> None:
    class Writer:
        def __init__(self) -> None:
            self.scalars: list[tuple[str, float, int]] = []
            self.closed = False

        def add_scalar(self, name: str, value: float, step: int) -> None:
            self.scalars.append((name, value, step))

        def flush(self) -> None:
            pass

        def close(self) -> None:
            self.closed = True

    writer, seen = Writer(), []
    monitor = Monitor(
        nn.GRU(2, 4, batch_first=True),
        every=1,
        writer=writer,
        loggers=[lambda metrics, step: seen.append((dict(metrics), step))],
        tag="enc",
        seq_len=10,
        batch_size=2,
    )
    monitor.step()
    monitor.close()
    record = monitor.records[0]
    assert ("enc/horizon", record.horizon, 1) in writer.scalars
    assert seen == [(history_metrics(record, tag="enc"), 1)]
    assert not writer.closed  # the caller's writer stays open


def test_wandb_is_used_when_a_run_is_active_and_never_required(monkeypatch: pytest.MonkeyPatch) -> None:
    logged: list[tuple[dict[str, float], bool]] = []
    fake = types.SimpleNamespace(run=None, log=lambda metrics, commit=True: logged.append((metrics, commit)))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monitor = Monitor(nn.GRU(2, 4, batch_first=True), every=1, seq_len=10, batch_size=2)
    monitor.step()
    assert logged == []  # installed but no run: nothing to log to
    fake.run = object()
    monitor.step()
    assert len(logged) == 1
    metrics, commit = logged[0]
    assert metrics["gradhealth/step"] == 2 and metrics["gradhealth/horizon"] == monitor.records[-1].horizon
    assert commit is False
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    Monitor(nn.GRU(2, 4, batch_first=True), seq_len=10).step()
    with pytest.raises(ConfigError, match="wandb"):
        Monitor(nn.GRU(2, 4, batch_first=True), wandb=True)


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"every": 0}, "every"), ({"seqlen": 5}, "seqlen"), ({"seq_len": 0}, "seq_len")]
)
def test_bad_settings(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Monitor(nn.GRU(2, 4, batch_first=True), **kwargs)


def test_history_round_trips_non_finite_numbers(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    record = HistoryRecord(
        step=3, verdict="healthy", horizon=float("inf"), horizon_reached=False, decay_rate=None, seq_len=5, eps=0.01
    )
    append_record(path, record)
    append_record(path, record)
    assert read_history(path) == [record, record]
    assert '"horizon":"inf"' in path.read_text()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "no history records"),
        ("not json\n", ":1: not a gradhealth history record"),
        ('{"format": "other"}\n', "format"),
        ('{"format": "gradhealth-history/1", "step": 1}\n', "missing field"),
        (
            '{"format": "gradhealth-history/1", "step": -1, "verdict": "healthy", "horizon": 3, '
            '"horizon_reached": true, "decay_rate": null, "seq_len": 5, "eps": 0.01}\n',
            "invalid step",
        ),
        (
            '{"format": "gradhealth-history/1", "step": 1, "verdict": "<b>", "horizon": 3, '
            '"horizon_reached": true, "decay_rate": null, "seq_len": 5, "eps": 0.01}\n',
            "invalid verdict",
        ),
        ('{"format": "gradhealth-history/1", "horizon": NaN}\n', "NaN"),
    ],
)
def test_bad_history_files_say_which_line(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with pytest.raises(HistoryError, match=match):
        read_history(path)


def test_missing_history_file(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="cannot read history"):
        read_history(tmp_path / "nope.jsonl")

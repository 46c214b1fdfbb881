"""The Lightning callback: audits at the trainer's global steps, logs through the trainer's loggers, and leaves
the fit unchanged."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import gradhealth
from gradhealth.errors import ConfigError
from gradhealth.history import read_history, record_from_report

lightning = pytest.importorskip("lightning", reason="the Lightning callback is tested where lightning installs")
from gradhealth.integrations.lightning import GradhealthCallback  # noqa: E402

SETTINGS: dict[str, Any] = {"seq_len": 16, "batch_size": 2}


class Module(lightning.pytorch.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(3, 6, batch_first=True)
        self.head = nn.Linear(6, 1)
        self.checkpoints: dict[int, dict[str, torch.Tensor]] = {}
        self.losses: list[float] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        (x,) = batch
        loss = self.head(self.rnn(x)[0][:, -1]).sub(x[:, 0, :1]).pow(2).mean()
        self.losses.append(loss.item())
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.checkpoints[self.trainer.global_step] = {k: v.clone() for k, v in self.rnn.state_dict().items()}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.3)


def fit(tmp_path: Path, callbacks: list[Any]) -> Module:
    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(12, 8, 3))
    loader = torch.utils.data.DataLoader(data, batch_size=2, shuffle=True)
    module = Module()
    trainer = lightning.pytorch.Trainer(
        max_steps=6,
        accelerator="cpu",
        devices=1,
        logger=lightning.pytorch.loggers.CSVLogger(tmp_path, name="run"),
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        deterministic=True,
        log_every_n_steps=1,
    )
    trainer.fit(module, loader)
    return module


def test_callback_logs_through_the_trainer_and_changes_nothing(tmp_path: Path) -> None:
    history = tmp_path / "h.jsonl"
    callback = GradhealthCallback(every=2, select="rnn", history=history, audit_at_start=True, **SETTINGS)
    module = fit(tmp_path / "with", [callback])
    plain = fit(tmp_path / "without", [])
    assert module.losses == plain.losses
    for p, q in zip(module.parameters(), plain.parameters(), strict=True):
        assert torch.equal(p, q)

    assert callback.monitor is not None
    records = read_history(history)
    assert records == callback.monitor.records
    assert [r.step for r in records] == [0, 2, 4, 6]
    for record in records[1:]:
        rnn = nn.GRU(3, 6, batch_first=True)
        rnn.load_state_dict(module.checkpoints[record.step])
        assert record == record_from_report(
            gradhealth.audit(rnn, probes="quick", dtype="float32", **SETTINGS), step=record.step
        )

    (metrics_file,) = (tmp_path / "with").rglob("metrics.csv")
    rows = [row for row in csv.DictReader(metrics_file.open()) if row.get("gradhealth/horizon")]
    assert [int(row["step"]) for row in rows] == [0, 2, 4, 6]
    assert [float(row["gradhealth/horizon"]) for row in rows] == pytest.approx([r.horizon for r in records])


def test_bad_settings_fail_at_construction_and_a_bad_submodule_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="seq_len"):
        GradhealthCallback(seq_len=0)
    with pytest.raises(ConfigError, match="rnn, head"):
        fit(tmp_path, [GradhealthCallback(every=2, select="encoder", **SETTINGS)])


def test_core_never_imports_lightning() -> None:
    import subprocess

    code = "import gradhealth.monitor, gradhealth.history, sys; print('lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

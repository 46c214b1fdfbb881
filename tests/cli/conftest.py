"""Fixtures for the CLI tests: tiny checkpoints saved in every format, and a CliRunner that keeps streams apart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from typer.testing import CliRunner, Result

from gradhealth.cli import app

#: Fast audit settings shared by the CLI tests.
FAST = ["--seq-len", "16", "--batch-size", "4", "--probes", "quick"]


class Encoder(nn.Module):
    """A model whose state_dict holds a recurrent layer under ``encoder.rnn.`` and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.rnn = nn.LSTM(3, 8, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(16, 2)


def make_encoder(hidden: int = 8) -> nn.Module:
    """A factory for ``--model``: the same LSTM as ``Encoder.encoder.rnn`` on its own."""
    return nn.LSTM(3, hidden, num_layers=2, bidirectional=True, batch_first=True)


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Result]:
    """Invoke the CLI in ``tmp_path`` (so no pyproject.toml of the repository is read)."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: Any, env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        return runner.invoke(app, [str(a) for a in args], env=env)

    return invoke


@pytest.fixture
def encoder_state(tmp_path: Path) -> tuple[Path, Encoder]:
    """A bare state_dict of a 2-layer bidirectional LSTM under ``encoder.rnn.``, and the live model."""
    torch.manual_seed(0)
    model = Encoder()
    path = tmp_path / "encoder.pt"
    torch.save(model.state_dict(), path)
    return path, model

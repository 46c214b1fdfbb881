"""Shared fixtures: a small table of models covering every built-in adapter."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import gradhealth
from gradhealth import reference


@dataclasses.dataclass
class TokenOutput:
    """What a token model returns: the sequence among other things."""

    logits: torch.Tensor
    state: torch.Tensor


class TokenModel(nn.Module):
    """Token ids -> embedding -> GRU -> dataclass output."""

    def __init__(self, vocab: int = 11, dim: int = 4, hidden: int = 6) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.rnn = nn.GRU(dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, ids: torch.Tensor) -> TokenOutput:
        out, h = self.rnn(self.embed(ids))
        return TokenOutput(logits=self.head(out), state=h)


class StatefulModel(nn.Module):
    """Keeps its recurrent state between calls (streaming); ``reset_state`` clears it."""

    def __init__(self, size: int = 3) -> None:
        super().__init__()
        self.cell = nn.RNNCell(size, size)
        self.input_size = size
        self.state: torch.Tensor | None = None

    def reset_state(self) -> None:
        self.state = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = []
        for t in range(x.shape[1]):
            self.state = self.cell(x[:, t], self.state)
            outputs.append(self.state)
        return torch.stack(outputs, dim=1)


class TimeMajorDict(nn.Module):
    """Time-major model returning a dict."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(3, 5)

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        out, (h, c) = self.rnn(x)
        return {"hidden": h, "output": out}


class GRUStep(nn.Module):
    """A user step function (x_t, state) -> (y_t, state) as a module."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.GRUCell(3, 4)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.cell(x, h)
        return h, h


def _step_module() -> gradhealth.Unrolled:
    return gradhealth.Unrolled(GRUStep())


#: name -> (factory, extra audit kwargs). Every built-in adapter family appears at least once.
MODEL_TABLE: dict[str, tuple[Callable[[], Any], dict[str, Any]]] = {
    "rnn_tanh": (lambda: nn.RNN(3, 5, batch_first=True), {}),
    "rnn_relu_time_major": (lambda: nn.RNN(3, 5, nonlinearity="relu"), {}),
    "lstm_stacked_bi_proj": (
        lambda: nn.LSTM(3, 6, num_layers=2, bidirectional=True, proj_size=2, dropout=0.3, batch_first=True),
        {},
    ),
    "gru_bi": (lambda: nn.GRU(3, 5, bidirectional=True), {}),
    "rnn_cell": (lambda: nn.RNNCell(3, 4), {}),
    "lstm_cell": (lambda: nn.LSTMCell(3, 4), {}),
    "gru_cell": (lambda: nn.GRUCell(3, 4), {}),
    "unrolled_step": (_step_module, {}),
    "token_dataclass": (TokenModel, {}),
    "stateful": (StatefulModel, {}),
    "time_major_dict": (TimeMajorDict, {"layout": gradhealth.Layout(batch_first=False)}),
    "linear_recurrence": (lambda: reference.LinearRecurrence(3, 0.9), {}),
}


@pytest.fixture(params=sorted(MODEL_TABLE))
def table_model(request: pytest.FixtureRequest) -> tuple[str, Any, dict[str, Any]]:
    """Each model of the contract table: (name, fresh model, extra audit kwargs)."""
    torch.manual_seed(0)
    factory, kwargs = MODEL_TABLE[request.param]
    return request.param, factory(), kwargs

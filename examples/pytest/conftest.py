"""Tiny models built from code: what a project's own fixtures would return."""

from __future__ import annotations

import pytest
import torch

from gradhealth import reference


@pytest.fixture
def encoder() -> torch.nn.LSTM:
    """An LSTM with chrono initialisation: forget-gate timescales up to 64 steps (long memory)."""
    return reference.chrono_lstm(4, 16, max_timescale=64)


@pytest.fixture
def decoder() -> torch.nn.GRU:
    """A GRU with a constant update gate z = 0.95: g(k) = 0.95^k, so its horizon is about 90 steps."""
    return reference.constant_update_gru(8, 0.95)


@pytest.fixture
def vanilla_rnn() -> torch.nn.RNN:
    """A freshly initialised tanh RNN: forgets within about ten steps, as expected."""
    torch.manual_seed(0)
    return torch.nn.RNN(4, 16, batch_first=True)


@pytest.fixture
def unstable_recurrence() -> reference.LinearRecurrence:
    """h_t = 1.05·Q h_{t-1} + x_t: g(k) = 1.05^k exactly, crossing 100 at lag 95."""
    return reference.LinearRecurrence(4, 1.05)

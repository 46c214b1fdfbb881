"""The Lyapunov probe's hand-written cell Jacobians (LayerWeights.jacobian_columns) against forward-mode autograd.

The reference here is torch.func.jvp through the cell's step, one column at a time (float64): the frame images
agree to rounding, and so do the probe's exponents over whole trajectories of stacked, bidirectional and chaotic
models."""

from __future__ import annotations

import functools
from typing import Any

import pytest
import torch
from torch import nn

from gradhealth.probes._recurrent import (
    LayerRun,
    LayerWeights,
    driven_runs,
    find_recurrent_layers,
    flatten_state,
    unflatten_state,
)
from gradhealth.probes.lyapunov import Lyapunov, lyapunov_exponents
from gradhealth.reference import random_orthogonal

from .conftest import probe_context

# torch loads its forward-AD decompositions through torch.jit.script on first use
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.script`:DeprecationWarning")


def _flat_step(w: LayerWeights, like: Any, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """The cell's step as a map of the flattened state, by the module's own equations (LayerWeights.step)."""
    parts = like if isinstance(like, tuple) else (like,)
    shapes = [(s.shape[0], *p.shape[1:]) for p in parts]
    return flatten_state(w.step(x, unflatten_state(s, shapes, like)))[0]


def _jvp_columns(w: LayerWeights, x: torch.Tensor, state: Any, q: torch.Tensor) -> torch.Tensor:
    """J q by forward-mode AD, one column of q at a time."""
    flat = flatten_state(state)[0]
    step = functools.partial(_flat_step, w, state, x)
    return torch.stack([torch.func.jvp(step, (flat,), (q[..., j],))[1] for j in range(q.shape[-1])], dim=-1)


def _scaled(module: nn.Module, scale: float) -> nn.Module:
    """Weights scaled up, so that the gates leave their linear range and the cell's nonlinearity matters."""
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(scale)
    return module


CELLS = {
    "tanh": lambda: nn.RNN(3, 5, nonlinearity="tanh"),
    "relu": lambda: nn.RNN(3, 5, nonlinearity="relu"),
    "lstm": lambda: nn.LSTM(3, 5),
    "lstm-proj": lambda: nn.LSTM(3, 5, proj_size=2),
    "gru": lambda: nn.GRU(3, 5),
    "gru-no-bias": lambda: nn.GRU(3, 5, bias=False),
}


@pytest.mark.parametrize("kind", list(CELLS))
def test_frame_image_equals_forward_mode_autograd(kind: str) -> None:
    torch.manual_seed(1)
    module = _scaled(CELLS[kind]().double(), 3.0)
    w = find_recurrent_layers(module)[0].weights()[0]
    batch, k = 4, 3
    x = torch.randn(batch, 3, dtype=torch.float64)
    h = torch.randn(batch, w.output_size, dtype=torch.float64)
    state = (h, torch.randn(batch, w.hidden_size, dtype=torch.float64)) if w.kind == "LSTM" else h
    n = flatten_state(state)[0].shape[-1]
    q = torch.randn(batch, n, k, dtype=torch.float64)
    if kind == "relu":  # both sides of the kink are visited
        pre = w.project(x) + nn.functional.linear(h, w.w_hh, w.b_hh)
        assert bool((pre < 0).any()) and bool((pre > 0).any())
    new_state, gates = w.step_with_gates(x, state)
    image = w.jacobian_columns(w.jacobian_factors(state, gates), q)
    assert image.shape == (batch, n, k)
    torch.testing.assert_close(image, _jvp_columns(w, x, state, q), rtol=0, atol=1e-12)
    # the probe follows the trajectory from the gates: to the last bit, so it drives the same trajectory
    followed = flatten_state(w.state_from_gates(state, gates))[0]
    assert torch.equal(followed, flatten_state(new_state)[0])


def _jvp_reference(ctx: Any, runs: list[LayerRun], burn_in: int) -> list[list[float]]:
    """The probe's exponents recomputed with forward-mode AD (one jvp per column per step), from the probe's own
    frames (the same named random streams)."""
    found = []
    for run in runs:
        w = run.weights
        before = [run.initial, *run.states[:-1]]
        states = torch.stack([flatten_state(s)[0] for s in before], dim=1)
        batch, _, n = states.shape
        direction = "backward" if w.is_reverse else "forward"
        gaussian = ctx.randn(f"lyapunov/{w.name}/{direction}", (batch, n, min(4, n)), like=states)
        frame = torch.linalg.qr(gaussian)[0]
        step = functools.partial(_flat_step, w, run.initial)
        found.append(lyapunov_exponents(step, run.inputs, states, frame, burn_in).tolist())
    return found


def _chaotic_rnn(size: int, gain: float) -> nn.RNN:
    """A tanh RNN with W_hh = gain * an orthogonal matrix: expanding at the origin, chaotic for a gain of 2
    with small inputs."""
    rnn = nn.RNN(3, size, batch_first=True)
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(gain * random_orthogonal(size, seed=5))
    return rnn


MODELS = {
    "lstm-2-layers": lambda: nn.LSTM(3, 5, num_layers=2, batch_first=True),
    "gru": lambda: _scaled(nn.GRU(3, 5, batch_first=True), 2.0),
    "tanh-rnn-chaotic": lambda: _chaotic_rnn(6, 2.0),
    "lstm-bidirectional": lambda: nn.LSTM(3, 4, bidirectional=True, batch_first=True),
    "lstm-cell": lambda: nn.LSTMCell(3, 4),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_probe_exponents_equal_the_forward_mode_ones(name: str) -> None:
    torch.manual_seed(2)
    scale = {"input_scale": 0.1} if name == "tanh-rnn-chaotic" else {}
    ctx = probe_context(MODELS[name](), seq_len=12, burn_in=6, batch_size=3, **scale)
    result = Lyapunov().run(ctx)
    (found, _) = driven_runs(ctx, "lyapunov")
    runs = [run for _, layer_runs in found for run in layer_runs]
    expected = _jvp_reference(ctx, runs, 6)
    assert [entry.layer for entry in result.layers] == [run.weights.name for run in runs]
    for entry, reference in zip(result.layers, expected, strict=True):
        assert len(entry.exponents) == min(4, entry.state_size)
        torch.testing.assert_close(torch.tensor(entry.exponents), torch.tensor(reference), rtol=0, atol=1e-10)
    if name == "tanh-rnn-chaotic":  # the comparison covers an expanding map too
        assert result.top_exponent is not None and result.top_exponent > 0

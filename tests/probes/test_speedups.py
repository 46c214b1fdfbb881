"""The fast paths give the numbers of the slow ones: step adapters that unbind their input once, the burn-in run
without a graph (state handover), and the state gradients of every layer from one backward pass (float64).

Each is checked against a reference written here: a closed form, or plain autograd over the whole sequence."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import gradhealth
from gradhealth.probes._bptt import input_gradient_norms
from gradhealth.probes._recurrent import LayerRun, driven_runs, flatten_state, unflatten_state
from gradhealth.probes.lyapunov import lyapunov_exponents
from gradhealth.probes.state_gradients import StateGradients, runs_state_norms
from gradhealth.reference import random_orthogonal

from .conftest import linear_unrolled, probe_context


def _reference_norms(ctx: Any, inputs: torch.Tensor, max_lag: int, stream: str) -> torch.Tensor:
    """N_b(k) by plain autograd over the WHOLE sequence (burn-in in the graph), with the recipe's seed vector."""
    x = inputs.detach().clone().requires_grad_(True)
    model = ctx.adapter.model
    if isinstance(model, nn.RNNBase):
        y = model(x if model.batch_first else x.transpose(0, 1))[0]
        y = y if model.batch_first else y.transpose(0, 1)
    elif isinstance(model, nn.RNNCellBase):
        state: Any = None
        outs = []
        for t in range(x.shape[1]):  # deliberately the slow indexing: an independent implementation
            state = model(x[:, t], state)
            outs.append(state[0] if isinstance(state, tuple) else state)
        y = torch.stack(outs, dim=1)
    else:
        state = model.initial_state(x.shape[0], x.dtype, x.device)
        outs = []
        for t in range(x.shape[1]):
            out, state = model.step(x[:, t], state)
            outs.append(out)
        y = torch.stack(outs, dim=1)
    y_last = y[:, -1]
    v = ctx.randn(f"{stream}/forward", tuple(y_last.shape), like=y_last)
    (grad,) = torch.autograd.grad((y_last * v).sum(), x)
    return torch.linalg.vector_norm(grad, dim=-1)[:, -1 - max_lag :].flip(1)


def _tanh_unrolled() -> gradhealth.Unrolled:
    gen = torch.Generator().manual_seed(3)
    w_in, w_rec = torch.randn(3, 5, generator=gen, dtype=torch.float64), 1.1 * random_orthogonal(5, seed=2)

    def step(x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.tanh(x @ w_in.to(x) + h @ w_rec.to(x))
        return 2 * h, h

    return gradhealth.Unrolled(step, input_size=3, init_state=lambda b, dtype, device: torch.zeros(b, 5, dtype=dtype))


def _models() -> dict[str, Any]:
    torch.manual_seed(0)
    return {
        "rnn": nn.RNN(3, 5, batch_first=True),
        "lstm-time-major-2-layers": nn.LSTM(3, 5, num_layers=2),
        "lstm-proj": nn.LSTM(3, 6, proj_size=2, batch_first=True),
        "gru": nn.GRU(3, 4, batch_first=True),
        "rnn-cell": nn.RNNCell(3, 5),
        "lstm-cell": nn.LSTMCell(3, 5),
        "gru-cell": nn.GRUCell(3, 4),
        "unrolled-tanh": _tanh_unrolled(),
    }


@pytest.mark.parametrize("name", list(_models()))
def test_handed_over_burn_in_gives_the_full_sequence_gradients(name: str) -> None:
    ctx = probe_context(_models()[name], seq_len=12, burn_in=9, batch_size=3)
    assert ctx.adapter.has_state_handover
    inputs = ctx.make_batch("s").inputs
    (measured,) = input_gradient_norms(ctx, inputs.clone(), max_lag=12, stream="s")
    expected = _reference_norms(ctx, inputs, 12, "s")
    torch.testing.assert_close(measured.norms, expected, rtol=1e-12, atol=0)


def test_bidirectional_modules_hand_no_state_over() -> None:
    ctx = probe_context(nn.GRU(3, 4, bidirectional=True, batch_first=True))
    assert not ctx.adapter.has_state_handover
    with pytest.raises(gradhealth.errors.AdapterError, match="cannot start a run from a state"):
        ctx.adapter.run_from_state(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3))


@pytest.mark.parametrize("kind", ["cell", "unrolled"])
def test_step_adapters_give_the_closed_form_rho_to_the_k(kind: str) -> None:
    """h_t = W h_{t-1} + x_t with W = ρQ: ∂y_T/∂x_{T-k} = W^k, so N_b(k) = ρ^k ‖v_b‖ exactly.

    The cell is an ``nn.RNNCell`` with relu and positive weights and inputs, linear on its (positive) states."""
    rho, size = 0.75, 4  # exact in the float32 the cell is built in
    if kind == "unrolled":
        model: Any = linear_unrolled(rho * random_orthogonal(size, seed=5))
    else:
        model = nn.RNNCell(size, size, nonlinearity="relu", bias=False)
        with torch.no_grad():
            model.weight_ih.copy_(torch.eye(size))
            model.weight_hh.copy_(rho * torch.eye(size))
    ctx = probe_context(model, seq_len=30, burn_in=5, batch_size=2)
    inputs = ctx.make_batch("s").inputs.abs()  # positive inputs keep the relu cell on its linear branch
    (measured,) = input_gradient_norms(ctx, inputs, max_lag=30, stream="s")
    v = ctx.randn("s/forward", (2, size), like=inputs)
    expected = torch.linalg.vector_norm(v, dim=-1)[:, None] * rho ** torch.arange(31, dtype=torch.float64)
    torch.testing.assert_close(measured.norms, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("model", [nn.RNNCell(3, 4), linear_unrolled(0.5 * torch.eye(3))], ids=["cell", "unrolled"])
def test_step_adapters_unbind_the_sequence_once(model: Any) -> None:
    """Indexing x[:, t] per step leaves one SelectBackward per step, each writing a whole-sequence gradient."""
    ctx = probe_context(model)
    x = torch.zeros(2, 6, 3, dtype=torch.float64, requires_grad=True)
    out = ctx.adapter.run(x).output
    seen, stack = set(), [out.grad_fn]
    names = set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack += [next_fn for next_fn, _ in node.next_functions]
    assert any(n.startswith("UnbindBackward") for n in names)
    assert not any(n.startswith("SelectBackward") for n in names)


def _per_lag_reference(loss: torch.Tensor, runs: list[LayerRun], max_lag: int) -> list[torch.Tensor]:
    """The step-by-step way: one backward pass per layer, state part and lag."""
    norms = []
    for run in runs:
        window = run.states[len(run.states) - 1 - max_lag :][::-1]
        parts = len(window[0]) if isinstance(window[0], tuple) else 1
        for i in range(parts):
            cols = []
            for state in window:
                s = state[i] if isinstance(state, tuple) else state
                (g,) = torch.autograd.grad(loss, s, retain_graph=True, allow_unused=True)
                g = torch.zeros_like(s) if g is None else g
                cols.append(torch.linalg.vector_norm(g.reshape(g.shape[0], -1), dim=-1))
            norms.append(torch.stack(cols, dim=1))
    return norms


@pytest.mark.parametrize("module", [nn.LSTM(3, 4, num_layers=2), nn.GRU(3, 4, num_layers=3, batch_first=True)])
def test_state_gradients_of_every_layer_in_one_backward_equal_the_per_lag_passes(module: nn.Module) -> None:
    ctx = probe_context(module, seq_len=10, burn_in=4)
    with torch.enable_grad():
        (found, _) = driven_runs(ctx, "s", track_states=True)
        ((_, runs),) = found
        top = runs[-1].weights.output(runs[-1].states[-1])
        loss = (top * ctx.randn("v", tuple(top.shape), like=top)).sum()
        batched = runs_state_norms(loss, [run.states for run in runs], 10, device=ctx.device)
        expected = _per_lag_reference(loss, runs, 10)
    assert len(batched) == len(expected) == (4 if isinstance(module, nn.LSTM) else 3)
    for got, want in zip(batched, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=0)


def test_state_gradients_probe_profiles_every_layer_from_one_pass() -> None:
    """The probe's ratios equal those of the per-lag reference for a stacked GRU (every layer, h)."""
    torch.manual_seed(1)
    gru = nn.GRU(3, 4, num_layers=2, batch_first=True)
    ctx = probe_context(gru, seq_len=8, burn_in=3)
    result = StateGradients().run(ctx)
    with torch.enable_grad():
        (found, _) = driven_runs(ctx, "state_gradients", track_states=True)
        ((_, runs),) = found
        top = runs[-1].states[-1]
        v = ctx.randn("state_gradients/GRU/forward", tuple(top.shape), like=top)
        expected = _per_lag_reference((top * v).sum(), runs, 8)
    assert [p.layer for p in result.profiles] == ["GRU.l0", "GRU.l1"]
    for profile, norms in zip(result.profiles, expected, strict=True):
        rms = norms.square().mean(0).sqrt()
        torch.testing.assert_close(torch.tensor(profile.ratio, dtype=torch.float64), rms / rms[0], rtol=1e-10, atol=0)


@pytest.mark.parametrize(
    "module", [nn.LSTM(3, 5, num_layers=2, batch_first=True), nn.GRU(3, 4, bidirectional=True)], ids=["lstm", "gru"]
)
def test_lyapunov_tangents_through_one_pass_equal_one_pass_per_tangent(module: nn.Module) -> None:
    ctx = probe_context(module, seq_len=10, burn_in=5, batch_size=3)
    (found, _) = driven_runs(ctx, "s")
    ((_, runs),) = found
    for run in runs:
        w, like = run.weights, run.initial

        def step(x: torch.Tensor, s: torch.Tensor, w: Any = w, like: Any = like) -> torch.Tensor:
            shapes = [tuple(s.shape[:1]) + tuple(p.shape[1:]) for p in (like if isinstance(like, tuple) else [like])]
            return flatten_state(w.step(x, unflatten_state(s, shapes, like)))[0]

        states = torch.stack([flatten_state(s)[0] for s in [run.initial, *run.states[:-1]]], dim=1)
        n = states.shape[-1]
        frame = torch.linalg.qr(ctx.randn("frame", (3, n, 3), like=states))[0]
        one_pass = lyapunov_exponents(step, run.inputs, states, frame, 5, is_rowwise=True)
        per_tangent = lyapunov_exponents(step, run.inputs, states, frame, 5, is_rowwise=False)
        torch.testing.assert_close(one_pass, per_tangent, rtol=1e-10, atol=1e-12)

"""The probes free every graph they build: nothing of a forward pass outlives the probe that ran it.

The denormal check (:class:`~gradhealth.probes._bptt.SavedDenormals`) sees every tensor the forward pass saves;
a saved OUTPUT still carries its grad_fn there, and keeping that very tensor closed a cycle through C++ (output ->
grad_fn -> saved variable -> output) that Python's gc cannot break, so a graph kept for several backward passes
(``retain_graph=True``: the lag profile, state gradients) stayed in memory with all its activations after the
probe returned. The checks here hold weak references to tensors of the forward pass, never a memory figure; the
gradients are compared with closed forms or plain autograd written here (float64).
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest
import torch

import gradhealth
from gradhealth.probes._bptt import SavedDenormals, input_gradient_norms
from gradhealth.reference import random_orthogonal

from .conftest import probe_context


def _all_freed(refs: list[weakref.ref[torch.Tensor]]) -> bool:
    gc.collect()
    return all(r() is None for r in refs)


def test_a_graph_retained_under_the_denormal_check_is_freed_and_its_gradients_unchanged() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    v = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    detector = SavedDenormals()
    with detector:
        y = torch.tanh(x @ w)  # tanh saves its own output for the backward: the cycle's shape
    assert not detector.found
    refs = [weakref.ref(y)]
    loss = (y * v).sum()
    first = torch.autograd.grad(loss, x, retain_graph=True)[0]
    second = torch.autograd.grad(loss, x, retain_graph=True)[0]  # the graph is kept, as the probes keep it
    # closed form: d/dx sum(v * tanh(x W)) = (v * (1 - tanh(x W)^2)) W^T
    t = torch.tanh(x.detach() @ w)
    expected = (v * (1 - t**2)) @ w.t()
    torch.testing.assert_close(first, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(second, expected, rtol=1e-12, atol=0)
    del y, loss
    assert _all_freed(refs)


def _tanh_step_recording(refs: list[weakref.ref[torch.Tensor]]) -> gradhealth.Unrolled:
    """h_t = tanh(x_t W_in + h_{t-1} W_rec), y_t = h_t, keeping a weak reference to every h_t it makes."""
    gen = torch.Generator().manual_seed(3)
    w_in, w_rec = torch.randn(3, 5, generator=gen, dtype=torch.float64), 1.1 * random_orthogonal(5, seed=2)

    def step(x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.tanh(x @ w_in.to(x) + h @ w_rec.to(x))
        if h.requires_grad:
            refs.append(weakref.ref(h))
        return h, h

    return gradhealth.Unrolled(step, input_size=3, init_state=lambda b, dtype, device: torch.zeros(b, 5, dtype=dtype))


def _reference_norms(model: gradhealth.Unrolled, inputs: torch.Tensor, v: torch.Tensor, max_lag: int) -> torch.Tensor:
    """N_b(k) by plain autograd through the step function, with no hook in scope."""
    x = inputs.detach().clone().requires_grad_(True)
    h = model.initial_state(x.shape[0], x.dtype, x.device)
    for t in range(x.shape[1]):
        _, h = model.step(x[:, t], h)
    (grad,) = torch.autograd.grad((h * v).sum(), x)
    return torch.linalg.vector_norm(grad, dim=-1)[:, -1 - max_lag :].flip(1)


def test_the_lag_profile_frees_its_retained_graph_and_measures_the_reference_norms() -> None:
    refs: list[weakref.ref[torch.Tensor]] = []
    ctx = probe_context(_tanh_step_recording(refs), seq_len=12, batch_size=3)
    inputs = ctx.make_batch("lag").inputs
    (measured,) = input_gradient_norms(ctx, inputs.clone(), max_lag=12, stream="s")
    assert refs, "the step function recorded no tensor of the graph"
    assert _all_freed(refs)
    refs.clear()
    v = ctx.randn("s/forward", (inputs.shape[0], 5), like=inputs)
    expected = _reference_norms(ctx.adapter.model, inputs, v, 12)
    torch.testing.assert_close(measured.norms, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("probes", ["standard", ["state_gradients"]])
def test_an_audit_keeps_no_tensor_of_its_forward_passes(probes: Any) -> None:
    refs: list[weakref.ref[torch.Tensor]] = []
    report = gradhealth.audit(_tanh_step_recording(refs), seq_len=10, batch_size=3, probes=probes)
    assert report.verdict
    assert refs
    assert _all_freed(refs)

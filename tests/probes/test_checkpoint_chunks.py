"""``checkpoint_chunks``: the lag profile's backward over the window in checkpointed chunks gives the plain
autograd numbers (float64, to 1e-12) and keeps only the chunk boundaries in the graph."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import gradhealth
from gradhealth.probes._bptt import input_gradient_norms

from .conftest import probe_context
from .test_speedups import _reference_norms, _tanh_unrolled


def _models() -> dict[str, Any]:
    torch.manual_seed(1)
    return {
        "rnn": nn.RNN(3, 5, batch_first=True),
        "lstm-time-major-2-layers": nn.LSTM(3, 5, num_layers=2),
        "lstm-proj": nn.LSTM(3, 6, proj_size=2, batch_first=True),
        "gru": nn.GRU(3, 4, batch_first=True),
        "rnn-cell": nn.RNNCell(3, 5),
        "lstm-cell": nn.LSTMCell(3, 5),
        "gru-cell": nn.GRUCell(3, 4),
    }


@pytest.mark.parametrize("burn_in", [9, 0])
@pytest.mark.parametrize("chunks", [3, 13, 40])  # uneven pieces (5, 5, 3), one step each, more chunks than steps
@pytest.mark.parametrize("name", list(_models()))
def test_chunked_window_gives_the_full_sequence_gradients(name: str, chunks: int, burn_in: int) -> None:
    ctx = probe_context(_models()[name], seq_len=12, burn_in=burn_in, batch_size=3, checkpoint_chunks=chunks)
    assert ctx.adapter.has_chunked_window
    inputs = ctx.make_batch("s").inputs
    (measured,) = input_gradient_norms(ctx, inputs.clone(), max_lag=12, stream="s")
    torch.testing.assert_close(measured.norms, _reference_norms(ctx, inputs, 12, "s"), rtol=1e-12, atol=0)


def _saved_bytes(run: Any) -> int:
    """Bytes autograd saves for the backward while ``run()`` builds its graph (checkpointed pieces save their
    activations through their own hooks only during the recomputation)."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.enable_grad():
        out = run()
    assert out.output.requires_grad
    return total


@pytest.mark.parametrize("name", ["lstm-time-major-2-layers", "gru-cell"])
def test_chunked_window_keeps_no_activations(name: str) -> None:
    ctx = probe_context(_models()[name], seq_len=60, batch_size=4, checkpoint_chunks=6)
    inputs = ctx.make_batch("s").inputs
    burn, window = inputs[:, :60], inputs[:, 60:].detach().requires_grad_(True)
    plain = _saved_bytes(lambda: ctx.adapter.run_from_state(burn, window))
    chunked = _saved_bytes(lambda: ctx.adapter.run_chunked(burn, window, 6))
    # plain: every gate of every step of the 61-step window; chunked: nothing outside the checkpointed pieces
    assert plain >= 61 * 4 * 5 * 8
    assert chunked < plain / 10


def test_models_that_cannot_chunk_run_whole_with_the_same_numbers() -> None:
    for model in (nn.GRU(3, 4, bidirectional=True, batch_first=True), _tanh_unrolled()):
        ctx = probe_context(model)
        assert not ctx.adapter.has_chunked_window
        with pytest.raises(gradhealth.errors.AdapterError, match="checkpointed chunks"):
            ctx.adapter.run_chunked(None, torch.zeros(1, 2, 3, dtype=torch.float64), 2)
        plain = gradhealth.audit(model, seq_len=10, batch_size=2, probes="quick", bootstrap_samples=0)
        chunked = gradhealth.audit(
            model, seq_len=10, batch_size=2, probes="quick", bootstrap_samples=0, checkpoint_chunks=4
        )
        assert chunked.profile.grad_norm == plain.profile.grad_norm
        assert chunked.config["checkpoint_chunks"] == 4

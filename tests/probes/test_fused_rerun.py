"""The fused re-run (PyTorch's kernel for the states, every gate rebuilt in bulk) equals the step-by-step one, and
σ_max from the Gram matrix equals the SVD's."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from gradhealth.probes import _recurrent
from gradhealth.probes._recurrent import LayerWeights, RecurrentLayer, find_recurrent_layers, run_layer
from gradhealth.probes.gate_activity import GateActivity
from gradhealth.probes.spectrum import gram_sigma_max, layer_spectrum

from .conftest import probe_context

MODULES = {
    "lstm_2_layers": lambda: nn.LSTM(3, 5, num_layers=2, batch_first=True),
    "lstm_proj_bi": lambda: nn.LSTM(3, 6, num_layers=2, bidirectional=True, proj_size=4, batch_first=True),
    "lstm_time_major_no_bias": lambda: nn.LSTM(3, 5, bias=False),
    "gru_2_layers_bi": lambda: nn.GRU(3, 5, num_layers=2, bidirectional=True, batch_first=True),
    "gru_no_bias": lambda: nn.GRU(3, 4, bias=False, batch_first=True),
    "rnn_tanh_bi": lambda: nn.RNN(3, 5, num_layers=2, bidirectional=True, batch_first=True),
    "rnn_relu_time_major": lambda: nn.RNN(3, 5, nonlinearity="relu"),
    "lstm_cell": lambda: nn.LSTMCell(3, 5),
    "gru_cell": lambda: nn.GRUCell(3, 5),
}


def _reference(layer: RecurrentLayer, x: torch.Tensor) -> list[tuple[LayerWeights, list[Any], dict[str, torch.Tensor]]]:
    """The step loop, written out: each layer and direction step by step with ``step_with_gates``, feeding the next
    layer the outputs of both directions. Returns per run: its states and its gates stacked time-major."""
    out = []
    weights = layer.weights()
    directions = 2 if len(weights) > 1 and weights[1].is_reverse else 1
    layer_input = x
    for start in range(0, len(weights), directions):
        outputs = []
        for w in weights[start : start + directions]:
            seq = layer_input.flip(1) if w.is_reverse else layer_input
            state, states, gates = w.initial_state(seq.shape[0], seq), [], []
            for t in range(seq.shape[1]):
                state, g = w.step_with_gates(seq[:, t], state)
                states.append(state)
                gates.append(g)
            stacked = {name: torch.stack([g[name] for g in gates]) for name in gates[0]}
            out.append((w, states, stacked))
            h = torch.stack([LayerWeights.output(s) for s in states], dim=1)
            outputs.append(h.flip(1) if w.is_reverse else h)
        layer_input = torch.cat(outputs, dim=-1)
    return out


@pytest.mark.parametrize("block", [1 << 20, 24], ids=["one_block", "blocks_of_few_steps"])
@pytest.mark.parametrize("name", sorted(MODULES))
def test_fused_rerun_equals_the_step_loop(name: str, block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_recurrent, "FUSED_BLOCK_ELEMENTS", block)
    monkeypatch.setattr(_recurrent, "fused_pays", lambda layer, x: True)  # float64 and the GRU too
    torch.manual_seed(0)
    module = MODULES[name]().double()
    x = torch.randn(2, 9, 3, dtype=torch.float64)
    (layer,) = find_recurrent_layers(module)
    observed: dict[str, list[tuple[int, dict[str, torch.Tensor]]]] = {}

    def observe_steps(w: LayerWeights, t0: int, gates: dict[str, torch.Tensor]) -> None:
        observed.setdefault(w.name, []).append((t0, {k: v.clone() for k, v in gates.items()}))

    runs = run_layer(layer, x, observe_steps=observe_steps, fused=True)
    reference = _reference(layer, x)
    assert [r.weights.name for r in runs] == [w.name for w, _, _ in reference]
    for run, (w, states, gates) in zip(runs, reference, strict=True):
        blocks = observed[w.name]
        sizes = [next(iter(b.values())).shape[0] for _, b in blocks]
        assert [t0 for t0, _ in blocks] == [sum(sizes[:j]) for j in range(len(sizes))]  # consecutive, in order
        got = {k: torch.cat([b[k] for _, b in blocks]) for k in blocks[0][1]}
        assert set(got) == set(gates)
        for k in gates:
            torch.testing.assert_close(got[k], gates[k], rtol=0, atol=1e-10)
        assert len(run.states) == len(states) == x.shape[1]
        for a, b in zip(run.states, states, strict=True):
            for pa, pb in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,), strict=True):
                torch.testing.assert_close(pa, pb, rtol=0, atol=1e-10)
        h = torch.stack([LayerWeights.output(s) for s in states], dim=1)
        torch.testing.assert_close(run.outputs(), h.flip(1) if w.is_reverse else h, rtol=0, atol=1e-10)


def test_fused_rerun_of_a_module_equals_the_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_recurrent, "fused_pays", lambda layer, x: True)
    torch.manual_seed(1)
    lstm = nn.LSTM(3, 6, num_layers=2, bidirectional=True, proj_size=2).double()  # time-major
    x = torch.randn(7, 2, 3, dtype=torch.float64)
    (layer,) = find_recurrent_layers(lstm)
    runs = run_layer(layer, x.transpose(0, 1), fused=True)
    top = torch.cat([r.outputs() for r in runs[-2:]], dim=-1)
    torch.testing.assert_close(top, lstm(x)[0].transpose(0, 1), rtol=0, atol=1e-13)


def test_fused_runs_where_it_was_measured_faster() -> None:
    x64, x32 = torch.zeros(1, 2, 3, dtype=torch.float64), torch.zeros(1, 2, 3)

    def pays(module: nn.Module, x: torch.Tensor) -> bool:
        (layer,) = find_recurrent_layers(module)
        return _recurrent.fused_pays(layer, x)

    assert pays(nn.RNN(3, 4), x64) and pays(nn.RNN(3, 4, nonlinearity="relu"), x32)
    assert not pays(nn.GRU(3, 4), x32) and not pays(nn.LSTM(3, 4), x64)
    assert not pays(nn.LSTM(3, 4, proj_size=2), x32)  # oneDNN has no projection: a slow kernel and a warning
    assert pays(nn.LSTM(3, 4), x32) == pays(nn.LSTMCell(3, 4), x32) == torch.backends.mkldnn.is_available()


def test_fused_rerun_refuses_a_graph() -> None:
    (layer,) = find_recurrent_layers(nn.LSTM(2, 3))
    with pytest.raises(ValueError, match="no graph"):
        run_layer(layer, torch.randn(1, 4, 2), track_states=True, fused=True)


@pytest.mark.parametrize(
    "module",
    [nn.LSTM(3, 6, num_layers=2, bidirectional=True, batch_first=True), nn.GRU(3, 5, num_layers=2, batch_first=True)],
    ids=["lstm", "gru"],
)
def test_gates_probe_fused_equals_step_by_step(module: nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_recurrent, "fused_pays", lambda layer, x: True)
    monkeypatch.setattr(_recurrent, "FUSED_BLOCK_ELEMENTS", 100)  # several blocks
    torch.manual_seed(2)
    ctx = probe_context(module, seq_len=12)
    step = GateActivity()
    step.fused = False
    slow, fast = step.run(ctx), GateActivity().run(ctx)
    assert [a.layer for a in slow.layers] == [b.layer for b in fast.layers] and slow.layers
    for a, b in zip(slow.layers, fast.layers, strict=True):
        assert a.dead_units == b.dead_units
        assert b.timescales.dynamic == pytest.approx(a.timescales.dynamic, rel=1e-10)
        assert [g.gate for g in a.gates] == [g.gate for g in b.gates]
        for ga, gb in zip(a.gates, b.gates, strict=True):
            assert gb.mean == pytest.approx(ga.mean, rel=1e-10)
            assert (gb.saturated, gb.saturated_low, gb.saturated_high) == (ga.saturated, ga.saturated_low,
                                                                           ga.saturated_high)  # fmt: skip
            assert gb.over_time == ga.over_time


# σ_max from the Gram matrix: λ_max(W^T W) carries a relative error of order (m + n)·u (see gram_sigma_max), an
# SVD's σ_max one of order n·u; at m + n <= 200 both are far below 1e-12.
GRAM_RTOL = 1e-12


@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (16, 16), (64, 24)])
@pytest.mark.parametrize("scale", [1.0, 1e150, 1e-150])
def test_gram_sigma_max_equals_the_svd(shape: tuple[int, int], scale: float) -> None:
    torch.manual_seed(3)
    weights = [torch.randn(*shape, dtype=torch.float64) * scale for _ in range(3)]
    weights[1][:, 0] *= 1e6  # one dominant column
    weights[2] = torch.outer(torch.randn(shape[0], dtype=torch.float64), torch.randn(shape[1], dtype=torch.float64))
    got = gram_sigma_max(weights)
    for w, sigma in zip(weights, got, strict=True):
        assert math.isfinite(sigma)
        assert sigma == pytest.approx(float(torch.linalg.svdvals(w)[0]), rel=GRAM_RTOL)


def test_gram_sigma_max_of_stacked_blocks_and_of_zero() -> None:
    torch.manual_seed(4)
    blocks = [torch.randn(8, 5, dtype=torch.float64) for _ in range(4)]
    *sigmas, whole = gram_sigma_max(blocks, stacked=True)
    assert whole == pytest.approx(float(torch.linalg.svdvals(torch.cat(blocks))[0]), rel=GRAM_RTOL)
    assert sigmas == pytest.approx([float(torch.linalg.svdvals(b)[0]) for b in blocks], rel=GRAM_RTOL)
    blocks[0] *= 1e200
    blocks[1] *= 1e-200  # scaled apart: each keeps its own accuracy, the sum is dominated by the big one
    *sigmas, whole = gram_sigma_max(blocks, stacked=True)
    assert whole == pytest.approx(float(torch.linalg.svdvals(torch.cat(blocks))[0]), rel=GRAM_RTOL)
    assert sigmas == pytest.approx([float(torch.linalg.svdvals(b)[0]) for b in blocks], rel=GRAM_RTOL)
    assert gram_sigma_max([torch.zeros(3, 4)]) == [0.0]
    assert gram_sigma_max([torch.zeros(0, 4)], stacked=True) == [0.0, 0.0]
    assert gram_sigma_max([3 * torch.eye(2)]) == [3.0]


@pytest.mark.parametrize(
    "module", [nn.LSTM(4, 6, proj_size=3), nn.GRU(4, 6), nn.LSTMCell(4, 6), nn.RNN(4, 6)], ids=lambda m: str(m)[:8]
)
def test_layer_spectrum_sigmas_equal_the_svd(module: nn.Module) -> None:
    torch.manual_seed(5)
    (layer,) = find_recurrent_layers(module.double())
    (w,) = layer.weights()
    spectrum = layer_spectrum(w)
    assert spectrum.recurrent.sigma_max == pytest.approx(float(torch.linalg.svdvals(w.w_hh.detach())[0]), rel=GRAM_RTOL)
    blocks = w.blocks(w.w_hh.detach()) if len(w.gates) > 1 else {}
    assert [b.name for b in spectrum.blocks] == [f"W_hh[{g}]" for g in blocks]
    for b, matrix in zip(spectrum.blocks, blocks.values(), strict=True):
        assert b.sigma_max == pytest.approx(float(torch.linalg.svdvals(matrix)[0]), rel=GRAM_RTOL)
        assert (b.eigenvalues is not None) == (matrix.shape[0] == matrix.shape[1])
    if spectrum.projection is not None:
        assert w.w_hr is not None
        svd = float(torch.linalg.svdvals(w.w_hr.detach())[0])
        assert spectrum.projection.sigma_max == pytest.approx(svd, rel=GRAM_RTOL)


def test_float32_lstm_runs_fused_through_the_real_kernel() -> None:
    """The production path (no patching): a float32 LSTM on a CPU runs fused where oneDNN is available, and its
    gates equal the float32 step loop's to float32 rounding (about 1e-7 per step, not growing: contracting)."""
    torch.manual_seed(6)
    lstm = nn.LSTM(3, 8, num_layers=2, batch_first=True)
    x = torch.randn(3, 20, 3)
    (layer,) = find_recurrent_layers(lstm)
    blocks: dict[str, list[torch.Tensor]] = {}
    runs = run_layer(layer, x, observe_steps=lambda w, t0, g: blocks.setdefault(w.name, []).append(g["f"]), fused=True)
    assert all((run.hidden is not None) == torch.backends.mkldnn.is_available() for run in runs)  # fused: kept
    for run, (_, states, gates) in zip(runs, _reference(layer, x), strict=True):
        torch.testing.assert_close(torch.cat(blocks[run.weights.name]), gates["f"], rtol=0, atol=1e-5)
        torch.testing.assert_close(run.states[-1][1], states[-1][1], rtol=0, atol=1e-5)

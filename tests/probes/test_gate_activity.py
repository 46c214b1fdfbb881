"""Gate timescales, saturation and dead units against constructions with known answers."""

from __future__ import annotations

import pytest
import torch

import gradhealth
from gradhealth.probes.gate_activity import GateActivity
from gradhealth.reference import chrono_lstm, constant_update_gru

from .conftest import probe_context


def _zero_weights(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.startswith("weight"):
                p.zero_()


def test_chrono_lstm_gives_timescales_one_plus_u_exactly() -> None:
    lstm = chrono_lstm(3, 8, max_timescale=60, seed=2)
    _zero_weights(lstm)  # the forget gate is then exactly σ(b_f) = σ(log u)
    u = torch.exp(lstm.bias_ih_l0.detach().double()[8:16])
    (layer,) = GateActivity().run(probe_context(lstm, seq_len=10, input_scale=1.0)).layers
    assert layer.timescales.gate == "f"
    assert layer.timescales.static == pytest.approx((1 + u).tolist(), rel=1e-12)
    assert layer.timescales.dynamic == pytest.approx((1 + u).tolist(), rel=1e-10)
    assert layer.timescales.quantiles["max"] == pytest.approx(float(1 + u.max()), rel=1e-10)
    assert float(u.min()) >= 1 and float(u.max()) <= 59


def test_constant_update_gru_timescale_is_one_over_one_minus_z() -> None:
    gru = constant_update_gru(4, 0.75)
    z = float(torch.sigmoid(gru.bias_ih_l0.detach().double()[4]))
    (layer,) = GateActivity().run(probe_context(gru, seq_len=8)).layers
    assert layer.timescales.gate == "z"
    assert layer.timescales.dynamic == pytest.approx([1 / (1 - z)] * 4, rel=1e-10)
    assert [g.gate for g in layer.gates] == ["r", "z", "n"]


def test_saturation_fractions_for_huge_and_tiny_inputs() -> None:
    torch.manual_seed(0)
    gru = torch.nn.GRU(3, 6, batch_first=True)
    with torch.no_grad():
        gru.weight_ih_l0.mul_(1e4)
    hot = {g.gate: g for g in GateActivity().run(probe_context(gru, seq_len=8)).layers[0].gates}
    assert hot["n"].saturated > 0.9
    assert hot["n"].saturated == pytest.approx(hot["n"].saturated_low + hot["n"].saturated_high)
    assert len(hot["n"].over_time) == 16
    with torch.no_grad():
        gru.weight_ih_l0.zero_()
        gru.weight_hh_l0.zero_()
        gru.bias_ih_l0.zero_()
        gru.bias_hh_l0.zero_()
    cold = {g.gate: g for g in GateActivity().run(probe_context(gru, seq_len=8)).layers[0].gates}
    assert cold["z"].saturated == 0.0
    assert cold["z"].mean == pytest.approx(0.5, abs=1e-15)
    report = gradhealth.audit(_hot_gru(), seq_len=8, batch_size=2, probes=["gates"])
    assert "GH302" in [f.code for f in report.findings]


def _hot_gru() -> torch.nn.GRU:
    torch.manual_seed(0)
    gru = torch.nn.GRU(3, 6, batch_first=True)
    with torch.no_grad():
        gru.weight_ih_l0.mul_(1e4)
    return gru


def test_closed_output_gate_makes_every_unit_dead() -> None:
    lstm = torch.nn.LSTM(3, 5, batch_first=True)
    with torch.no_grad():
        lstm.bias_ih_l0[15:] = -60.0  # σ(-60) ≈ 1e-26: h = o·tanh(c) never leaves 0
    report = gradhealth.audit(lstm, seq_len=8, batch_size=2, probes=["gates"])
    layer = report.probes["gates"]["layers"][0]
    assert layer["dead_units"] == [0, 1, 2, 3, 4]
    assert layer["dead_fraction"] == 1.0
    assert "GH303" in [f.code for f in report.findings]


def test_default_lstm_forget_bias_raises_gh301_and_chrono_does_not() -> None:
    torch.manual_seed(0)
    fresh = gradhealth.audit(torch.nn.LSTM(3, 8, batch_first=True), seq_len=8, batch_size=2, probes=["gates"])
    chrono = gradhealth.audit(chrono_lstm(3, 8, 60), seq_len=8, batch_size=2, probes=["gates"])
    assert "GH301" in [f.code for f in fresh.findings]
    assert "GH301" not in [f.code for f in chrono.findings]
    assert 1.5 < fresh.probes["gates"]["layers"][0]["timescales"]["quantiles"]["median"] < 3


def test_vanilla_rnn_is_skipped_and_cells_inside_models_are_found() -> None:
    report = gradhealth.audit(torch.nn.RNN(3, 4, batch_first=True), seq_len=4, batch_size=2, probes=["gates"])
    assert "no LSTM or GRU" in report.skipped_probes["gates"]

    class CellLoop(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = torch.nn.GRUCell(3, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h, out = None, []
            for t in range(x.shape[1]):
                h = self.cell(x[:, t], h)
                out.append(h)
            return torch.stack(out, 1)

    layers = GateActivity().run(probe_context(CellLoop(), input_size=3, seq_len=6)).layers
    assert [layer.layer for layer in layers] == ["cell"]

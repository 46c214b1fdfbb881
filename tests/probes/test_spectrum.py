"""The static spectrum and Pascanu's bound, checked against measured state-gradient ratios."""

from __future__ import annotations

import math

import pytest
import torch

import gradhealth
from gradhealth.probes.spectrum import Spectrum, matrix_spectrum, pascanu_bound
from gradhealth.probes.state_gradients import StateGradients
from gradhealth.reference import DelayLine, random_orthogonal, scaled_orthogonal_rnn

from .conftest import probe_context


def test_scaled_orthogonal_rnn_has_sigma_and_radius_rho() -> None:
    result = Spectrum().run(probe_context(scaled_orthogonal_rnn(6, 0.7)))
    (layer,) = result.layers
    assert layer.recurrent.sigma_max == pytest.approx(0.7, abs=1e-6)
    assert layer.recurrent.spectral_radius == pytest.approx(0.7, abs=1e-6)
    assert layer.gamma == 1.0
    assert layer.vanishing_guaranteed is True
    assert layer.exploding_possible is False


def test_gate_blocks_and_projection_are_reported() -> None:
    lstm = torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2)
    result = Spectrum().run(probe_context(lstm))
    assert [layer.layer for layer in result.layers] == ["LSTM.l0", "LSTM.l0_reverse", "LSTM.l1", "LSTM.l1_reverse"]
    first = result.layers[0]
    assert [b.name for b in first.blocks] == ["W_hh[i]", "W_hh[f]", "W_hh[g]", "W_hh[o]"]
    assert first.blocks[0].shape == [5, 2]
    assert first.blocks[0].spectral_radius is None  # not square with a projection
    assert first.projection is not None
    assert first.projection.shape == [2, 5]
    assert first.pascanu_bound is None  # gated cells are not bounded by γ·σ_max
    block = lstm.weight_hh_l0.detach().double()[5:10]
    assert first.blocks[1].sigma_max == pytest.approx(float(torch.linalg.matrix_norm(block, ord=2)), rel=1e-12)


def test_matrix_spectrum_of_a_non_normal_matrix() -> None:
    w = torch.tensor([[0.5, 3.0], [0.0, 0.5]])
    spectrum = matrix_spectrum("W", w)
    assert spectrum.spectral_radius == pytest.approx(0.5)
    assert spectrum.sigma_max > 3.0


def test_pascanu_bound_holds_for_a_tanh_rnn() -> None:
    torch.manual_seed(1)
    rnn = torch.nn.RNN(4, 6, batch_first=True)
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(0.9 * random_orthogonal(6, seed=2, dtype=torch.float32) @ torch.diag(
            torch.linspace(0.6, 1.3, 6)))  # fmt: skip
    ctx = probe_context(rnn, seq_len=24, input_scale=1.0)
    bound = Spectrum().run(ctx).layers[0].pascanu_bound
    assert bound is not None
    ratio = StateGradients().run(ctx).profiles[0].ratio
    assert all(r <= bound**k * (1 + 1e-12) for k, r in enumerate(ratio))
    assert ratio[-1] < 0.5 * bound ** (len(ratio) - 1)  # tanh' < 1 makes the bound strict in practice


def test_pascanu_bound_holds_for_a_sigmoid_cell() -> None:
    w = 3.5 * random_orthogonal(5, seed=4)

    def step(x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.sigmoid(h @ w.to(x).t() + x)
        return h, h

    model = gradhealth.Unrolled(step, input_size=5, init_state=lambda b, dtype, device: torch.zeros(b, 5, dtype=dtype))
    bound = pascanu_bound(w, "sigmoid")
    assert bound == pytest.approx(3.5 / 4)
    ratio = StateGradients().run(probe_context(model, seq_len=24)).profiles[0].ratio
    assert all(r <= bound**k * (1 + 1e-12) for k, r in enumerate(ratio))


def test_pascanu_bound_rejects_an_unknown_nonlinearity() -> None:
    with pytest.raises(ValueError, match="no derivative bound for nonlinearity 'gelu'"):
        pascanu_bound(torch.eye(2), "gelu")


def test_findings_flag_amplifying_and_contracting_rnns() -> None:
    big = gradhealth.audit(scaled_orthogonal_rnn(4, 2.0), seq_len=8, batch_size=2, probes=["spectrum"])
    small = gradhealth.audit(scaled_orthogonal_rnn(4, 0.5), seq_len=8, batch_size=2, probes=["spectrum"])
    assert "GH201" in [f.code for f in big.findings]
    assert "GH202" in [f.code for f in small.findings]
    assert math.isclose(big.probes["spectrum"]["layers"][0]["pascanu_bound"], 2.0, rel_tol=1e-6)


def test_models_without_recurrent_matrices_are_skipped() -> None:
    report = gradhealth.audit(DelayLine(3, 4), seq_len=4, batch_size=2, probes=["spectrum"])
    assert "no recurrent matrix" in report.skipped_probes["spectrum"]

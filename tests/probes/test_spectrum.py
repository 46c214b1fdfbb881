"""The static spectrum and Pascanu's bound, checked against measured state-gradient ratios."""

from __future__ import annotations

import math

import pytest
import torch

import gradhealth
from gradhealth.probes import spectrum
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


def _rotation_rnn(theta: float) -> torch.nn.RNN:
    """A float64 tanh RNN with W_hh = diag(0.9·R(θ), 0.5): eigenvalues 0.9·e^{±iθ} and 0.5."""
    rnn = torch.nn.RNN(2, 3, batch_first=True, dtype=torch.float64)
    c, s = math.cos(theta), math.sin(theta)
    weight = torch.tensor([[0.9 * c, -0.9 * s, 0.0], [0.9 * s, 0.9 * c, 0.0], [0.0, 0.0, 0.5]], dtype=torch.float64)
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(weight)
    return rnn


def test_eigenvalues_of_a_scaled_orthogonal_matrix_all_have_magnitude_rho() -> None:
    rnn = torch.nn.RNN(6, 6, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(0.7 * random_orthogonal(6, seed=3))
    recurrent = Spectrum().run(probe_context(rnn)).layers[0].recurrent
    assert recurrent.eigenvalues is not None and len(recurrent.eigenvalues) == 6
    assert recurrent.eigenvalues_truncated is False
    assert all(abs(math.hypot(re, im) - 0.7) < 1e-10 for re, im in recurrent.eigenvalues)
    # a real matrix's complex eigenvalues come in conjugate pairs
    assert sorted((re, im) for re, im in recurrent.eigenvalues) == sorted((re, -im) for re, im in recurrent.eigenvalues)
    assert all(isinstance(x, float) for pair in recurrent.eigenvalues for x in pair)


def test_eigenvalues_of_a_rotation_block_survive_a_json_round_trip() -> None:
    theta = 0.6
    report = gradhealth.audit(_rotation_rnn(theta), seq_len=8, batch_size=2, probes=["spectrum"])
    back = gradhealth.Report.from_json(report.to_json())
    recurrent = back.probes["spectrum"]["layers"][0]["recurrent"]
    expected = [
        [0.9 * math.cos(theta), 0.9 * math.sin(theta)],
        [0.9 * math.cos(theta), -0.9 * math.sin(theta)],
        [0.5, 0],
    ]
    assert len(recurrent["eigenvalues"]) == 3  # largest magnitude first, then the larger imaginary part
    for got, want in zip(recurrent["eigenvalues"], expected, strict=True):
        assert got == pytest.approx(want, abs=1e-12)
    assert recurrent["eigenvalues"][2][1] == 0.0
    assert recurrent["eigenvalues_truncated"] is False
    assert recurrent["spectral_radius"] == pytest.approx(0.9, abs=1e-12)


def test_gate_blocks_carry_their_eigenvalues_and_non_square_matrices_none() -> None:
    torch.manual_seed(0)
    gru = torch.nn.GRU(2, 4, dtype=torch.float64)
    layer = Spectrum().run(probe_context(gru)).layers[0]
    assert layer.recurrent.eigenvalues is None  # W_hh as a whole is 12x4
    for block, weight in zip(layer.blocks, gru.weight_hh_l0.detach().split(4), strict=True):
        assert block.eigenvalues is not None
        want = sorted(torch.linalg.eigvals(weight).tolist(), key=lambda z: (-abs(z), -z.imag))
        assert [complex(*p) for p in block.eigenvalues] == pytest.approx(want, abs=1e-11)
        assert block.spectral_radius == pytest.approx(abs(want[0]), abs=1e-11)
    lstm = torch.nn.LSTM(3, 5, proj_size=2)
    projected = Spectrum().run(probe_context(lstm)).layers[0]
    assert projected.projection is not None and projected.projection.eigenvalues is None
    assert all(b.eigenvalues is None for b in projected.blocks)


def test_large_matrices_keep_their_largest_eigenvalues(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spectrum, "MAX_EIGENVALUES", 3)
    result = matrix_spectrum("W", torch.diag(torch.tensor([0.1, -0.8, 0.3, 0.05, 0.6], dtype=torch.float64)))
    assert result.eigenvalues == [[-0.8, 0.0], [0.6, 0.0], [0.3, 0.0]]
    assert result.eigenvalues_truncated is True


def test_eigenvalues_of_a_float32_block_keep_their_magnitude() -> None:
    size = spectrum.EIG_FLOAT64_MAX + 8  # above the float64 limit: decomposed in float32
    result = matrix_spectrum("W", 1.1 * random_orthogonal(size, seed=5))
    assert result.eigenvalues is not None and len(result.eigenvalues) == size
    assert all(abs(math.hypot(re, im) - 1.1) < 1e-5 for re, im in result.eigenvalues)

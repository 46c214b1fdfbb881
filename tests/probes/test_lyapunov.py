"""Lyapunov exponents against closed forms, and against the lag profile's asymptotic decay rate."""

from __future__ import annotations

import math

import pytest
import torch

import gradhealth
from gradhealth.probes.lyapunov import Lyapunov
from gradhealth.reference import random_orthogonal, scaled_orthogonal_rnn

from .conftest import linear_unrolled, probe_context


@pytest.mark.parametrize("rho", [0.9, 1.05])
def test_linear_recurrence_top_exponent_is_ln_rho_and_matches_the_lag_profile(rho: float) -> None:
    model = linear_unrolled(rho * random_orthogonal(6, seed=3))
    report = gradhealth.audit(model, seq_len=40, batch_size=3, probes=["lyapunov"])
    result = report.probes["lyapunov"]
    assert result["top_k"] == 4
    assert all(abs(e - math.log(rho)) < 1e-6 for e in result["layers"][0]["exponents"])
    assert abs(result["top_exponent"] - report.metrics.decay_rate_tail) < 1e-6


def test_diagonal_recurrence_recovers_every_eigenvalue() -> None:
    eigenvalues = torch.tensor([0.95, -0.6, 0.3, 0.1], dtype=torch.float64)
    ctx = probe_context(linear_unrolled(torch.diag(eigenvalues)), seq_len=48)
    result = Lyapunov(top_k=4).run(ctx)
    expected = sorted(torch.log(eigenvalues.abs()).tolist(), reverse=True)
    assert result.layers[0].exponents == pytest.approx(expected, abs=1e-6)


def test_top_k_is_capped_at_the_state_size() -> None:
    result = Lyapunov(top_k=10).run(probe_context(linear_unrolled(0.5 * torch.eye(3, dtype=torch.float64))))
    assert result.layers[0].exponents == pytest.approx([math.log(0.5)] * 3, abs=1e-12)


def test_tanh_rnn_in_the_linear_regime_agrees_with_the_lag_profile() -> None:
    report = gradhealth.audit(scaled_orthogonal_rnn(5, 0.8), seq_len=40, batch_size=3, input_scale=1e-4,
                              probes=["lyapunov"])  # fmt: skip
    top = report.probes["lyapunov"]["top_exponent"]
    assert abs(top - math.log(0.8)) < 1e-5
    assert abs(top - report.metrics.decay_rate_tail) < 1e-5


def test_lstm_state_is_h_and_c_per_layer_and_direction() -> None:
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    result = Lyapunov().run(probe_context(lstm, seq_len=10))
    assert [(e.layer, e.direction, e.state_size) for e in result.layers] == [
        ("LSTM.l0", "forward", 8), ("LSTM.l0_reverse", "backward", 8),
        ("LSTM.l1", "forward", 8), ("LSTM.l1_reverse", "backward", 8),
    ]  # fmt: skip
    assert result.top_exponent == max(e.exponents[0] for e in result.layers)
    assert all(e.exponents == sorted(e.exponents, reverse=True) for e in result.layers)


def test_expanding_map_raises_gh203() -> None:
    report = gradhealth.audit(linear_unrolled(1.2 * torch.eye(2, dtype=torch.float64)), seq_len=10, batch_size=2,
                              probes=["lyapunov"])  # fmt: skip
    assert "GH203" in [f.code for f in report.findings]


@pytest.mark.parametrize(("dtype", "unit_roundoff"), [("float16", 2.0**-11), ("bfloat16", 2.0**-8)])
def test_half_precision_runs_and_resolves_ln_rho(dtype: str, unit_roundoff: float) -> None:
    """torch has no half-precision QR (it raised NotImplementedError "geqrf_cpu" here): the frame is
    orthonormalised in float32 and the Jacobian-vector products stay in the probe dtype."""
    report = gradhealth.audit(scaled_orthogonal_rnn(8, 0.9), seq_len=20, batch_size=3, input_scale=1e-4,
                              probes=["lyapunov"], dtype=dtype)  # fmt: skip
    exponents = report.probes["lyapunov"]["layers"][0]["exponents"]
    # Rounding W = 0.9Q to the dtype moves each |eigenvalue| by at most ||ΔW||_F <= u·||W||_F = 0.9·sqrt(8)·u,
    # so each exponent ln|λ| by sqrt(8)·u; each step's product and QR add a few u to ln|R_ii| (4u allowed).
    tolerance = (math.sqrt(8) + 4) * unit_roundoff
    assert len(exponents) == 4
    assert all(abs(e - math.log(0.9)) <= tolerance for e in exponents), (exponents, tolerance)

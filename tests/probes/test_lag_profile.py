"""The lag-profile probe through the public API, against the analytic ground truths of DESIGN.md (float64)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import gradhealth
from gradhealth import reference


def quick(model: object, seq_len: int, **kwargs: object) -> gradhealth.Report:
    kwargs.setdefault("batch_size", 4)
    return gradhealth.audit(model, seq_len=seq_len, probes="quick", **kwargs)  # type: ignore[arg-type]


def test_linear_rho_09_horizon_44_and_exact_decay() -> None:
    report = quick(reference.LinearRecurrence(8, 0.9), 60)
    m = report.metrics
    assert report.verdict == "vanishing"
    assert m.horizon == 44 and m.horizon_reached
    assert abs(m.decay_rate - math.log(0.9)) < 1e-9
    assert abs(m.decay_rate_tail - math.log(0.9)) < 1e-9
    assert m.fit_r2 == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(report.profile.g, 0.9 ** np.arange(61), rtol=1e-10, atol=0)
    assert m.timescale == pytest.approx(-1 / math.log(0.9), rel=1e-9)
    assert m.half_life == pytest.approx(math.log(2) / -math.log(0.9), rel=1e-9)
    # horizon at 1e-3: last k with 0.9^k >= 1e-3 is 65 > K = 60, so it is extrapolated
    assert not m.horizon_1e3_reached
    assert m.horizon_1e3 == pytest.approx(math.log(1e-3) / math.log(0.9), rel=1e-9)


def test_linear_rho_099_horizon_459() -> None:
    report = quick(reference.LinearRecurrence(4, 0.99), 470, batch_size=2, burn_in=0)
    assert report.metrics.horizon == 459
    assert report.verdict == "vanishing"


def test_linear_rho_099_unreached_horizon_is_extrapolated() -> None:
    report = quick(reference.LinearRecurrence(4, 0.99), 100, burn_in=0)
    m = report.metrics
    assert report.verdict == "healthy"
    assert not m.horizon_reached
    assert m.horizon == pytest.approx(math.log(1e-2) / math.log(0.99), rel=1e-9)  # 458.2


def test_exploding_first_explode_lag_49() -> None:
    report = quick(reference.LinearRecurrence(6, 1.1), 60)
    assert report.verdict == "exploding"
    assert report.metrics.first_explode_lag == 49
    assert report.metrics.decay_rate == pytest.approx(math.log(1.1), abs=1e-9)
    assert any(f.code == "GH002" for f in report.findings)


def test_tanh_rnn_near_linear_regime() -> None:
    report = quick(reference.scaled_orthogonal_rnn(8, 0.9), 60, input_scale=1e-4)
    np.testing.assert_allclose(report.profile.g, 0.9 ** np.arange(61), rtol=1e-5)
    assert report.metrics.horizon == 44


def test_lstm_constant_forget_gate_gives_f_to_the_k() -> None:
    report = quick(reference.constant_forget_lstm(6, 0.8), 50, input_scale=1e-4)
    np.testing.assert_allclose(report.profile.g, 0.8 ** np.arange(51), rtol=1e-6)
    assert report.metrics.decay_rate == pytest.approx(math.log(0.8), rel=1e-6)


def test_gru_constant_update_gate_gives_z_to_the_k() -> None:
    report = quick(reference.constant_update_gru(6, 0.7), 50, input_scale=1e-4)
    np.testing.assert_allclose(report.profile.g, 0.7 ** np.arange(51), rtol=1e-6)


@pytest.mark.parametrize("length", [1, 7, 20])
def test_delay_line_horizon_is_its_length(length: int) -> None:
    report = quick(reference.DelayLine(3, length), 30)
    assert report.metrics.horizon == length
    assert "finite_memory" in report.tags or length > 30
    assert "unresolved_tail" not in report.tags  # exact zeros are structural, not underflow
    assert report.profile.g[:length] == pytest.approx([1.0] * length)
    assert report.profile.g[length:] == [0.0] * (31 - length)


def test_non_normal_recurrence_shows_transient_peak() -> None:
    weight = torch.tensor([[0.8, 5.0], [0.0, 0.8]], dtype=torch.float64)
    # Reading out one coordinate makes the per-sample ratio independent of v: g(k) = ||row_1(W^k)|| exactly.
    layout = gradhealth.Layout(output=lambda h: h[..., :1])
    report = quick(reference.LinearRecurrence(2, weight=weight), 60, layout=layout)
    w = weight.numpy()
    expected = np.array([np.linalg.norm(np.linalg.matrix_power(w, k)[0]) for k in range(61)])
    np.testing.assert_allclose(report.profile.g, expected, rtol=1e-10)
    m = report.metrics
    assert m.peak_lag == int(np.argmax(expected)) == 4
    assert m.peak_gain == pytest.approx(expected.max(), rel=1e-10)
    assert m.peak_gain > 1.1
    assert "transient_amplification" in report.tags
    assert any(f.code == "GH004" for f in report.findings)
    assert report.profile.g_peak == pytest.approx(list(expected / expected.max()), rel=1e-10)


def test_bidirectional_each_direction_probed() -> None:
    # backward direction: a fresh LSTM with a slow forward direction (chrono) and a fast backward one; seeded,
    # so the weights do not depend on which tests ran before in this worker
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 8, bidirectional=True, batch_first=True)
    with torch.no_grad():
        for name, p in lstm.named_parameters():
            if name.startswith("bias_ih"):
                p[8:16] = 6.0 if "reverse" not in name else -6.0  # forget gate ~1 forward, ~0 backward
    report = quick(lstm, 40)
    fwd, bwd = report.direction("forward"), report.direction("backward")
    assert [d.name for d in report.directions] == ["forward", "backward"]
    assert fwd.metrics.horizon > bwd.metrics.horizon + 5
    assert report.primary_direction == "backward"  # the worse direction decides
    assert report.metrics == bwd.metrics


@pytest.mark.parametrize("batch_first", [True, False])
def test_lag_norms_match_independent_autograd_both_directions(batch_first: bool) -> None:
    """lag_norms against a hand-written BPTT on the same seeded draws: forward lags count back from the last
    step, backward-direction lags count forward from step 0."""
    from gradhealth.config import AuditConfig
    from gradhealth.plugins import adapt, get_task
    from gradhealth.probes.base import ProbeContext
    from gradhealth.probes.lag_profile import lag_norms

    torch.manual_seed(3)
    bi = nn.GRU(3, 5, bidirectional=True, num_layers=2, batch_first=batch_first)
    cfg = AuditConfig(seq_len=10, batch_size=3, burn_in=4)
    adapter = adapt(bi).materialize(torch.float64, torch.device("cpu"))
    ctx = ProbeContext(adapter, cfg, get_task("noise"), torch.float64, torch.device("cpu"), 3)
    norms = {measured.direction: measured.norms for measured in lag_norms(ctx)}

    x = ctx.make_batch("lag_profile").inputs.requires_grad_(True)  # same draws as the probe
    model = adapter.model
    out = model(x if batch_first else x.transpose(0, 1))[0]
    out = out if batch_first else out.transpose(0, 1)
    total = cfg.total_len
    for name, half, t_out in (("forward", slice(0, 5), total - 1), ("backward", slice(5, 10), 0)):
        y = out[:, t_out, half]
        v = ctx.randn(f"lag_profile/{name}", tuple(y.shape), like=y)
        (grad,) = torch.autograd.grad((y * v).sum(), x, retain_graph=True)
        steps = [t_out - k for k in range(11)] if name == "forward" else list(range(11))
        expected = torch.stack([grad[:, t].norm(dim=-1) for t in steps], dim=1)
        torch.testing.assert_close(norms[name], expected, rtol=1e-12, atol=0)


def test_nan_producing_model_is_non_finite_not_a_crash() -> None:
    class Sqrt(nn.Module):
        input_size = 3

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = reference.LinearRecurrence(3, 0.5).to(x)(x)
            return torch.cat([h[:, :-1], torch.sqrt(h[:, -1:] - 100)], dim=1)  # NaN at the last step

    report = quick(Sqrt(), 20)
    assert report.verdict == "non_finite"
    assert report.metrics.first_nonfinite_lag == 0
    assert report.findings[0].code == "GH003"
    assert "nan" in report.to_json()


def test_nan_from_a_lag_onwards_reports_first_lag() -> None:
    class PoisonPast(nn.Module):
        input_size = 2

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            t = x.shape[1]
            # inputs older than 5 steps before the end reach the output through an inf * 0 = NaN path
            mask = torch.zeros(1, t, 1, dtype=x.dtype)
            mask[:, : t - 5] = math.inf
            return torch.cumsum(x * 0.5 + (x * mask) * 0, dim=1)

    report = quick(PoisonPast(), 20)
    assert report.verdict == "non_finite"
    assert report.metrics.first_nonfinite_lag == 5


def test_profile_quantiles_are_per_sample_log_ratios() -> None:
    report = quick(reference.LinearRecurrence(5, 0.9), 20)
    expected = np.arange(21) * math.log10(0.9)  # every sample decays exactly like rho^k
    for key in ("q10", "q50", "q90"):
        np.testing.assert_allclose(report.profile.quantiles[key], expected, atol=1e-12)


def test_float32_resolution_floor_marks_unresolved_tail() -> None:
    report = quick(reference.LinearRecurrence(4, 0.3), 200, dtype="float32")
    assert "unresolved_tail" in report.tags
    m = report.metrics
    assert m.resolved_lags < 201
    # the fit only uses resolved lags, so it still recovers ln 0.3 to float32 accuracy
    assert m.decay_rate == pytest.approx(math.log(0.3), rel=1e-4)
    assert m.horizon == 4  # 0.3^3 = 0.027 >= 1e-2 > 0.3^4


def test_default_fresh_modules_vanish_around_ten_steps() -> None:
    torch.manual_seed(0)
    for cls in (nn.RNN, nn.GRU, nn.LSTM):
        report = quick(cls(8, 32, batch_first=True), 64, batch_size=8)
        assert report.verdict == "vanishing", cls
        assert 2 <= report.metrics.horizon <= 30, (cls, report.metrics.horizon)


def test_chrono_lstm_remembers_longer_than_default() -> None:
    torch.manual_seed(0)
    default = quick(nn.LSTM(4, 32, batch_first=True), 100)
    chrono = quick(reference.chrono_lstm(4, 32, 100), 100)
    assert chrono.metrics.horizon > 3 * default.metrics.horizon


def test_float32_underflow_to_exact_zero_is_unresolved_not_finite_memory() -> None:
    torch.manual_seed(0)
    report = quick(nn.LSTM(8, 32, batch_first=True), 200, dtype="float32")
    assert "finite_memory" not in report.tags
    assert report.verdict == "vanishing"

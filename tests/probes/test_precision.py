"""Numbers you can gate CI on: every precision edge case of the lag profile against its analytic answer.

Each case was once reported wrong without an error (issue "Numbers you can gate CI on"); each expected value
below comes from the model's closed form, never from what the code printed.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import torch
from torch import nn

import gradhealth
from gradhealth import reference
from gradhealth.probes import _bptt


def quick(model: object, seq_len: int, **kwargs: object) -> gradhealth.Report:
    kwargs.setdefault("batch_size", 4)
    return gradhealth.audit(model, seq_len=seq_len, probes="quick", **kwargs)  # type: ignore[arg-type]


class Scaled(nn.Module):
    """``LinearRecurrence`` with its output multiplied by a constant: g(k) = ρ^k at any scale."""

    def __init__(self, rho: float, scale: float, *, shift: int = 0) -> None:
        super().__init__()
        self.inner = reference.LinearRecurrence(8, rho)
        self.scale = scale
        self.shift = shift
        self.input_size = 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inner(x) * self.scale
        if self.shift:  # y_t = h_{t - shift}: the output sees the input only after a delay
            h = torch.cat([torch.zeros_like(h[:, : self.shift]), h[:, : -self.shift]], dim=1)
        return h


def irnn(size: int = 8, gain: float = 0.9) -> nn.RNN:
    """Le et al.'s IRNN with W_hh = gain·I, W_ih = I, zero biases: from an impulse, g(k) = gain^k exactly."""
    rnn = nn.RNN(size, size, nonlinearity="relu", batch_first=True)
    with torch.no_grad():
        for p in rnn.parameters():
            p.zero_()
        rnn.weight_hh_l0.copy_(gain * torch.eye(size))
        rnn.weight_ih_l0.copy_(torch.eye(size))
    return rnn


class LoopIRNN(nn.Module):
    """The IRNN written as a loop of ``torch.relu``: the backward reads each saved ReLU output to build its mask."""

    def __init__(self, size: int = 8, gain: float = 0.9) -> None:
        super().__init__()
        self.gain = gain
        self.input_size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros_like(x[:, 0])
        outputs = []
        for t in range(x.shape[1]):
            h = torch.relu(self.gain * h + x[:, t])
            outputs.append(h)
        return torch.stack(outputs, dim=1)


@pytest.mark.parametrize("seed", range(10))
def test_neutral_recurrence_has_zero_rate_and_infinite_horizon_on_every_seed(seed: int) -> None:
    report = quick(reference.LinearRecurrence(2, 1.0), 10, batch_size=2, seed=seed)
    m = report.metrics
    assert m.decay_rate == 0.0 and m.decay_rate_tail == 0.0
    assert m.horizon == math.inf and not m.horizon_reached
    assert m.timescale == math.inf
    assert report.verdict == "healthy"
    assert "neutral" in report.tags


@pytest.mark.parametrize("model", [irnn, LoopIRNN], ids=["nn.RNN", "relu-loop"])
def test_irnn_whose_forward_state_goes_denormal_gives_gain_to_the_k_with_flushing_on(model: type) -> None:
    # From an impulse at step 0 the state is 0.9^t x_0: below float32's smallest normal (1.2e-38) from t ~ 830,
    # so the ReLU's saved output at the loss step (t = 900) is denormal. A flushing backward would read it as 0.
    report = quick(model(), 450, task="impulse", dtype="float32")
    m = report.metrics
    assert m.horizon == 44 == 1 + math.floor(math.log(1e-2) / math.log(0.9))
    assert report.verdict == "vanishing"
    assert not any(f.code == "GH007" for f in report.findings)
    g = np.array(report.profile.g)
    resolved = np.array(report.profile.resolved)
    k = np.arange(451)
    assert resolved[: 700 - 450].all()
    # float32 backward: each step rounds once, so g(k) carries up to ~k ulps of relative error
    np.testing.assert_allclose(g[resolved], 0.9 ** k[resolved], rtol=1e-7 * 451)


def test_flushing_would_change_that_number_and_the_guard_prevents_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard has teeth: with the denormal check switched off, the flushing backward reads the ReLU's
    denormal output as zero. (Skipped on CPUs where flush-to-zero has no effect.)"""
    from gradhealth._state import is_flushing_denormals

    torch.set_flush_denormal(True)
    try:
        effective = is_flushing_denormals()
    finally:
        torch.set_flush_denormal(False)
    if not effective:
        pytest.skip("flush-to-zero has no effect on this CPU")
    monkeypatch.setattr(_bptt.SavedDenormals, "found", property(lambda self: False))
    monkeypatch.setattr(_bptt, "_has_zero_conclusion", lambda raw, floor: False)
    unguarded = quick(LoopIRNN(), 450, task="impulse", dtype="float32")
    assert unguarded.metrics.horizon == 0  # the ReLU mask at the loss step read as zero: no gradient at all


def test_flush_on_and_off_agree_on_every_resolved_lag(monkeypatch: pytest.MonkeyPatch) -> None:
    """A float32 LSTM at K = 300 drives its gradient through the denormal range (the case flushing exists for):
    the resolved lags are the same with the flushing backward and without it."""
    torch.manual_seed(0)
    lstm = nn.LSTM(4, 16, batch_first=True)
    flushed = quick(lstm, 300, dtype="float32")
    monkeypatch.setattr(_bptt, "backward_scope", lambda device, *, flush: contextlib.nullcontext())
    plain = quick(lstm, 300, dtype="float32")
    resolved = np.array(flushed.profile.resolved)
    assert resolved.tolist() == plain.profile.resolved
    assert resolved.sum() > 20
    # Values flushed away are below float32's smallest normal, 1e7 times below the floor: only roundoff of
    # the resolved values can differ (relative 1e-7 per step).
    np.testing.assert_allclose(
        np.array(flushed.profile.g)[resolved], np.array(plain.profile.g)[resolved], rtol=1e-7 * 300
    )
    assert flushed.metrics.horizon == plain.metrics.horizon


def test_float64_profile_resolves_down_to_the_documented_floor() -> None:
    # 0.5^600 = 2.4e-181: far above float64's floor tiny/eps = 1e-292, so every lag is resolved and exact.
    report = quick(reference.LinearRecurrence(4, 0.5), 600)
    m = report.metrics
    assert m.resolved_lags == 601
    assert abs(m.decay_rate - math.log(0.5)) < 1e-10
    assert abs(m.decay_rate_tail - math.log(0.5)) < 1e-10
    np.testing.assert_allclose(report.profile.g, 0.5 ** np.arange(601), rtol=1e-10)


def test_float64_floor_is_tiny_over_eps_not_the_square_root_of_tiny() -> None:
    # 0.3^k crosses 1e-154 (where squared norms underflow) at k ~ 295 and tiny/eps = 1e-292 at k ~ 558.
    report = quick(reference.LinearRecurrence(3, 0.3), 600, batch_size=2)
    g = np.array(report.profile.g)
    resolved = np.array(report.profile.resolved)
    expected = 0.3 ** np.arange(601)
    assert resolved.sum() == int(np.sum(expected * report.profile.grad_norm[0] > 1.0020841800044864e-292))
    assert resolved[:550].all()
    np.testing.assert_allclose(g[resolved], expected[resolved], rtol=1e-9)


def test_tail_rate_of_a_long_default_rnn_is_measured_on_its_resolved_range() -> None:
    torch.manual_seed(0)
    report = quick(nn.RNN(8, 16, batch_first=True), 2000)
    m = report.metrics
    assert m.decay_rate_tail is not None and m.decay_rate_tail < 0
    assert m.resolved_lags < 2001  # it decays past float64's floor before K
    assert "unresolved_tail" in report.tags


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("scale", [1.0, 0.05, 1e-3])
def test_half_precision_horizon_does_not_depend_on_the_output_scale(dtype: str, scale: float) -> None:
    """0.9^k crosses 1e-2 after lag 43 at any output scale; the floor is relative to the measured gradient
    (the probe scales its seed vector), so float16 resolves it as float64 does."""
    report = quick(Scaled(0.9, scale), 60, dtype=dtype)
    m = report.metrics
    assert m.horizon == 44
    assert report.verdict == "vanishing"
    assert not m.horizon_censored
    assert m.relative_floor < 1e-2
    # 0.9^k crosses 1e-3 after lag 65 > K: extrapolated to ln(1e-3)/ln(0.9) = 65.56 from the tail rate, or
    # (float16 at a small output gain) an honest lower bound
    exact = math.log(1e-3) / math.log(0.9)
    assert abs(m.horizon_1e3 - exact) < 0.5 or (m.horizon_1e3_censored and m.horizon_1e3 <= exact)
    assert "finite_memory" not in report.tags


def test_float16_output_that_underflows_is_inconclusive_not_input_independent() -> None:
    # 1e-30 is below float16's smallest subnormal (6e-8): the float16 copy outputs exact zeros, which cannot be
    # told from a model that ignores its input.
    report = quick(Scaled(0.9, 1e-30), 60, dtype="float16")
    assert report.verdict == "inconclusive"
    assert report.metrics.horizon_censored
    assert not any(f.code == "GH007" for f in report.findings)
    assert any(f.code == "GH005" for f in report.findings)


def test_float32_output_at_a_tiny_scale_is_still_resolved() -> None:
    # G(0) ~ 1e-33 lies below float32's floor (1e-31): without seed scaling nothing would be resolved.
    report = quick(Scaled(0.9, 1e-33), 60, dtype="float32")
    assert report.metrics.horizon == 44
    np.testing.assert_allclose(report.profile.g, 0.9 ** np.arange(61), rtol=1e-5)


def test_exploding_model_read_out_one_step_late_is_exploding_at_lag_50() -> None:
    # y_t = h_{t-1}, h_t = 1.1 Q h_{t-1} + x_t: G(0) = 0 and g(k) = 1.1^(k-1) from the first positive lag.
    report = quick(Scaled(1.1, 1.0, shift=1), 60)
    m = report.metrics
    assert report.verdict == "exploding"
    assert m.first_explode_lag == 50
    assert m.normalization == "first_positive" and m.reference_lag == 1
    np.testing.assert_allclose(report.profile.g[1:], 1.1 ** np.arange(60), rtol=1e-10)
    assert report.profile.g[0] == 0.0


def test_exploding_profile_is_not_called_transient() -> None:
    report = quick(reference.LinearRecurrence(6, 1.1), 60)
    assert report.verdict == "exploding"
    assert "transient_amplification" not in report.tags
    assert not any(f.code == "GH004" for f in report.findings)


class TokenGRU(nn.Module):
    def __init__(self, batch_first: bool) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.embed = nn.Embedding(7, 4)
        self.rnn = nn.GRU(4, 6, batch_first=batch_first)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.rnn(self.embed(ids))[0]


def test_length_scan_reads_time_major_token_models_like_batch_first_ones() -> None:
    torch.manual_seed(1)
    batch_first = TokenGRU(True)
    time_major = TokenGRU(False)
    time_major.load_state_dict(batch_first.state_dict())
    kwargs = {"seq_len": 8, "batch_size": 3, "probes": ["length_scan"], "dtype": "float64"}
    a = gradhealth.audit(batch_first, **kwargs).probes["length_scan"]  # type: ignore[arg-type]
    b = gradhealth.audit(time_major, layout=gradhealth.Layout(batch_first=False), **kwargs).probes["length_scan"]  # type: ignore[arg-type]
    assert a["growth_rate"] < -0.05
    assert b["growth_rate"] == pytest.approx(a["growth_rate"], rel=1e-10)
    for pa, pb in zip(a["points"], b["points"], strict=True):
        assert pb["first_input_norm"] == pytest.approx(pa["first_input_norm"], rel=1e-10)


class DiagonalComplexStep(nn.Module):
    """A linear recurrent unit (LRU) step: h' = λ ⊙ h + B x, y = Re(C h), with |λ_i| = r and random phases.

    ∂L/∂h_{t-k} = (λ̄^k) ⊙ ∂L/∂h_t elementwise, so the state-gradient ratio is exactly r^k."""

    def __init__(self, r: float) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        theta = torch.rand(4, generator=gen, dtype=torch.float64) * 2 * math.pi
        self.lam = nn.Parameter(r * torch.exp(1j * theta))
        self.B = nn.Parameter(torch.randn(4, 3, generator=gen, dtype=torch.complex128))
        self.C = nn.Parameter(torch.randn(2, 4, generator=gen, dtype=torch.complex128))
        self.input_size = 3

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.lam * h + x.to(self.B.dtype) @ self.B.T
        return (h @ self.C.T).real, h


def test_complex_state_gradient_is_exact() -> None:
    step = DiagonalComplexStep(0.95)
    model = gradhealth.Unrolled(step, init_state=lambda b, dtype, device: torch.zeros(b, 4, dtype=torch.complex128))
    report = gradhealth.audit(model, seq_len=12, batch_size=3, probes=["state_gradients"])
    (profile,) = report.probes["state_gradients"]["profiles"]
    np.testing.assert_allclose(profile["ratio"], 0.95 ** np.arange(13), rtol=1e-12)
    assert profile["ratio"][6] == pytest.approx(0.735, abs=1e-3)  # 0.257 when the imaginary part was dropped
    assert step.lam.dtype == torch.complex128  # the user's module is untouched


def test_probe_copy_keeps_complex_parameters_complex() -> None:
    """The float32 probe copy keeps λ complex (complex64): Module.to(float32) would warn and drop Im λ."""
    import warnings

    step = DiagonalComplexStep(0.95)
    model = gradhealth.Unrolled(step, init_state=lambda b, dtype, device: torch.zeros(b, 4, dtype=torch.complex64))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*[Cc]omplex.*real.*")
        report = gradhealth.audit(model, seq_len=12, batch_size=3, probes=["state_gradients"], dtype="float32")
    (profile,) = report.probes["state_gradients"]["profiles"]
    np.testing.assert_allclose(profile["ratio"], 0.95 ** np.arange(13), rtol=1e-5)


def test_layout_output_is_honoured_for_torch_recurrent_modules() -> None:
    torch.manual_seed(2)
    gru = nn.GRU(3, 4, batch_first=True)

    class FirstTwo(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = gru
            self.input_size = 3

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.gru(x)[0][..., :2]

    picked = quick(gru, 10, layout=gradhealth.Layout(output=lambda value: value[0][..., :2]))
    wrapped = quick(FirstTwo(), 10)
    whole = quick(gru, 10)
    np.testing.assert_allclose(picked.profile.g, wrapped.profile.g, rtol=1e-12)
    assert not np.allclose(picked.profile.g, whole.profile.g)


def test_structural_zeros_are_concluded_without_flushing() -> None:
    from gradhealth.config import AuditConfig
    from gradhealth.plugins import adapt, get_task
    from gradhealth.probes.base import ProbeContext
    from gradhealth.probes.lag_profile import lag_norms

    adapter = adapt(reference.DelayLine(3, 5)).materialize(torch.float64, torch.device("cpu"))
    ctx = ProbeContext(adapter, AuditConfig(seq_len=12, batch_size=2), get_task("noise"), torch.float64,
                       torch.device("cpu"), 3)  # fmt: skip
    (measured,) = lag_norms(ctx)
    assert not measured.flushed
    assert (measured.norms[:, 5:] == 0).all()

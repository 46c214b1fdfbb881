"""The default probe dtype (issue 16): follow the model, and measure again in float64 where float32 falls short.

Ground truths are analytic: a linear recurrence W = ρQ has g(k) = ρ^k exactly, so its decay rate is ln ρ whatever
the dtype resolves; the float32 numbers are compared with float64 to float32's own rounding (K steps of about one
ulp each), and a float64 re-measure with an explicit float64 audit from the same seeds.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import gradhealth
from gradhealth import reference

FLOAT32_EPS = float(torch.finfo(torch.float32).eps)


def _audit(model: object, **kwargs: object) -> gradhealth.Report:
    kwargs.setdefault("seq_len", 40)
    kwargs.setdefault("batch_size", 4)
    kwargs.setdefault("probes", "quick")
    return gradhealth.audit(model, **kwargs)  # type: ignore[arg-type]


def test_float32_model_is_probed_in_float32_when_every_lag_is_resolved() -> None:
    model = reference.LinearRecurrence(6, 0.9).float()  # g(k) = 0.9^k: 40 lags are 4 decades, far above the floor
    auto = _audit(model)
    assert auto.config["dtype"] == auto.model["probe_dtype"] == "float32"
    assert auto.model["probe_dtype_reason"] == "auto: the model's own dtype; every lag resolved in float32"
    assert all(auto.profile.resolved)
    # float32 rounds each of the K steps' products by about one ulp: the profile agrees with ρ^k to K·eps
    tolerance = 8 * 40 * FLOAT32_EPS
    for k, g in enumerate(auto.profile.g):
        assert g == pytest.approx(0.9**k, rel=tolerance)
    assert auto.metrics.decay_rate == pytest.approx(math.log(0.9), rel=tolerance)
    float64 = _audit(model, dtype="float64")
    assert auto.verdict == float64.verdict
    # 0.9^k reaches 1e-2 after K = 40: both extrapolate it to ln(1e-2)/ln(0.9) = 43.7
    assert auto.metrics.horizon == pytest.approx(float64.metrics.horizon, rel=tolerance)
    # (the model's weights are ρQ rounded to float32: ρ itself is known to about one float32 ulp)
    assert float64.metrics.horizon == pytest.approx(math.log(1e-2) / math.log(0.9), rel=8 * FLOAT32_EPS)
    assert f"probe dtype: float32 ({auto.model['probe_dtype_reason']})" in str(auto)


def test_profile_below_float32s_floor_is_measured_again_in_float64() -> None:
    # ρ = 0.08: 1.1 decades per step, 100 lags are 110 decades: below float32's floor (about 60 decades under
    # a gradient of order one once the probe lifts its seed by 2^96), not float64's
    model = reference.LinearRecurrence(6, 0.08).float()
    alone32 = _audit(model, dtype="float32", seq_len=100)
    assert not all(alone32.profile.resolved)  # the premise: float32 cannot resolve this profile
    auto = _audit(model, seq_len=100)
    float64 = _audit(model, dtype="float64", seq_len=100)
    assert auto.config["dtype"] == "float64" and float64.model["probe_dtype_reason"] == "requested"
    reason = auto.model["probe_dtype_reason"]
    resolved = sum(alone32.profile.resolved)
    assert reason == f"auto: float32 resolved {resolved} of the profile's 101 lags; measured again in float64"
    assert all(auto.profile.resolved)
    assert auto.metrics.decay_rate == pytest.approx(math.log(0.08), rel=8 * FLOAT32_EPS)  # ρQ rounded to float32
    # the re-measure starts from the same seeds: the report is the float64 audit's
    assert auto.profile.grad_norm == pytest.approx(float64.profile.grad_norm, rel=1e-12, abs=0)
    assert auto.metrics.horizon == float64.metrics.horizon == 2  # 0.08 >= 1e-2 > 0.08^2


def test_a_profile_deeper_than_31_decades_is_resolved_in_float32_by_lifting_the_seed() -> None:
    # ρ = 0.3: 100 lags are 52 decades, more than the 31 float32 leaves under a gradient of order one; the probe
    # multiplies its seed by 2^96 (exact) so a gradient of order one sits near 1e29, and resolves
    # every lag in float32: auto keeps float32, and the profile is ρ^k to float32's rounding
    model = reference.LinearRecurrence(6, 0.3).float()
    auto = _audit(model, seq_len=100)
    assert auto.config["dtype"] == "float32" and all(auto.profile.resolved)
    assert auto.metrics.relative_floor < 1e-55  # the floor relative to G(0): lifted far below 1e-31
    tolerance = 8 * 100 * FLOAT32_EPS
    for k, g in enumerate(auto.profile.g):
        assert g == pytest.approx(0.3**k, rel=tolerance), k
    assert auto.metrics.decay_rate == pytest.approx(math.log(0.3), rel=tolerance)


def test_overflow_in_float32_is_measured_again_in_float64() -> None:
    # ρ = 8: 0.9 decades per step, 100 lags are 90 decades of growth: more than float32 spans, not float64
    model = reference.LinearRecurrence(4, 8.0).float()
    assert not all(_audit(model, seq_len=100, dtype="float32").profile.resolved)
    auto = _audit(model, seq_len=100)
    assert auto.config["dtype"] == "float64"
    assert "measured again in float64" in auto.model["probe_dtype_reason"]
    assert auto.verdict == "exploding"
    assert auto.metrics.decay_rate == pytest.approx(math.log(8.0), rel=8 * FLOAT32_EPS)  # ρQ rounded to float32


def test_float64_and_half_models_and_explicit_dtypes() -> None:
    model = reference.LinearRecurrence(4, 0.9)  # built in float64
    assert next(model.parameters()).dtype == torch.float64
    report = _audit(model)
    assert (report.config["dtype"], report.model["probe_dtype_reason"]) == ("float64", "auto: the model's own dtype")
    half_model = reference.LinearRecurrence(4, 0.9).to(torch.float16)
    half = _audit(half_model)
    assert half.config["dtype"] == "float32"
    assert half.model["probe_dtype_reason"].startswith(
        "auto: the model is float16, probed in float32 (dtype='float16' probes in its own precision)"
    )
    same_weights = _audit(half_model.double())  # the float16 weights exactly, probed in float64
    assert half.verdict == same_weights.verdict
    assert half.metrics.horizon == pytest.approx(same_weights.metrics.horizon, rel=8 * 40 * FLOAT32_EPS)
    explicit = _audit(nn.GRU(3, 5, batch_first=True), dtype="float32")
    assert (explicit.config["dtype"], explicit.model["probe_dtype_reason"]) == ("float32", "requested")


class _CapturedFloat64(nn.Module):
    """A float32 model (auto tries float32 first) whose forward multiplies by a captured float64 tensor: it runs in
    float64 only."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.weight = torch.eye(3, dtype=torch.float64) * 0.5  # not a buffer: not cast with the module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(x @ self.weight, dim=1) * self.scale.to(x.dtype)


def test_model_that_fails_in_float32_is_probed_in_float64() -> None:
    report = _audit(_CapturedFloat64(), input_size=3)
    assert report.config["dtype"] == "float64"
    assert report.model["probe_dtype_reason"].startswith("auto: the model failed in float32 (")
    assert not any(f.code == "GH901" for f in report.findings)  # GH901 is for float64 falling back to float32

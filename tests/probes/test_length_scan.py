"""The length scan recovers known growth rates and stops where it should."""

from __future__ import annotations

import math

import pytest
import torch

import gradhealth
from gradhealth.probes.length_scan import LengthScan
from gradhealth.reference import random_orthogonal

from .conftest import linear_unrolled, probe_context


def test_exploding_linear_recurrence_grows_by_ln_1_1_per_step() -> None:
    model = linear_unrolled(1.1 * random_orthogonal(4, seed=5))
    result = LengthScan(ladder=(8, 16, 32, 64)).run(probe_context(model))
    assert result.growth_rate == pytest.approx(math.log(1.1), abs=1e-9)
    assert result.growth_r2 == pytest.approx(1.0, abs=1e-12)
    assert result.stopped == "complete"
    assert [p.length for p in result.points] == [8, 16, 32, 64]
    # ∂y_{T-1}/∂x_0 = W^{T-1} with W = 1.1 Q: N_first(T) = 1.1^(T-1) · sqrt(mean ‖v‖²)
    ratio = result.points[1].first_input_norm / result.points[0].first_input_norm
    assert ratio == pytest.approx(1.1**8, rel=1e-10)


def test_vanishing_recurrence_has_a_negative_rate_and_stops_at_underflow() -> None:
    model = linear_unrolled(0.1 * torch.eye(3, dtype=torch.float64))
    result = LengthScan(ladder=(16, 64, 512, 1024)).run(probe_context(model))
    assert result.stopped == "underflow"
    assert [p.length for p in result.points] == [16, 64, 512]
    assert result.growth_rate == pytest.approx(math.log(0.1), abs=1e-9)


def test_overflow_gives_the_first_non_finite_length() -> None:
    model = linear_unrolled(3.0 * torch.eye(3))
    result = LengthScan(ladder=(8, 16, 64, 128, 256)).run(probe_context(model, dtype=torch.float32))
    assert result.first_nonfinite_length == 128  # 3^63 fits in float32 (< 3.4e38), 3^127 does not
    assert result.stopped == "non_finite"
    assert result.points[-1].is_finite is False


def test_engine_findings_for_growth_and_overflow(short_ladder: None) -> None:
    report = gradhealth.audit(linear_unrolled(1.5 * torch.eye(2)), seq_len=8, batch_size=2, probes=["length_scan"],
                              dtype="float32")  # fmt: skip
    codes = [f.code for f in report.findings]
    assert "GH401" in codes
    assert report.probes["length_scan"]["growth_rate"] == pytest.approx(math.log(1.5), rel=1e-4)
    overflow = gradhealth.audit(linear_unrolled(30.0 * torch.eye(2)), seq_len=4, batch_size=2, dtype="float32",
                                probes=["length_scan"])  # fmt: skip
    assert "GH402" in [f.code for f in overflow.findings]

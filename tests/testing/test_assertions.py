"""gradhealth.testing assertions on reference models with analytic profiles (float64, exact horizons)."""

from __future__ import annotations

import math

import pytest
import torch

import gradhealth
import gradhealth.testing as ght
from gradhealth import reference
from gradhealth.errors import ConfigError

SMALL = {"batch_size": 4}


def test_memory_horizon_bounds_on_a_delay_line() -> None:
    delay = reference.DelayLine(2, 12)  # horizon exactly 12
    report = ght.assert_memory_horizon(delay, at_least=12, at_most=12, seq_len=16, **SMALL)
    assert report.metrics.horizon == 12
    with pytest.raises(AssertionError, match=r"failed: horizon 12 < min 13 steps"):
        ght.assert_memory_horizon(delay, at_least=13, seq_len=16, **SMALL)
    with pytest.raises(AssertionError, match=r"failed: horizon 12 > max 11 steps"):
        ght.assert_memory_horizon(delay, at_most=11, seq_len=16, **SMALL)


def test_memory_horizon_needs_a_bound() -> None:
    with pytest.raises(ValueError, match="at_least=, at_most="):
        ght.assert_memory_horizon(reference.DelayLine(2, 3))


def test_memory_horizon_beyond_seq_len_is_refused_not_extrapolated() -> None:
    with pytest.raises(ConfigError) as info:
        ght.assert_memory_horizon(reference.LinearRecurrence(2, 0.99), at_least=400, **SMALL)
    assert str(info.value) == (
        "invalid min_horizon 400 from argument at_least=: beyond seq_len 100 (from default): the gate would be "
        "decided by extrapolation; set seq_len >= 400"
    )


def test_memory_horizon_at_seq_len_is_measured() -> None:
    # rho = 0.99 at K = 400: the bound is decided by the measured g(400) = 0.018 >= ε; beyond K the horizon is
    # extrapolated along the tail rate: ln(0.01) / ln(0.99).
    report = ght.assert_memory_horizon(reference.LinearRecurrence(2, 0.99), at_least=400, seq_len=400, **SMALL)
    assert report.config["seq_len"] == 400
    assert not report.metrics.horizon_reached
    assert report.metrics.horizon == pytest.approx(math.log(0.01) / math.log(0.99), rel=1e-9)
    with pytest.raises(AssertionError, match="failed: horizon 21 < min 30 steps"):
        ght.assert_memory_horizon(reference.LinearRecurrence(2, 0.8), at_least=30, **SMALL)


def test_no_vanishing_at_the_analytic_horizon() -> None:
    model = reference.LinearRecurrence(3, 0.9)  # g(k) = 0.9^k: horizon@0.01 = 44, g(43) = 0.0108 >= ε
    passed = ght.assert_no_vanishing(model, over=43, **SMALL)
    assert passed.metrics.horizon == pytest.approx(math.log(0.01) / math.log(0.9), rel=1e-9)  # extrapolated
    with pytest.raises(AssertionError, match=r"because horizon@0.01 = 44 steps <= K = 44"):
        ght.assert_no_vanishing(model, over=44, **SMALL)


def test_no_exploding_at_the_analytic_lag() -> None:
    model = reference.LinearRecurrence(3, 1.1)  # g(k) = 1.1^k first reaches 100 at lag 49
    ght.assert_no_exploding(model, over=48, **SMALL)
    with pytest.raises(AssertionError, match=r"\(first at lag 49\)") as info:
        ght.assert_no_exploding(model, over=60, **SMALL)
    assert "verdict: EXPLODING" in str(info.value)
    assert "GH002 error" in str(info.value)


def test_healthy_and_its_failure() -> None:
    ght.assert_healthy(reference.DelayLine(2, 40), seq_len=32, **SMALL)
    with pytest.raises(AssertionError, match="verdict: VANISHING"):
        ght.assert_healthy(reference.LinearRecurrence(2, 0.5), seq_len=16, **SMALL)


class NaNRecurrence(torch.nn.Module):
    """A linear recurrence whose weight holds a NaN: every gradient is NaN."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = reference.LinearRecurrence(2, 0.5)
        with torch.no_grad():
            self.inner.weight[0, 0] = math.nan
        self.input_size = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def test_finite_gradients() -> None:
    ght.assert_finite_gradients(reference.LinearRecurrence(2, 0.5), seq_len=8, **SMALL)
    with pytest.raises(AssertionError, match="verdict: NON_FINITE") as info:
        ght.assert_finite_gradients(NaNRecurrence(), seq_len=8, **SMALL)
    assert "first non-finite gradient at lag" in str(info.value)


def test_report_gates_and_baseline() -> None:
    report = gradhealth.audit(reference.LinearRecurrence(2, 0.9), seq_len=50, batch_size=4)
    ght.assert_report(report, min_horizon=44, max_decay_rate=0.11)  # decay rate ln 0.9 = -0.105
    with pytest.raises(AssertionError, match=r"decay rate -0.105\d*/step faster than -0.1/step"):
        ght.assert_report(report, max_decay_rate=0.1)
    worse = gradhealth.audit(reference.LinearRecurrence(2, 0.8), seq_len=50, batch_size=4)  # horizon 21
    ght.assert_report(worse, fail_on="exploding", baseline=report, max_horizon_drop="23")
    with pytest.raises(AssertionError, match=r"horizon 21 vs baseline 44: dropped 23 steps \(52.3%\), allowed 20%"):
        ght.assert_report(worse, fail_on="exploding", baseline=report, max_horizon_drop="20%")


def test_report_without_thresholds_asserts_healthy() -> None:
    report = gradhealth.audit(reference.LinearRecurrence(2, 0.5), seq_len=16, batch_size=4)
    with pytest.raises(AssertionError, match="assert_report\\(\\) failed for"):
        ght.assert_report(report)


def test_bad_arguments_name_their_source() -> None:
    with pytest.raises(ConfigError, match=r"invalid seq_len 0 from argument over= to assert_no_vanishing\(\)"):
        ght.assert_no_vanishing(reference.DelayLine(2, 3), over=0)
    with pytest.raises(ConfigError, match=r"invalid batch_size 'x' from argument batch_size= to assert_healthy\(\)"):
        ght.assert_healthy(reference.DelayLine(2, 3), batch_size="x")


def test_reproduce_line_reproduces_the_numbers() -> None:
    model = torch.nn.GRU(2, 4, batch_first=True)
    with pytest.raises(AssertionError) as info:
        ght.assert_healthy(model, seq_len=16, seed=3, **SMALL)
    call = str(info.value).splitlines()[-1].strip()
    assert call.startswith("gradhealth.audit(model, seq_len=16,")
    again = eval(call, {"gradhealth": gradhealth, "model": model})
    first = ght.Auditor().audit(model, seq_len=16, seed=3, **SMALL)
    assert again.profile.g == first.profile.g
    assert again.metrics == first.metrics


def test_auditor_check_uses_settings_gates() -> None:
    auditor = ght.Auditor().with_settings(seq_len=16, batch_size=4, min_horizon=12)
    assert auditor.settings.source("min_horizon") == "argument to with_settings()"
    auditor.check(reference.DelayLine(2, 12))  # fail_on defaults to exploding,non_finite with a horizon gate
    with pytest.raises(AssertionError, match="failed: horizon 7 < min 12 steps"):
        auditor.check(reference.LinearRecurrence(2, 0.5))
    with pytest.raises(AssertionError, match="verdict vanishing is in fail-on"):
        auditor.check(reference.DelayLine(2, 12), min_horizon=None, fail_on="vanishing")

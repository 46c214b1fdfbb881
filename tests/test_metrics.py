"""The metric functions against hand-computed profiles (the functional twin of the lag-profile probe)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from gradhealth.metrics import horizon_at, linear_fit, resolution_floor, rms_over_samples, summarize_profile

F64 = resolution_floor("float64")


def profile(values: np.ndarray, batch: int = 3) -> np.ndarray:
    return np.tile(values, (batch, 1))


def test_resolution_floor_is_tiny_over_eps() -> None:
    assert resolution_floor("float64") == pytest.approx(np.finfo(np.float64).tiny / np.finfo(np.float64).eps)
    assert resolution_floor("float32") == pytest.approx(np.finfo(np.float32).tiny / np.finfo(np.float32).eps)
    assert 1e-32 < resolution_floor("float32") < 1e-30


def test_rms_over_samples_and_overflow_safety() -> None:
    norms = np.array([[3.0, 1e300], [4.0, 1e300]])
    np.testing.assert_allclose(rms_over_samples(norms), [math.sqrt(12.5), 1e300])


def test_linear_fit_exact_line_and_r2() -> None:
    slope, r2 = linear_fit(np.arange(5.0), 2 - 0.3 * np.arange(5.0))
    assert slope == pytest.approx(-0.3)
    assert r2 == pytest.approx(1.0)
    assert linear_fit(np.array([1.0]), np.array([1.0])) == (None, None)


def test_horizon_last_crossing_on_non_monotone_profile() -> None:
    g = np.array([1.0, 0.001, 0.5, 0.02, 0.001, 0.0])
    assert horizon_at(g, 1e-2, -1.0) == (4.0, True)  # the last lag above eps is 3, not the first dip


def test_horizon_extrapolation_and_infinite() -> None:
    g = 0.99 ** np.arange(11.0)
    horizon, reached = horizon_at(g, 1e-2, math.log(0.99))
    assert not reached
    assert horizon == pytest.approx(math.log(1e-2) / math.log(0.99))
    assert horizon_at(np.ones(5), 1e-2, 0.0) == (math.inf, False)


def test_summarize_healthy_extrapolated() -> None:
    result = summarize_profile(profile(0.999 ** np.arange(51.0)), floor=F64)
    assert result.verdict == "healthy"
    assert "neutral" in result.tags  # 50 * 0.001 < ln 2
    assert result.metrics.horizon == pytest.approx(math.log(1e-2) / math.log(0.999))


def test_summarize_exploding_and_first_explode_lag() -> None:
    result = summarize_profile(profile(1.1 ** np.arange(61.0)), floor=F64)
    assert result.verdict == "exploding"
    assert result.metrics.first_explode_lag == 49
    assert result.metrics.peak_lag == 60


def test_summarize_non_finite_names_first_lag() -> None:
    values = 0.9 ** np.arange(21.0)
    norms = profile(values)
    norms[1, 7:] = np.nan
    result = summarize_profile(norms, floor=F64)
    assert result.verdict == "non_finite"
    assert result.metrics.first_nonfinite_lag == 7
    assert math.isnan(result.profile.g[7])
    assert result.metrics.decay_rate == pytest.approx(math.log(0.9))  # fitted on the finite lags


def test_summarize_non_finite_output_alone() -> None:
    result = summarize_profile(profile(0.5 ** np.arange(5.0)), floor=F64, output_is_finite=False)
    assert result.verdict == "non_finite"
    assert result.metrics.first_nonfinite_lag is None


def test_delayed_output_is_normalised_at_the_first_positive_lag() -> None:
    values = np.array([0.0, 0.0, 2.0, 1.0, 0.5, 0.25])  # a pure delay of 2 steps before the decay
    result = summarize_profile(profile(values), floor=F64)
    assert result.metrics.normalization == "first_positive"
    assert result.metrics.reference_lag == 2
    assert result.profile.g == pytest.approx([0.0, 0.0, 1.0, 0.5, 0.25, 0.125])
    assert result.metrics.peak_lag == 2
    assert result.metrics.decay_rate == pytest.approx(math.log(0.5), rel=1e-12)


def test_delayed_growth_is_exploding_not_capped_at_the_peak() -> None:
    # y_t = h_{t-1} with h_t = 1.1 h_{t-1} + x_t: G(0) = 0, G(k) = 1.1^(k-1); normalising at the peak would cap g
    # at 1 and hide the growth. At the first positive lag, g(k) = 1.1^(k-1) first reaches 100 at k = 50.
    values = np.concatenate([[0.0], 1.1 ** np.arange(60.0)])
    result = summarize_profile(profile(values), floor=F64)
    assert result.verdict == "exploding"
    assert result.metrics.first_explode_lag == 50 == 1 + math.ceil(math.log(100) / math.log(1.1))
    assert "transient_amplification" not in result.tags


def test_exploding_profile_is_not_transient_amplification() -> None:
    result = summarize_profile(profile(1.1 ** np.arange(61.0)), floor=F64)
    assert result.verdict == "exploding"
    assert "transient_amplification" not in result.tags


def test_transient_amplification_needs_a_rise_then_a_decay() -> None:
    k = np.arange(61.0)
    values = (1 + 4 * k) * 0.8**k  # rises to 3.2x at lag 4, then decays
    result = summarize_profile(profile(values), floor=F64)
    assert result.metrics.peak_lag == 4
    assert "transient_amplification" in result.tags


def test_zero_rate_within_roundoff_is_exactly_zero() -> None:
    # A neutral profile measured with float64 roundoff: a drift of half an ulp per step must not extrapolate
    # the horizon to ~1e16 steps (it did on AVX-512 CPUs).
    k = np.arange(11.0)
    values = np.exp(-0.37 * np.finfo(np.float64).eps * k)
    result = summarize_profile(profile(values), dtype="float64")
    assert result.metrics.decay_rate == 0.0
    assert result.metrics.decay_rate_tail == 0.0
    assert result.metrics.fit_r2 == 1.0
    assert result.metrics.horizon == math.inf
    assert not result.metrics.horizon_reached
    assert result.verdict == "healthy"
    assert "neutral" in result.tags


def test_small_real_rate_is_kept() -> None:
    values = 0.999 ** np.arange(101.0)
    result = summarize_profile(profile(values), dtype="float32")
    assert result.metrics.decay_rate == pytest.approx(math.log(0.999), rel=1e-9)
    assert result.metrics.horizon == pytest.approx(100 + math.log(1e-2 / 0.999**100) / math.log(0.999), rel=1e-9)


def test_trendless_oscillation_is_not_exponential() -> None:
    values = np.tile([1.0, 0.1], 30)[:59]  # symmetric: the fitted slope is 0 up to roundoff
    result = summarize_profile(profile(values), dtype="float64")
    assert result.metrics.decay_rate == pytest.approx(0.0, abs=1e-2)
    assert "non_exponential" in result.tags


def test_tail_rate_uses_the_resolved_range() -> None:
    # resolved down to lag 40, then below the float64 floor: the tail is lags 20..40, not the unresolved 50..100
    values = np.concatenate([0.5 ** np.arange(41.0), np.full(60, 1e-300)])
    result = summarize_profile(profile(values), dtype="float64")
    assert result.metrics.resolved_lags == 41
    assert result.metrics.decay_rate_tail == pytest.approx(math.log(0.5), rel=1e-12)


def test_floor_is_relative_to_the_reference_gradient() -> None:
    # The same profile at any absolute scale gives the same numbers when the floor is given in the same units.
    values = 0.9 ** np.arange(61.0)
    base = summarize_profile(profile(values), dtype="float16", floor=1e-6)
    scaled = summarize_profile(profile(values * 1e-9), dtype="float16", floor=1e-15)
    assert base.metrics == scaled.metrics
    assert base.metrics.relative_floor == pytest.approx(1e-6)


def test_floor_above_eps_censors_the_horizon() -> None:
    # g falls below the floor (2e-2 of G(0)) at lag 38 while still above eps = 1e-2: the horizon is >= 38, not 38
    values = 0.9 ** np.arange(61.0)
    result = summarize_profile(profile(values), dtype="float16", floor=2e-2)
    m = result.metrics
    assert m.horizon == 38 == math.floor(math.log(2e-2) / math.log(0.9)) + 1
    assert m.horizon_censored and m.horizon_1e3_censored
    assert result.verdict == "inconclusive"
    assert "censored_horizon" in result.tags
    # a floor between the two thresholds (0.9^k <= 2e-3 from lag 59): the crossing of 1e-2 at lag 44 is seen,
    # the crossing of 1e-3 (lag 66) is hidden: horizon@1e-3 >= 59
    clear = summarize_profile(profile(values), dtype="float16", floor=2e-3)
    assert clear.metrics.horizon == 44 and not clear.metrics.horizon_censored
    assert clear.metrics.horizon_1e3 == 59 and clear.metrics.horizon_1e3_censored
    assert clear.verdict == "vanishing"


def test_all_zero_gradient_in_half_precision_is_inconclusive() -> None:
    result = summarize_profile(np.zeros((2, 6)), dtype="float16")
    assert result.verdict == "inconclusive"
    assert "no_gradient" not in result.tags
    assert result.metrics.horizon_censored


def test_no_gradient_at_all() -> None:
    result = summarize_profile(np.zeros((2, 6)), floor=F64)
    assert result.verdict == "vanishing"
    assert result.metrics.horizon == 0
    assert "no_gradient" in result.tags


def test_underflow_below_floor_is_unresolved_not_structural() -> None:
    values = np.array([1.0, 1e-3, 1e-300, 1e-310, 0.0])
    result = summarize_profile(profile(values), floor=F64)
    assert result.profile.resolved == [True, True, False, False, False]  # a zero after underflow is underflow
    assert "unresolved_tail" in result.tags
    assert "finite_memory" not in result.tags
    assert result.metrics.resolved_lags == 2
    assert result.metrics.decay_rate == pytest.approx(math.log(1e-3))  # fitted on lags 0 and 1 only


def test_non_exponential_tag() -> None:
    k = np.arange(41.0)
    result = summarize_profile(profile(1 / (1 + k) ** 3), floor=F64)  # power law: curved in log space
    assert "non_exponential" not in result.tags or result.metrics.fit_r2 < 0.9
    wiggly = np.exp(-0.1 * k) * (1 + 0.99 * np.sin(k)) + 1e-9
    assert "non_exponential" in summarize_profile(profile(wiggly), floor=F64).tags


def test_quantiles_are_per_sample_log10_ratios() -> None:
    norms = np.array([[1.0, 0.1], [2.0, 2.0], [1.0, 1e-3]])
    result = summarize_profile(norms, floor=F64)
    assert result.profile.quantiles["q50"] == pytest.approx([0.0, -1.0])
    assert result.profile.quantiles["q10"] == pytest.approx([0.0, -3.0])
    assert result.profile.quantiles["q90"] == pytest.approx([0.0, 0.0])


def test_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"shape \[batch, lags\]"):
        summarize_profile(np.ones(4), floor=F64)


def test_trailing_zeros_after_a_tiny_value_are_underflow_not_structure() -> None:
    values = np.concatenate([0.5 ** np.arange(80.0), np.zeros(10)])  # 0.5^79 = 1.7e-24, then exact zeros
    result = summarize_profile(profile(values), floor=F64)
    assert "unresolved_tail" in result.tags
    assert "finite_memory" not in result.tags
    assert result.metrics.resolved_lags == 80
    assert result.metrics.decay_rate == pytest.approx(math.log(0.5))


def test_trailing_zeros_after_a_resolvable_value_are_structural() -> None:
    values = np.concatenate([0.5 ** np.arange(10.0), np.zeros(10)])  # cut off at 0.5^9 = 2e-3
    result = summarize_profile(profile(values), floor=F64)
    assert "finite_memory" in result.tags
    assert "unresolved_tail" not in result.tags
    assert result.metrics.resolved_lags == 20


@pytest.mark.parametrize("level", [0.0, 0.1, 0.25, 0.5, 0.9, 1.0])
def test_nanquantile_nearest_equals_numpy(level: float) -> None:
    """The vectorised nearest-rank quantile picks the same sample as numpy's, with NaNs, infinities, ties, halves
    (4 values at level 0.5: rank 1.5, rounded to even) and all-NaN columns."""
    from gradhealth.metrics import nanquantile_nearest

    rng = np.random.default_rng(0)
    values = rng.standard_normal((5, 40))
    values[rng.random(values.shape) < 0.3] = np.nan
    values[:, 0] = np.nan
    values[0, 1], values[1, 2], values[2, 3] = np.inf, -np.inf, np.nan
    values[:, 4] = 1.5  # ties
    values[:, 5] = [3.0, 1.0, 2.0, 0.0, -1.0]
    values[:, 6] = [4.0, 1.0, np.nan, 3.0, 2.0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy warns about the all-NaN column
        expected = np.nanquantile(values, level, axis=0, method="nearest")
    np.testing.assert_array_equal(nanquantile_nearest(values, level), expected)

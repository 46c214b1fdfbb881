"""The lag-profile metrics, as pure functions of per-sample gradient norms (the functional twin of the probe).

Given N_b(k) = ||∂L/∂x_b[t_out - k]|| for samples b and lags k = 0..K, :func:`summarize_profile` computes every
number of the metric contract (docs/metrics.md):

- G(k) = sqrt(mean_b N_b(k)²); g(k) = G(k)/G(r), where the reference lag r is the first lag with a resolved,
  positive G (lag 0 unless the output reaches the input only after a delay);
- lags with non-finite G, or 0 < G(k) <= the resolution floor, are *unresolved* and excluded from fits; exact
  zeros are structural (finite memory) only when they follow a clearly resolved value;
- decay_rate: least-squares slope of ln g(k) over resolved lags (with R²); decay_rate_tail: the same over the
  second half of the resolved range (the asymptotic rate); a rate within the numerical resolution of the probe
  dtype (:func:`rate_resolution`) is exactly 0;
  timescale τ = -1/decay_rate_tail; half_life = ln 2 · τ;
- horizon at ε: 1 + the last lag k <= K with g(k) >= ε. If that is K itself the horizon is not reached and is
  extrapolated as K + ln(ε/g(K))/decay_rate_tail, but only from a tail fit that deserves it (at least
  :data:`MIN_EXTRAPOLATION_LAGS` resolved lags, R² >= 0.9; the lag probe also asks for a tail-rate interval
  resolved away from 0): otherwise it is ``inf``, "not reached within K", tagged no_extrapolation. If the
  profile drops below the resolution floor while still above ε, the horizon is *censored*: a lower bound;
- verdict: non_finite if any gradient is NaN/Inf; else exploding if max g >= 100; else inconclusive if the
  horizon is censored short of K; else finite_memory if the model is not a recurrence and the profile is cut
  off by exact zeros (a finite receptive field); else vanishing if the horizon is reached within K; else healthy;
- a direct input-to-output path (g falls 10x or more in the first step, then decays at least 10x more slowly:
  a skip connection, a state-space model's D term) hides the recurrent memory behind a lag-0 horizon of 1: the
  recurrent path's horizon (``horizon_recurrent``, g normalised at the first lag after the direct path,
  ``recurrent_reference_lag``) is reported beside it and decides vanishing/healthy (``verdict_basis``).

    >>> import numpy as np
    >>> norms = np.tile(0.9 ** np.arange(61.0), (4, 1))
    >>> result = summarize_profile(norms, dtype="float64")
    >>> result.metrics.horizon, bool(abs(result.metrics.decay_rate - np.log(0.9)) < 1e-12)
    (44.0, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gradhealth.report import VERDICT_SEVERITY, LagMetrics, Profile

__all__ = [
    "DIRECT_PATH_DROP",
    "DTYPE_LIMITS",
    "QUANTILE_LEVELS",
    "SUMMARIES",
    "ProfileSummary",
    "horizon_at",
    "linear_fit",
    "median_over_samples",
    "rate_resolution",
    "resolution_flags",
    "resolution_floor",
    "rms_over_samples",
    "summarize_profile",
]

#: (smallest normal number, machine epsilon) of each probe dtype; bfloat16 has float32's range.
DTYPE_LIMITS: dict[str, tuple[float, float]] = {
    "float64": (2.2250738585072014e-308, 2.220446049250313e-16),
    "float32": (1.1754943508222875e-38, 1.1920928955078125e-07),
    "bfloat16": (1.1754943508222875e-38, 0.0078125),
    "float16": (6.103515625e-05, 0.0009765625),
    "complex128": (2.2250738585072014e-308, 2.220446049250313e-16),
    "complex64": (1.1754943508222875e-38, 1.1920928955078125e-07),
}

#: Dtypes too narrow to tell "no gradient at all" from underflow of the whole profile.
NARROW_DTYPES = frozenset({"float16", "bfloat16"})

#: Per-sample quantile levels reported for log10 ratios.
QUANTILE_LEVELS = {"q10": 0.1, "q50": 0.5, "q90": 0.9}

#: R² below this tags a profile non_exponential.
R2_EXPONENTIAL = 0.9

#: An unreached horizon is extrapolated only from a tail fit over at least this many resolved lags with an R² of at
#: least :data:`R2_EXPONENTIAL` (a fit over a handful of noisy lags gave "inf (extrapolated)" on trained models);
#: otherwise it is reported as not reached within K (``inf``) and tagged ``no_extrapolation``.
MIN_EXTRAPOLATION_LAGS = 8

#: Trailing exact zeros count as structural (finite memory) only if the last positive g before them is at least
#: this: kernels underflow to exact zero long before tiny/eps (float32 oneDNN LSTMs at g ~ 1e-22), while a
#: genuine memory cut-off (a delay line, a detached state) drops from a resolvable value.
STRUCTURAL_ZERO_MIN = 1e-8

#: A peak of g above the reference at or above this, followed by decay, tags transient_amplification (a few
#: percent is ordinary LSTM behaviour: x_{t-1} reaches y_t through more paths than x_t).
TRANSIENT_GAIN = 1.1

#: How the per-sample norms are summarised into G(k): the root mean square (the metric contract) or the median
#: (robust to a few outlying samples; see docs/metrics.md).
SUMMARIES = ("rms", "median")

#: A direct input-to-output path (a skip connection, the D term of a state-space model): g falls by at least this
#: factor from the reference lag to the next one, and the next step falls at least 1/this less steeply. The
#: recurrent path's horizon is then measured from the first lag after the direct path as well.
DIRECT_PATH_DROP = 0.1

#: Numerical resolution of a decay rate, in units of the probe dtype's epsilon per step: one step of BPTT
#: multiplies a gradient by a Jacobian whose representation and product are exact to about an ulp, so a
#: per-step gain (and a rate) is known to about RATE_ULPS·eps.
RATE_ULPS = 2.0

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ProfileSummary:
    """Everything derived from one direction's per-sample norms."""

    verdict: str
    metrics: LagMetrics
    profile: Profile
    tags: list[str]


def _limits(dtype: str) -> tuple[float, float]:
    try:
        return DTYPE_LIMITS[dtype]
    except KeyError:
        raise ValueError(f"unknown probe dtype {dtype!r}; known: {', '.join(DTYPE_LIMITS)}") from None


def resolution_floor(dtype: str) -> float:
    """tiny/eps of a floating dtype: gradient norms at or below it cannot be told from underflow.

    The floor is absolute, in the units the backward pass computed in; the probe recipe scales its loss so the
    gradients sit well above it and divides the floor by the same scale (see
    :func:`gradhealth.probes._input_gradients.input_gradient_norms`).
    """
    tiny, eps = _limits(dtype)
    return tiny / eps


def rate_resolution(dtype: str) -> float:
    """The smallest per-step rate the probe dtype resolves: :data:`RATE_ULPS` · eps.

    A fitted rate whose size is at or below this is exactly zero (a neutral profile); otherwise roundoff of a
    neutral recurrence (ρ = 1) would extrapolate the horizon to 10^16 steps on one CPU and infinity on another.
    """
    return RATE_ULPS * _limits(dtype)[1]


def rms_over_samples(norms: Array) -> Array:
    """G(k) = sqrt(mean_b N_b(k)²), scaled per lag so huge or tiny norms neither overflow nor underflow."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore", under="ignore"):
        scale = np.max(np.abs(norms), axis=0)
        safe = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        rms = safe * np.sqrt(np.mean((norms / safe) ** 2, axis=0))
    rms[~np.all(np.isfinite(norms), axis=0)] = np.nan
    return rms


def median_over_samples(norms: Array) -> Array:
    """G(k) = median_b N_b(k) (NaN at a lag with a non-finite norm): the robust summary."""
    big = np.median(np.where(np.isfinite(norms), norms, 0.0), axis=0)
    big[~np.all(np.isfinite(norms), axis=0)] = np.nan
    return big


def linear_fit(x: Array, y: Array) -> tuple[float | None, float | None]:
    """Least-squares slope of y on x and its R² (``None, None`` with fewer than two points)."""
    if x.size < 2:
        return None, None
    xc = x - x.mean()
    yc = y - y.mean()
    slope = float(np.dot(xc, yc) / np.dot(xc, xc))
    ss_tot = float(np.dot(yc, yc))
    residual = yc - slope * xc
    ss_res = float(np.dot(residual, residual))
    scale = max(ss_tot, float(np.dot(y, y)), 1e-300)
    r2 = 1.0 if ss_tot <= 1e-24 * scale else 1.0 - ss_res / ss_tot
    return slope, r2


def _log_fit(lags: Array, log_g: Array, step_resolution: float) -> tuple[float | None, float | None]:
    """Slope and R² of ln g on k, with a slope inside the numerical resolution set to exactly 0.

    Roundoff changes each step's gain by up to ``step_resolution`` (relative), which moves ln g(k) by up to
    step_resolution·k: a systematic bias shifts the slope by at most step_resolution, whatever the window. A
    fitted slope no larger than that is zero as far as the probe can tell. The R² of a zero slope is 1 when ln g
    is flat within that error (a neutral exponential), else 0 (a trendless, curved profile).
    """
    slope, r2 = linear_fit(lags, log_g)
    if slope is None:
        return None, None
    if abs(slope) <= step_resolution:
        xc = lags - lags.mean()
        yc = log_g - log_g.mean()
        allowed = step_resolution**2 * (float(np.dot(xc, xc)) + lags.size)
        return 0.0, 1.0 if float(np.dot(yc, yc)) <= allowed else 0.0
    return slope, r2


def horizon_at(g: Array, eps: float, rate_tail: float | None) -> tuple[float, bool]:
    """Horizon at ε and whether it was reached within K (see the module docstring)."""
    big = np.nonzero(np.isfinite(g) & (g >= eps))[0]
    if big.size == 0:
        return 0.0, True
    last = int(big[-1])
    max_lag = g.size - 1
    if last < max_lag:
        return float(last + 1), True
    if rate_tail is None or rate_tail >= 0:
        return math.inf, False
    return max_lag + math.log(eps / float(g[max_lag])) / rate_tail, False


def _is_censored(g: Array, resolved: npt.NDArray[np.bool_], eps: float, relative_floor: float) -> bool:
    """Whether the crossing of ε was hidden by the floor: the profile left the resolved range at a level that
    may still be above ε (the relative floor is at or above ε) before reaching a resolved value below ε."""
    if relative_floor < eps:
        return False
    above = np.nonzero(resolved & (g >= eps))[0]
    start = int(above[-1]) + 1 if above.size else 0
    after = np.arange(g.size) >= start
    first_below = np.nonzero(after & resolved & (g < eps))[0]
    stop = int(first_below[0]) if first_below.size else g.size
    return bool(np.any(~resolved[start:stop]))


def _quantiles(norms: Array, ref: int) -> dict[str, list[float]]:
    """Per-lag quantiles over samples of log10(N_b(k) / N_b(ref)) (samples with N_b(ref) = 0 are left out)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.log10(norms / norms[:, ref : ref + 1])
    return {key: nanquantile_nearest(ratios, level).tolist() for key, level in QUANTILE_LEVELS.items()}


def nanquantile_nearest(values: Array, level: float) -> Array:
    """``np.nanquantile(values, level, axis=0, method="nearest")``, the same numbers, vectorised over the columns
    (numpy applies a Python function to each column). An all-NaN column gives NaN.

    The nearest-rank sample of a column with n non-NaN values is its sorted value number round((n - 1)·level),
    rounding halves to even as ``np.around`` does; ``np.sort`` puts NaN last, after the n values."""
    ordered = np.sort(values, axis=0)
    count = np.sum(~np.isnan(values), axis=0)
    index = np.around((count - 1) * level).astype(np.intp)
    picked = np.take_along_axis(ordered, np.clip(index, 0, None)[None], axis=0)[0]
    return np.where(count > 0, picked, np.nan)


def _direct_path_end(g: Array, positive: npt.NDArray[np.bool_], ref: int) -> int | None:
    """The first lag after a direct input-to-output path, or ``None`` when the profile shows none.

    A direct path (a skip connection, the D term of a state-space model) makes g(ref) much larger than what the
    recurrence carries: g falls by :data:`DIRECT_PATH_DROP` or more in one step, then decays far more slowly.
    A plain fast decay (g = 0.05^k) falls at the same rate every step and is not one.
    """
    first, second = ref + 1, ref + 2
    if second >= g.size or not (positive[first] and positive[second]):
        return None
    drop, next_drop = g[first] / g[ref], g[second] / g[first]
    if drop <= DIRECT_PATH_DROP and next_drop >= drop / DIRECT_PATH_DROP:
        return first
    return None


def resolution_flags(big_g: Array, floor: float) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(finite, resolved) flags per lag.

    Unresolved: non-finite, positive at or below the floor, or an exact zero that follows an unresolved lag or
    a positive value too small to be a structural cut-off (kernels underflow to exact zero).
    """
    finite = np.isfinite(big_g)
    resolved = finite & ~((big_g > 0) & (big_g <= floor))
    positive = np.nonzero(resolved & (big_g > 0))[0]
    if positive.size:
        reference = float(np.max(big_g[positive]))
        for k in range(int(positive[0]) + 1, big_g.size):
            if big_g[k] != 0 or not finite[k]:
                continue
            previous = big_g[k - 1]
            cut_from_resolved = resolved[k - 1] and (previous >= STRUCTURAL_ZERO_MIN * reference or previous == 0)
            resolved[k] = bool(cut_from_resolved)
    return finite, resolved


def summarize_profile(
    norms: npt.ArrayLike,
    *,
    dtype: str = "float64",
    floor: float | None = None,
    eps: float = 1e-2,
    eps_secondary: float = 1e-3,
    explode_threshold: float = 100.0,
    output_is_finite: bool = True,
    recurrent: bool = True,
    summary: str = "rms",
) -> ProfileSummary:
    """Compute the profile, metrics, verdict and tags from per-sample norms ``[B, K + 1]``.

    Args:
        norms: N_b(k), one row per sample, one column per lag 0..K.
        dtype: the probe dtype the gradients were computed in (sets the floor and the rate resolution).
        floor: the resolution floor in the units of ``norms`` (default :func:`resolution_floor` of ``dtype``;
            the probe passes it divided by its loss scale).
        eps: horizon threshold ε.
        eps_secondary: second horizon threshold.
        explode_threshold: g(k) at or above this is exploding.
        output_is_finite: False if the model's output at the loss step was NaN/Inf.
        recurrent: False when the model is known not to be a recurrence (attention, convolution, per-step
            layers): a profile cut off by exact zeros is then a finite receptive field (verdict
            ``finite_memory``), not a vanishing product of Jacobians.
        summary: ``"rms"`` (G is the root mean square over samples) or ``"median"`` (robust to outliers).

    Raises:
        ValueError: ``norms`` is not ``[batch, lags]`` or the dtype is unknown.
    """
    n = np.asarray(norms, dtype=np.float64)
    if n.ndim != 2 or n.shape[1] < 1:
        raise ValueError(f"norms must have shape [batch, lags], got {n.shape}")
    floor = resolution_floor(dtype) if floor is None else floor
    max_lag = n.shape[1] - 1
    lags = np.arange(max_lag + 1)
    if summary not in SUMMARIES:
        raise ValueError(f"unknown summary {summary!r}; known: {', '.join(SUMMARIES)}")
    big_g = rms_over_samples(n) if summary == "rms" else median_over_samples(n)
    finite, resolved = resolution_flags(big_g, floor)
    positive = resolved & (big_g > 0)

    ref = int(np.argmax(positive)) if positive.any() else 0
    if positive.any():
        g = big_g / big_g[ref]
        g_peak = big_g / np.max(big_g[positive])
        relative_floor = floor / float(big_g[ref])
    else:  # the output does not depend on the input at all
        g = np.where(finite, 0.0, np.nan)
        g_peak = g.copy()
        relative_floor = math.inf

    peak_lag = int(np.argmax(np.where(positive, g, -np.inf))) if positive.any() else 0
    peak_gain = float(g[peak_lag]) if positive.any() else 0.0
    exploding_lags = np.nonzero(positive & (g >= explode_threshold))[0]
    first_explode = int(exploding_lags[0]) if exploding_lags.size else None

    with np.errstate(divide="ignore"):
        log_g = np.log(np.where(positive, g, 1.0))
    step_resolution = rate_resolution(dtype)
    rate, r2 = _log_fit(lags[positive].astype(float), log_g[positive], step_resolution)
    last_positive = int(np.nonzero(positive)[0][-1]) if positive.any() else 0
    tail = positive & (lags >= ref + math.ceil((last_positive - ref) / 2))
    rate_tail, tail_r2 = _log_fit(lags[tail].astype(float), log_g[tail], step_resolution)
    fit_deserves_extrapolation = (
        int(tail.sum()) >= MIN_EXTRAPOLATION_LAGS and tail_r2 is not None and tail_r2 >= R2_EXPONENTIAL
    )
    extrapolation_rate = rate_tail if fit_deserves_extrapolation else None
    timescale = (-1.0 / rate_tail if rate_tail < 0 else math.inf) if rate_tail is not None else None
    half_life = math.log(2) * timescale if timescale is not None else None

    if not positive.any() and dtype in NARROW_DTYPES:
        resolved[:] = False  # no gradient at all in float16/bfloat16 cannot be told from underflow
    g_for_horizon = np.where(resolved, g, np.where(finite, 0.0, np.nan))
    horizon, reached = horizon_at(g_for_horizon, eps, extrapolation_rate)
    horizon2, reached2 = horizon_at(g_for_horizon, eps_secondary, extrapolation_rate)
    censored = reached and _is_censored(g, resolved, eps, relative_floor)
    censored2 = reached2 and _is_censored(g, resolved, eps_secondary, relative_floor)

    recurrent_ref = _direct_path_end(g, positive, ref)
    horizon_recurrent: float | None = None
    recurrent_reached = True
    if recurrent_ref is not None:
        g_recurrent = np.where(lags >= recurrent_ref, g_for_horizon / g[recurrent_ref], 0.0)
        horizon_recurrent, recurrent_reached = horizon_at(g_recurrent, eps, extrapolation_rate)

    nonfinite_lags = np.nonzero(~np.all(np.isfinite(n), axis=0))[0]
    first_nonfinite = int(nonfinite_lags[0]) if nonfinite_lags.size else None
    if first_nonfinite is not None or not output_is_finite:
        verdict = "non_finite"
    elif first_explode is not None:
        verdict = "exploding"
    elif censored and horizon <= max_lag:
        verdict = "inconclusive"
    elif recurrent_ref is not None:
        verdict = "vanishing" if recurrent_reached else "healthy"
    elif reached:
        verdict = "vanishing"
    else:
        verdict = "healthy"
    structural_cutoff = positive.any() and bool(np.any(resolved[last_positive:] & (big_g[last_positive:] == 0)))
    if verdict == "vanishing" and structural_cutoff and not recurrent:
        verdict = "finite_memory"
    assert verdict in VERDICT_SEVERITY

    tags: list[str] = []
    decays_after_peak = peak_lag < last_positive and g[last_positive] * TRANSIENT_GAIN <= peak_gain
    if peak_lag > ref and peak_gain >= TRANSIENT_GAIN and decays_after_peak:
        tags.append("transient_amplification")
    if r2 is not None and r2 < R2_EXPONENTIAL:
        tags.append("non_exponential")
    if rate_tail is not None and abs(rate_tail) * max_lag < math.log(2):
        tags.append("neutral")
    if structural_cutoff:
        tags.append("finite_memory")
    if np.any(finite & ~resolved):
        tags.append("unresolved_tail")
    if censored or censored2:
        tags.append("censored_horizon")
    if not reached2 and rate_tail is not None and rate_tail < 0 and not fit_deserves_extrapolation:
        tags.append("no_extrapolation")
    if not positive.any() and resolved.any():
        tags.append("no_gradient")

    metrics = LagMetrics(
        horizon=horizon,
        horizon_reached=reached,
        horizon_1e3=horizon2,
        horizon_1e3_reached=reached2,
        decay_rate=rate,
        decay_rate_tail=rate_tail,
        fit_r2=r2,
        timescale=timescale,
        half_life=half_life,
        peak_lag=peak_lag,
        peak_gain=peak_gain,
        first_explode_lag=first_explode,
        first_nonfinite_lag=first_nonfinite,
        normalization="lag0" if ref == 0 else "first_positive",
        resolved_lags=int(resolved.sum()),
        max_lag=max_lag,
        reference_lag=ref,
        horizon_censored=censored,
        horizon_1e3_censored=censored2,
        relative_floor=relative_floor,
        horizon_recurrent=horizon_recurrent,
        horizon_recurrent_reached=recurrent_reached,
        recurrent_reference_lag=recurrent_ref,
        verdict_basis="recurrent" if recurrent_ref is not None else "reference",
    )
    profile = Profile(
        lags=lags.tolist(),
        grad_norm=big_g.tolist(),
        g=g.tolist(),
        g_peak=g_peak.tolist(),
        resolved=resolved.tolist(),
        quantiles=_quantiles(n, ref),
    )
    return ProfileSummary(verdict, metrics, profile, tags)

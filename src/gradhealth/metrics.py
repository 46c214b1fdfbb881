"""The lag-profile metrics, as pure functions of per-sample gradient norms (the functional twin of the probe).

Given N_b(k) = ||∂L/∂x_b[t_out - k]|| for samples b and lags k = 0..K, :func:`summarize_profile` computes every
number of the metric contract (docs/metrics.md):

- G(k) = sqrt(mean_b N_b(k)²), g(k) = G(k)/G(0) (or G(k)/max G when G(0) is not usable);
- lags with non-finite G or 0 < G(k) <= tiny/eps of the probe dtype are *unresolved* (below the resolution
  floor) and excluded from fits; exact zeros are structural (finite memory);
- decay_rate: least-squares slope of ln g(k) over resolved lags (with R²); decay_rate_tail: the same over the
  second half; timescale τ = -1/decay_rate_tail; half_life = ln 2 · τ;
- horizon at ε: 1 + the last lag k <= K with g(k) >= ε; if that is K itself the horizon is not reached and is
  extrapolated as K + ln(ε/g(K))/decay_rate_tail;
- verdict: non_finite if any gradient is NaN/Inf; else exploding if max g >= 100; else vanishing if the horizon
  is reached within K; else healthy.

    >>> import numpy as np
    >>> norms = np.tile(0.9 ** np.arange(61.0), (4, 1))
    >>> result = summarize_profile(norms, floor=resolution_floor("float64"))
    >>> result.metrics.horizon, round(result.metrics.decay_rate, 12) == round(np.log(0.9), 12)
    (44.0, True)
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gradhealth.report import VERDICT_SEVERITY, LagMetrics, Profile

__all__ = [
    "QUANTILE_LEVELS",
    "ProfileSummary",
    "horizon_at",
    "linear_fit",
    "resolution_floor",
    "rms_over_samples",
    "summarize_profile",
]

#: Per-sample quantile levels reported for log10 ratios.
QUANTILE_LEVELS = {"q10": 0.1, "q50": 0.5, "q90": 0.9}

#: R² below this tags a profile non_exponential.
R2_EXPONENTIAL = 0.9

#: Trailing exact zeros count as structural (finite memory) only if the last positive g before them is at least
#: this: kernels underflow to exact zero long before tiny/eps (float32 oneDNN LSTMs at g ~ 1e-22), while a
#: genuine memory cut-off (a delay line, a detached state) drops from a resolvable value.
STRUCTURAL_ZERO_MIN = 1e-8

#: A peak of g at a lag > 0 at or above this tags transient_amplification (a few percent is ordinary LSTM
#: behaviour: x_{t-1} reaches y_t through more paths than x_t).
TRANSIENT_GAIN = 1.1

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ProfileSummary:
    """Everything derived from one direction's per-sample norms."""

    verdict: str
    metrics: LagMetrics
    profile: Profile
    tags: list[str]


def resolution_floor(dtype: str) -> float:
    """tiny/eps of a floating dtype: gradient norms at or below it cannot be told from underflow."""
    info = np.finfo(np.float32 if dtype in ("bfloat16", "float16") else np.dtype(dtype))
    if dtype == "bfloat16":
        return float(np.finfo(np.float32).tiny / 2.0**-7)
    if dtype == "float16":
        return float(np.finfo(np.float16).tiny / np.finfo(np.float16).eps)
    return float(info.tiny / info.eps)


def rms_over_samples(norms: Array) -> Array:
    """G(k) = sqrt(mean_b N_b(k)²), scaled per lag so huge norms do not overflow."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        scale = np.max(np.abs(norms), axis=0)
        safe = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        rms = safe * np.sqrt(np.mean((norms / safe) ** 2, axis=0))
    rms[~np.all(np.isfinite(norms), axis=0)] = np.nan
    return rms


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


def _quantiles(norms: Array, ref: int) -> dict[str, list[float]]:
    """Per-lag quantiles over samples of log10(N_b(k) / N_b(ref)) (samples with N_b(ref) = 0 are left out)."""
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN lags give NaN, which is the honest answer
        ratios = np.log10(norms / norms[:, ref : ref + 1])
        return {
            key: np.nanquantile(ratios, level, axis=0, method="nearest").tolist()
            for key, level in QUANTILE_LEVELS.items()
        }


def _underflowed_zeros(big_g: Array, candidates: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """The trailing exact zeros that follow a positive value too small to be a structural cut-off."""
    flags = np.zeros(big_g.shape, dtype=bool)
    positive = np.nonzero(candidates & (big_g > 0))[0]
    if positive.size == 0:
        return flags
    last = int(positive[-1])
    reference = np.max(big_g[positive])
    if big_g[last] < STRUCTURAL_ZERO_MIN * reference:
        flags[last + 1 :] = big_g[last + 1 :] == 0
    return flags


def summarize_profile(
    norms: npt.ArrayLike,
    *,
    floor: float,
    eps: float = 1e-2,
    eps_secondary: float = 1e-3,
    explode_threshold: float = 100.0,
    output_is_finite: bool = True,
) -> ProfileSummary:
    """Compute the profile, metrics, verdict and tags from per-sample norms ``[B, K + 1]``.

    Args:
        norms: N_b(k), one row per sample, one column per lag 0..K.
        floor: the resolution floor of the probe dtype (:func:`resolution_floor`).
        eps: horizon threshold ε.
        eps_secondary: second horizon threshold.
        explode_threshold: g(k) at or above this is exploding.
        output_is_finite: False if the model's output at the loss step was NaN/Inf.
    """
    n = np.asarray(norms, dtype=np.float64)
    if n.ndim != 2 or n.shape[1] < 1:
        raise ValueError(f"norms must have shape [batch, lags], got {n.shape}")
    max_lag = n.shape[1] - 1
    lags = np.arange(max_lag + 1)
    big_g = rms_over_samples(n)
    finite = np.isfinite(big_g)
    underflow = finite & (big_g > 0) & (big_g <= floor)
    underflow |= _underflowed_zeros(big_g, finite & ~underflow)
    resolved = finite & ~underflow
    positive = resolved & (big_g > 0)

    ref = 0 if positive[0] else (int(np.argmax(np.where(positive, big_g, -np.inf))) if positive.any() else 0)
    normalization = "lag0" if ref == 0 else "peak"
    if positive.any():
        g = big_g / big_g[ref]
        g_peak = big_g / np.max(big_g[positive])
    else:  # the output does not depend on the input at all
        g = np.where(finite, 0.0, np.nan)
        g_peak = g.copy()

    peak_lag = int(np.argmax(np.where(positive, g, -np.inf))) if positive.any() else 0
    peak_gain = float(g[peak_lag]) if positive.any() else 0.0
    exploding_lags = np.nonzero(positive & (g >= explode_threshold))[0]
    first_explode = int(exploding_lags[0]) if exploding_lags.size else None

    with np.errstate(divide="ignore"):
        log_g = np.log(np.where(positive, g, 1.0))
    rate, r2 = linear_fit(lags[positive].astype(float), log_g[positive])
    tail = positive & (lags >= math.ceil(max_lag / 2))
    rate_tail, _ = linear_fit(lags[tail].astype(float), log_g[tail])
    timescale = (-1.0 / rate_tail if rate_tail < 0 else math.inf) if rate_tail is not None else None
    half_life = math.log(2) * timescale if timescale is not None else None

    g_for_horizon = np.where(resolved, g, np.where(finite, 0.0, np.nan))
    horizon, reached = horizon_at(g_for_horizon, eps, rate_tail)
    horizon2, reached2 = horizon_at(g_for_horizon, eps_secondary, rate_tail)

    nonfinite_lags = np.nonzero(~np.all(np.isfinite(n), axis=0))[0]
    first_nonfinite = int(nonfinite_lags[0]) if nonfinite_lags.size else None
    if first_nonfinite is not None or not output_is_finite:
        verdict = "non_finite"
    elif first_explode is not None:
        verdict = "exploding"
    elif reached:
        verdict = "vanishing"
    else:
        verdict = "healthy"
    assert verdict in VERDICT_SEVERITY

    tags: list[str] = []
    if peak_lag > 0 and peak_gain >= TRANSIENT_GAIN and normalization == "lag0":
        tags.append("transient_amplification")
    if r2 is not None and r2 < R2_EXPONENTIAL:
        tags.append("non_exponential")
    if rate_tail is not None and abs(rate_tail) * max_lag < math.log(2):
        tags.append("neutral")
    support = np.nonzero(positive)[0]
    if support.size and np.any(resolved[support[-1] :] & (big_g[support[-1] :] == 0)):
        tags.append("finite_memory")
    if underflow.any():
        tags.append("unresolved_tail")
    if not positive.any():
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
        normalization=normalization,
        resolved_lags=int(resolved.sum()),
        max_lag=max_lag,
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

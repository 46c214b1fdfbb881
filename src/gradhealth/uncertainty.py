"""How sure each headline number is: a seeded bootstrap over the probe's samples (no extra backward pass).

The lag probe measures one norm N_b(k) per sample b and lag k; every headline number is a function of the
profile G(k) = sqrt(mean_b N_b(k)²). Resampling the B samples with replacement R times (R =
``bootstrap_samples``, 200 by default) and recomputing each number on every resample gives its sampling
distribution; the interval at ``level`` is the percentile interval of that distribution, shifted by the
bootstrap's estimate of the bias (median of the resamples minus the point value), and widened to contain the
point estimate. Horizons are counted in whole steps, so their bounds are rounded outwards.

Everything is vectorised over resamples (one ``[R, B] @ [B, K + 1]`` product gives every resampled profile),
with the point estimate's resolution decisions (reference lag, resolved lags, fit windows) held fixed: the
interval says how much the numbers move with the probe's random draws, not whether the floor moves.

    >>> import numpy as np
    >>> from gradhealth.metrics import summarize_profile
    >>> rng = np.random.default_rng(0)
    >>> norms = 0.9 ** np.arange(61.0) * rng.lognormal(0.0, 0.3, size=(32, 61))
    >>> summary = summarize_profile(norms)
    >>> intervals = profile_intervals(norms, summary.metrics, summary.profile.resolved)
    >>> low, high = intervals["horizon"]
    >>> bool(low <= summary.metrics.horizon <= high)
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gradhealth.metrics import rate_resolution
from gradhealth.report import LagMetrics

__all__ = [
    "DEFAULT_LEVEL",
    "DEFAULT_SAMPLES",
    "INTERVAL_METRICS",
    "MIN_SAMPLES_FOR_OUTLIERS",
    "FewSampleVerdict",
    "bootstrap_profiles",
    "few_sample_verdict",
    "profile_intervals",
    "withhold_unresolved_extrapolation",
]

#: The default interval level and number of bootstrap resamples (the settings table's defaults).
DEFAULT_LEVEL = 0.9
DEFAULT_SAMPLES = 200

#: The metrics that carry an interval, in the order reports show them.
INTERVAL_METRICS = (
    "horizon",
    "horizon_1e3",
    "decay_rate",
    "decay_rate_tail",
    "timescale",
    "half_life",
    "peak_lag",
    "peak_gain",
)

#: Metrics counted in whole steps: their bounds are rounded outwards.
_STEP_METRICS = frozenset({"horizon", "horizon_1e3", "peak_lag"})

#: The smallest value each metric can take (g is 1 at the reference lag, so the peak gain is at least 1).
_FLOORS = {"horizon": 0.0, "horizon_1e3": 0.0, "peak_lag": 0.0, "peak_gain": 1.0, "timescale": 0.0, "half_life": 0.0}

Array = npt.NDArray[np.float64]


def bootstrap_profiles(norms: Array, samples: int, seed: int, summary: str = "rms") -> Array:
    """G(k) of ``samples`` bootstrap resamples of the rows of ``norms`` ``[B, K + 1]``: ``[samples, K + 1]``.

    For the RMS each lag is scaled by its largest norm before squaring, so huge or tiny norms neither overflow nor
    underflow (as :func:`gradhealth.metrics.rms_over_samples`); ``summary="median"`` takes medians instead.
    """
    batch = norms.shape[0]
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, batch, size=(samples, batch))
    if summary == "median":
        return np.asarray(np.median(norms[picks], axis=1), dtype=np.float64)
    flat = (np.arange(samples)[:, None] * batch + picks).ravel()
    counts = np.bincount(flat, minlength=samples * batch).reshape(samples, batch).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore", under="ignore"):
        scale = np.max(norms, axis=0)
        safe = np.where(scale > 0, scale, 1.0)
        return safe * np.sqrt(counts @ ((norms / safe) ** 2) / batch)


def _fit_slopes(lags: Array, log_g: Array, mask: npt.NDArray[np.bool_], resolution: float) -> Array | None:
    """Least-squares slopes of every row of ``log_g`` over the lags in ``mask`` (``None`` with < 2 lags)."""
    x = lags[mask]
    if x.size < 2:
        return None
    xc = x - x.mean()
    y = log_g[:, mask]
    slopes = (y - y.mean(axis=1, keepdims=True)) @ xc / float(xc @ xc)
    return np.where(np.abs(slopes) <= resolution, 0.0, slopes)


def _horizons(g: Array, eps: float, rate_tail: Array | None) -> Array:
    """The horizon at ε of every row of ``g`` (as :func:`gradhealth.metrics.horizon_at`)."""
    max_lag = g.shape[1] - 1
    above = np.isfinite(g) & (g >= eps)
    has = above.any(axis=1)
    last = max_lag - np.argmax(above[:, ::-1], axis=1)
    horizons = np.where(has, last + 1.0, 0.0)
    beyond = has & (last == max_lag)
    if beyond.any():
        extrapolated = np.full(g.shape[0], math.inf)
        if rate_tail is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                decaying = rate_tail < 0
                level = np.log(eps / g[:, max_lag])
                extrapolated = np.where(decaying, max_lag + level / np.where(decaying, rate_tail, -1.0), math.inf)
        horizons = np.where(beyond, extrapolated, horizons)
    return horizons


def _interval(draws: Array, point: float, level: float, *, steps: bool, floor: float | None) -> list[float] | None:
    """The bias-shifted percentile interval of ``draws`` at ``level``, widened to contain ``point`` and cut at
    ``floor`` (the smallest value the metric can take); ``None`` when no draw has a value."""
    draws = draws[~np.isnan(draws)]
    if draws.size == 0:
        return None
    alpha = (1.0 - level) / 2.0
    low = float(np.quantile(draws, alpha, method="lower"))
    high = float(np.quantile(draws, 1.0 - alpha, method="higher"))
    middle = float(np.quantile(draws, 0.5, method="lower"))
    if math.isfinite(point) and math.isfinite(middle):
        bias = middle - point
        low, high = low - bias, high - bias
    low, high = min(low, point), max(high, point)
    if floor is not None:
        low = max(low, floor)
    if steps:
        low = math.floor(low + 1e-9) if math.isfinite(low) else low
        high = math.ceil(high - 1e-9) if math.isfinite(high) else high
    return [float(low), float(high)]


def profile_intervals(
    norms: npt.ArrayLike,
    metrics: LagMetrics,
    resolved: Sequence[bool],
    *,
    dtype: str = "float64",
    eps: float = 1e-2,
    eps_secondary: float = 1e-3,
    level: float = DEFAULT_LEVEL,
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    summary: str = "rms",
) -> dict[str, list[float]]:
    """Intervals of the headline numbers of one lag profile, by a bootstrap over its samples.

    Args:
        norms: N_b(k), ``[B, K + 1]``, the norms the point estimate was computed from.
        metrics: the point estimate (its reference lag and resolution decisions are kept).
        resolved: the per-lag resolution flags of the point estimate.
        dtype: the probe dtype (the rate resolution).
        eps: horizon threshold ε.
        eps_secondary: the second horizon threshold.
        level: the interval level, e.g. 0.9.
        samples: the number of bootstrap resamples (0: no intervals).
        seed: seeds the resampling.
        summary: how samples are summarised into G(k), as for the point estimate (``rms`` or ``median``).

    Returns:
        ``{metric: [low, high]}`` for the metrics of :data:`INTERVAL_METRICS` that have a value; empty when the
        profile has a non-finite gradient, fewer than two samples, or no resolved gradient at all.
    """
    n = np.asarray(norms, dtype=np.float64)
    flags = np.asarray(resolved, dtype=bool)
    ref = metrics.reference_lag
    if samples < 1 or n.shape[0] < 2 or not np.all(np.isfinite(n)):
        return {}
    big = bootstrap_profiles(n, samples, seed, summary)
    positive = flags & (np.max(n, axis=0) > 0)
    if not positive[ref]:
        return {}
    with np.errstate(divide="ignore", invalid="ignore"):
        g = big / big[:, ref : ref + 1]
        # a resample can miss every sample that reaches some lag (G = 0 there): its fits are undefined (NaN)
        # and left out of the intervals, like a profile the point estimate could not fit
        log_g = np.log(np.where(positive, np.where(g > 0, g, np.nan), 1.0))
    lags = np.arange(n.shape[1], dtype=np.float64)
    resolution = rate_resolution(dtype)
    last_positive = int(np.nonzero(positive)[0][-1])
    tail = positive & (lags >= ref + math.ceil((last_positive - ref) / 2))
    rate = _fit_slopes(lags, log_g, positive, resolution)
    rate_tail = _fit_slopes(lags, log_g, tail, resolution)
    g_for_horizon = np.where(flags, g, 0.0)
    # a resample extrapolates its horizon only where the point estimate did (see gradhealth.metrics)
    extrapolates = metrics.horizon_reached or math.isfinite(metrics.horizon)
    extrapolates_1e3 = metrics.horizon_1e3_reached or math.isfinite(metrics.horizon_1e3)
    draws: dict[str, Array | None] = {
        "horizon": _horizons(g_for_horizon, eps, rate_tail if extrapolates else None),
        "horizon_1e3": _horizons(g_for_horizon, eps_secondary, rate_tail if extrapolates_1e3 else None),
        "decay_rate": rate,
        "decay_rate_tail": rate_tail,
        "peak_lag": np.argmax(np.where(positive, g, -np.inf), axis=1).astype(np.float64),
        "peak_gain": np.max(np.where(positive, g, -np.inf), axis=1),
    }
    if rate_tail is not None:
        with np.errstate(divide="ignore"):
            timescale = np.where(rate_tail < 0, -1.0 / np.where(rate_tail < 0, rate_tail, -1.0), math.inf)
        timescale[np.isnan(rate_tail)] = math.nan
        draws["timescale"] = timescale
        draws["half_life"] = math.log(2) * timescale
    intervals = {}
    for name in INTERVAL_METRICS:
        values, point = draws.get(name), getattr(metrics, name)
        if values is not None and point is not None:
            steps = name in _STEP_METRICS
            pair = _interval(values, float(point), level, steps=steps, floor=_FLOORS.get(name))
            if pair is not None:
                intervals[name] = pair
    return intervals


def withhold_unresolved_extrapolation(metrics: LagMetrics, tags: list[str]) -> bool:
    """Replace an extrapolated horizon by ``inf`` ("not reached within K") when the interval of the tail rate
    reaches 0: the data cannot tell decay from no decay, so any extrapolated number would be made up.

    Changes ``metrics`` (horizons and their intervals) and ``tags`` (adds ``no_extrapolation``) in place.

    Returns:
        Whether a horizon was withheld.
    """
    pair = metrics.interval("decay_rate_tail")
    if pair is None or pair[1] < 0:
        return False
    withheld = False
    for name in ("horizon", "horizon_1e3"):
        value, reached = getattr(metrics, name), getattr(metrics, f"{name}_reached")
        if not reached and math.isfinite(value):
            setattr(metrics, name, math.inf)
            if name in metrics.intervals:
                metrics.intervals[name] = [metrics.intervals[name][0], math.inf]
            withheld = True
    if withheld and "no_extrapolation" not in tags:
        tags.append("no_extrapolation")
    return withheld


#: The fewest samples for which "the verdict rests on one or two samples" is a finding (with fewer, one or two
#: samples are a large share of the batch by design).
MIN_SAMPLES_FOR_OUTLIERS = 8


@dataclass(frozen=True)
class FewSampleVerdict:
    """A verdict that removing one or two samples would change.

    Attributes:
        samples: the indices of the samples (rows of the norms) whose removal changes the verdict.
        verdict_without: the verdict without them.
        share: their share of G(k)² at the deciding lag.
        lag: the deciding lag (the first exploding lag, K, or the reference lag).
    """

    samples: list[int]
    verdict_without: str
    share: float
    lag: int


def few_sample_verdict(
    norms: npt.ArrayLike,
    verdict: str,
    metrics: LagMetrics,
    resolved: Sequence[bool],
    *,
    eps: float = 1e-2,
    explode_threshold: float = 100.0,
) -> FewSampleVerdict | None:
    """Whether leaving out the one or two samples that weigh most at the deciding lag changes the verdict.

    The verdicts the RMS profile decides by one inequality are checked: ``exploding`` (max g >= 100: the
    samples that weigh most at the first exploding lag), ``healthy`` (g(K) >= ε: the samples that weigh most at
    K) and ``vanishing`` (g(K) < ε: the samples that weigh most at the reference lag, which set the scale).

    Returns:
        The samples and the verdict without them, or ``None`` when one or two samples cannot change it (or
        there are fewer than :data:`MIN_SAMPLES_FOR_OUTLIERS` samples, or a censored or non-finite profile).
    """
    n = np.asarray(norms, dtype=np.float64)
    flags = np.asarray(resolved, dtype=bool)
    if n.shape[0] < MIN_SAMPLES_FOR_OUTLIERS or not np.all(np.isfinite(n)) or metrics.horizon_censored:
        return None
    ref, last = metrics.reference_lag, n.shape[1] - 1
    lags = {"exploding": metrics.first_explode_lag, "healthy": last, "vanishing": ref}
    lag = lags.get(verdict)
    if lag is None or not flags[last]:
        return None
    positive = flags & (np.max(n, axis=0) > 0)
    scale = np.where(np.max(n, axis=0) > 0, np.max(n, axis=0), 1.0)
    squares = (n / scale) ** 2
    order = np.argsort(-squares[:, lag], kind="stable")
    for count in (1, 2):
        dropped = order[:count]
        kept = np.delete(squares, dropped, axis=0)
        big = scale * np.sqrt(kept.mean(axis=0))
        if big[ref] <= 0:
            continue
        g = big / big[ref]
        explodes = bool(np.any(positive & (g >= explode_threshold)))
        without = "exploding" if explodes else ("healthy" if g[last] >= eps else "vanishing")
        if without != verdict:
            share = float(squares[dropped, lag].sum() / squares[:, lag].sum())
            return FewSampleVerdict(sorted(int(i) for i in dropped), without, share, int(lag))
    return None

"""Lag profiles g(k) on a log scale, with the ε line, horizons and the per-sample band; several overlaid."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, cast

from gradhealth.formatting import format_horizon, format_interval, model_label

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from gradhealth.report import DirectionResult, Report

from gradhealth.plot._common import COLORS, Y_FLOOR, _masked, _new_axes, plot_text


def label_reports(reports: Report | Sequence[Report] | Mapping[str, Report]) -> list[tuple[str, Report]]:
    """Pair each report with a label: the mapping key, else the model's class and K.

    Args:
        reports: one report, a sequence of reports, or reports by label.

    Returns:
        ``(label, report)`` pairs in order.
    """
    if hasattr(reports, "directions") and hasattr(reports, "metrics"):  # one Report (duck-typed: no import cycle)
        one = cast("Report", reports)
        return [(_default_label(one), one)]
    if isinstance(reports, Mapping):
        return [(str(k), v) for k, v in reports.items()]
    pairs = [(_default_label(r), r) for r in reports]
    names = [p[0] for p in pairs]
    return [(f"{name} #{i + 1}" if names.count(name) > 1 else name, r) for i, (name, r) in enumerate(pairs)]


def _default_label(report: Report) -> str:
    return model_label(report.model)


def _series(reports: Report | Sequence[Report] | Mapping[str, Report]) -> list[tuple[str, DirectionResult, Report]]:
    series = []
    for label, report in label_reports(reports):
        for result in report.directions:
            name = f"{label} ({result.name})" if len(report.directions) > 1 else label
            series.append((plot_text(name), result, report))
    return series


def plot_profiles(
    reports: Report | Sequence[Report] | Mapping[str, Report],
    *,
    ax: Axes | None = None,
    band: bool = True,
    title: str | None = None,
    first_color: int = 0,
) -> Axes:
    """Overlay the lag profiles g(k) of one or more reports (every direction of each) on a log scale.

    Each profile is drawn over its resolved lags, with the 10th-90th percentile band of the per-sample ratios
    (``profile.quantiles`` q10/q90 are log10 ratios), a dotted line at its horizon when reached within K, a
    light span over the horizon's interval (see :mod:`gradhealth.uncertainty`), and the ε line of the first
    report.

    Args:
        reports: one report, a sequence of reports, or reports by label.
        ax: axes to draw on; a new figure is made when omitted (``ax.figure`` is it).
        band: draw the per-sample band.
        title: axes title.
        first_color: index into :data:`COLORS` of the first line (to match another plot's colours).

    Returns:
        The axes drawn on.

    Raises:
        MissingExtraError: matplotlib is not installed.
    """
    ax = ax if ax is not None else _new_axes()
    series = _series(reports)
    lowest = 1.0
    highest = 1.0
    for i, (name, result, _report) in enumerate(series):
        color = COLORS[(first_color + i) % len(COLORS)]
        style = "--" if result.name == "backward" else "-"
        prof, m = result.profile, result.metrics
        g = _masked(prof.g, prof.resolved)
        drawn = [v for v in g if not math.isnan(v)]
        lowest = min([lowest, *drawn])
        highest = max([highest, *drawn])
        horizon = format_horizon(m.horizon, reached=m.horizon_reached, censored=m.horizon_censored, compact=True)
        pair = m.horizon_ci
        interval = f" {format_interval(pair, m.interval_level)}" if pair is not None else ""
        label = f"{name}: {result.verdict}, horizon {horizon}{interval}"
        ax.plot(prof.lags, g, style, color=color, lw=1.8, label=label)
        if band and "q10" in prof.quantiles and "q90" in prof.quantiles:
            low = [10.0**q if math.isfinite(q) else math.nan for q in prof.quantiles["q10"]]
            high = [10.0**q if math.isfinite(q) else math.nan for q in prof.quantiles["q90"]]
            ax.fill_between(
                prof.lags, _masked(low, prof.resolved), _masked(high, prof.resolved), color=color, alpha=0.15, lw=0
            )
        if m.horizon_reached and m.horizon > 0:
            ax.axvline(m.horizon, color=color, ls=":", lw=1.2)
        if pair is not None and all(math.isfinite(v) for v in pair) and pair[1] > pair[0]:
            ax.axvspan(pair[0], min(pair[1], prof.lags[-1]), color=color, alpha=0.08, lw=0)
    eps = float(series[0][2].config.get("eps", 1e-2)) if series else 1e-2
    ax.axhline(eps, color="0.35", ls="--", lw=1.0, label=f"ε = {eps:g}")
    ax.set_yscale("log")
    ax.set_ylim(max(lowest, Y_FLOOR) / 3.0, highest * 3.0)
    ax.set_xlim(0, max((r.profile.lags[-1] for _, r, _ in series if r.profile.lags), default=1))
    ax.set_xlabel("lag k: steps between the input and the output the loss is taken at")
    ax.set_ylabel("g(k) = ‖∂L/∂x[t−k]‖ / ‖∂L/∂x[t]‖")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best", fontsize="small", framealpha=0.9)
    default_title = "Gradient through time (dotted: horizon, span: its interval, band: 10-90% of samples)"
    ax.set_title(title or default_title, fontsize="medium")
    return ax

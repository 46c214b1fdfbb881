"""The multi-line failure message of the gradhealth assertions, and the log-scale text plot of a lag profile.

Standard library only: reads the Report and the gate results, computes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gradhealth.formatting import format_horizon, format_interval, format_number

if TYPE_CHECKING:
    from gradhealth.gates import GateResult
    from gradhealth.report import DirectionResult, Report

__all__ = ["failure_message", "profile_plot", "reproduce_call"]

#: The keyword arguments of ``gradhealth.audit`` that the report's config records, in call order.
_REPRODUCE_KEYS = (
    "seq_len",
    "input_size",
    "batch_size",
    "task",
    "input_scale",
    "burn_in",
    "eps",
    "seed",
    "dtype",
    "device",
    "probes",
)
_MAX_FINDINGS = 3


def _bucket(values: Sequence[float], start: int, stop: int) -> float:
    chunk = values[start:stop]
    if any(not math.isfinite(v) for v in chunk):
        return math.nan
    return max(chunk)


def profile_plot(g: Sequence[float], *, eps: float, width: int = 48, max_rows: int = 8) -> list[str]:
    """A small bar chart of g(k) on a log10 scale: one row per decade, one column per lag (or bucket of lags).

    A cell is filled when g(k) reaches the row's decade, so a vanishing profile is a falling staircase; each
    column shows the largest value of its bucket; ``!`` marks a non-finite gradient. The ε row is labelled.

    Args:
        g: the normalised profile, lag 0 first.
        eps: the horizon threshold ε, marked on its decade.
        width: the most columns.
        max_rows: the most decades shown (the lowest are cut off).

    Returns:
        The lines of the plot, axis included.
    """
    if not g:
        return ["(empty profile)"]
    step = max(1, math.ceil(len(g) / width))
    columns = [_bucket(g, i, i + step) for i in range(0, len(g), step)]
    finite = [v for v in columns if math.isfinite(v) and v > 0]
    top = max(0, math.ceil(math.log10(max(finite)) - 1e-9)) if finite else 0
    eps_level = math.floor(math.log10(eps) + 1e-9)
    lowest = math.floor(math.log10(min(finite)) + 1e-9) if finite else eps_level
    bottom = max(min(lowest, eps_level - 1), top - max_rows + 1)
    lines = []
    for level in range(top, bottom - 1, -1):
        threshold = 10.0**level
        cells = "".join("!" if math.isnan(v) else ("█" if v >= threshold * (1 - 1e-12) else " ") for v in columns)
        mark = "  ← ε" if level == eps_level else ""
        lines.append(f"  {threshold:.0e} │{cells}{mark}".rstrip())
    last = (len(columns) - 1) * step
    lines.append("        └" + "─" * len(columns))
    right = f"lag {last}"
    lines.append("         lag 0" + right.rjust(max(len(columns) - 5, len(right) + 1)))
    return lines


def _verdict_reason(result: DirectionResult, config: dict[str, Any]) -> str:
    m = result.metrics
    eps = float(config.get("eps", 1e-2))
    k = config.get("seq_len")
    if result.verdict == "vanishing":
        return (
            f"horizon@{eps:g} = {format_number(m.horizon)} steps <= K = {k}: the gradient fades before the dependency"
        )
    if result.verdict == "finite_memory":
        return (
            f"horizon@{eps:g} = {format_number(m.horizon)} steps <= K = {k}: the gradient is exactly 0 beyond the "
            "model's receptive field (finite memory, not vanishing)"
        )
    if result.verdict == "exploding":
        limit = format_number(config.get("explode_threshold", 100.0))
        first = f"first at lag {m.first_explode_lag}"
        return f"peak gain {format_number(m.peak_gain)} at lag {m.peak_lag} >= {limit} ({first})"
    if result.verdict == "non_finite":
        return f"first non-finite gradient at lag {m.first_nonfinite_lag}"
    if result.verdict == "inconclusive":
        return (
            f"horizon@{eps:g} >= {format_number(m.horizon)} steps (censored: below the {config.get('dtype')} "
            f"resolution floor before reaching eps), which cannot tell vanishing from healthy at K = {k}"
        )
    return f"horizon@{eps:g} = {format_number(m.horizon)} steps > K = {k}, peak gain {format_number(m.peak_gain)}"


def _measured(result: DirectionResult, eps: float) -> str:
    m = result.metrics
    horizon = format_horizon(m.horizon, reached=m.horizon_reached, censored=m.horizon_censored)
    horizon_1e3 = format_horizon(m.horizon_1e3, reached=m.horizon_1e3_reached, censored=m.horizon_1e3_censored)
    return (
        f"horizon@{eps:g} {horizon}, horizon@1e-3 {horizon_1e3}, "
        f"decay rate {format_number(m.decay_rate)}/step (tail {format_number(m.decay_rate_tail)}, "
        f"R² {format_number(m.fit_r2)}), half-life {format_number(m.half_life)} steps, "
        f"peak gain {format_number(m.peak_gain)} at lag {m.peak_lag}"
    )


#: The intervals the failure message lists, with how each is named there.
_INTERVAL_NAMES = (
    ("horizon", "horizon"),
    ("horizon_1e3", "horizon@1e-3"),
    ("decay_rate", "decay rate"),
    ("decay_rate_tail", "tail"),
    ("half_life", "half-life"),
    ("peak_gain", "peak gain"),
)


def _intervals(result: DirectionResult) -> str | None:
    """``90% intervals: horizon [9, 12], ...`` (a bootstrap over the probe samples), or ``None``."""
    m = result.metrics
    parts = [
        f"{words} {format_interval(m.intervals[name], None)}" for name, words in _INTERVAL_NAMES if name in m.intervals
    ]
    if not parts or m.interval_level is None:
        return None
    return f"{m.interval_level * 100:g}% intervals: {', '.join(parts)}"


def reproduce_call(report: Report) -> str:
    """The ``gradhealth.audit(...)`` call that reproduces the report's numbers.

    Every audit setting is spelled out; a probe's own option only when it differs from its default (it changes
    that probe's numbers only).
    """
    from gradhealth.settings import API, PROBE, carried_by

    skipped = ("task", "input_scale") if report.inputs is not None else ()  # the data is the probe
    args = [f"{key}={report.config[key]!r}" for key in _REPRODUCE_KEYS if key in report.config and key not in skipped]
    for setting in carried_by(API, PROBE):
        value = report.config.get(setting.name)
        if value is not None and setting.type.parse(value) != setting.default:
            args.append(f"{setting.name}={value!r}")
    if report.inputs is not None:
        from gradhealth.formatting import format_inputs

        args.append("inputs=INPUTS")
        return f"gradhealth.audit(model, {', '.join(args)})\n  with INPUTS = {format_inputs(report.inputs)}"
    return f"gradhealth.audit(model, {', '.join(args)})"


def failure_message(report: Report, failures: Sequence[GateResult], *, check: str, label: str) -> str:
    """The multi-line explanation of a failed gradhealth assertion.

    Args:
        report: the audited report.
        failures: the failed gate results (from :func:`gradhealth.gates.evaluate_gates`).
        check: what was asserted, e.g. ``"assert_no_vanishing(over=16)"``.
        label: the model's name.

    Returns:
        Verdict, the deciding numbers against their thresholds, the profile plot, the top findings with their
        advice, and the call that reproduces the audit.
    """
    eps = float(report.config.get("eps", 1e-2))
    many = len(report.directions) > 1
    lines = [f"gradhealth: {check} failed for {label}", f"verdict: {report.verdict.upper()}"]
    for failure in failures:
        where = f"[{failure.direction}] " if many else ""
        lines.append(f"failed: {where}{failure.message}")
        if failure.borderline:
            lines.append(
                "  borderline: the threshold lies inside the interval, so another probe seed could decide otherwise; "
                "a larger batch_size narrows it"
            )
        if failure.gate == "verdict":
            lines.append(f"  because {_verdict_reason(report.direction(failure.direction), report.config)}")
    for result in report.directions:
        where = f"[{result.name}] " if many else ""
        lines.append(f"measured: {where}{_measured(result, eps)}")
        intervals = _intervals(result)
        if intervals is not None:
            lines.append(f"  {intervals}")
        lines.append(f"lag profile {where}g(k) = G(k)/G(0), log10 scale:")
        lines.extend(profile_plot(result.profile.g, eps=eps))
    if report.findings:
        lines.append("findings:")
        for finding in report.findings[:_MAX_FINDINGS]:
            lines.append(f"  {finding.code} {finding.severity}: {finding.title}: {finding.message}")
            if finding.advice:
                lines.append(f"    advice: {finding.advice}")
        if len(report.findings) > _MAX_FINDINGS:
            lines.append(f"  ... and {len(report.findings) - _MAX_FINDINGS} more (print(report) shows all)")
    lines.append("reproduce:")
    lines.append(f"  {reproduce_call(report)}")
    return "\n".join(lines)

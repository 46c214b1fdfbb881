"""Plain-text rendering: the readable summary behind ``print(report)`` and a log-scale sparkline.

Standard library only: rendering a report never imports torch or numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gradhealth.formatting import format_horizon, format_number

if TYPE_CHECKING:
    from gradhealth.report import DirectionResult, Report

__all__ = ["format_number", "format_report", "sparkline"]  # format_number: re-exported from gradhealth.formatting

_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], *, width: int = 48, floor: float = 1e-12) -> str:
    """A one-line log10 sparkline of a profile, down-sampled to ``width`` characters.

    Values at or below ``floor`` (and non-finite values) show as spaces/``!``; the scale spans
    [log10 floor, max] so a vanishing profile visibly drains away.
    """
    if not values:
        return ""
    step = max(1, math.ceil(len(values) / width))
    picked = [values[i] for i in range(0, len(values), step)]
    logs = [math.log10(v) if math.isfinite(v) and v > floor else None for v in picked]
    finite_logs = [v for v in logs if v is not None]
    top = max(finite_logs, default=0.0)
    bottom = math.log10(floor)
    span = max(top - bottom, 1e-12)
    chars = []
    for raw, log in zip(picked, logs, strict=True):
        if not math.isfinite(raw):
            chars.append("!")
        elif log is None:
            chars.append(" ")
        else:
            chars.append(_BARS[min(len(_BARS) - 1, int((log - bottom) / span * (len(_BARS) - 1) + 0.5))])
    return "".join(chars)


def _direction_lines(result: DirectionResult, eps: float, label: str) -> list[str]:
    m = result.metrics
    horizon = format_horizon(m.horizon, reached=m.horizon_reached, censored=m.horizon_censored)
    horizon_1e3 = format_horizon(m.horizon_1e3, reached=m.horizon_1e3_reached, censored=m.horizon_1e3_censored)
    lines = [
        f"{label}verdict: {result.verdict.upper()}" + (f"  [{', '.join(result.tags)}]" if result.tags else ""),
        f"  horizon@{eps:g}: {horizon}   horizon@1e-3: {horizon_1e3}",
        f"  decay rate: {format_number(m.decay_rate, '/step')} (tail {format_number(m.decay_rate_tail, '/step')}, "
        f"R² {format_number(m.fit_r2)})   half-life: {format_number(m.half_life, ' steps')}",
        f"  peak: lag {m.peak_lag}, gain {format_number(m.peak_gain)}"
        + (f"   first explode lag: {m.first_explode_lag}" if m.first_explode_lag is not None else "")
        + (f"   first non-finite lag: {m.first_nonfinite_lag}" if m.first_nonfinite_lag is not None else ""),
        f"  g(k), log scale, lags 0..{m.max_lag}: |{sparkline(result.profile.g)}|",
    ]
    return lines


def format_report(report: Report) -> str:
    """The multi-line summary printed by ``print(report)``."""
    model = report.model
    cfg = report.config
    eps = float(cfg.get("eps", 1e-2))
    head = (
        f"gradhealth {report.gradhealth_version} report: {model.get('adapter', '?')} "
        f"({format_number(model.get('parameters'))} parameters), K = {cfg.get('seq_len')}"
    )
    lines = [head]
    if len(report.directions) > 1:
        lines.append(f"verdict: {report.verdict.upper()} (worst of {len(report.directions)} directions)")
        for result in report.directions:
            lines.extend(_direction_lines(result, eps, f"[{result.name}] "))
    else:
        lines.extend(_direction_lines(report.directions[0], eps, ""))
    if report.findings:
        lines.append("findings:")
        for f in report.findings:
            where = f" ({f.direction})" if f.direction and len(report.directions) > 1 else ""
            lines.append(f"  {f.code} {f.severity}: {f.title}{where}: {f.message}")
    if report.probes:
        lines.append(f"other probes: {', '.join(sorted(report.probes))}")
    settings = " ".join(
        f"{k}={cfg[k]}" for k in ("seq_len", "batch_size", "task", "input_scale", "dtype", "device", "seed") if k in cfg
    )
    lines.append(f"settings: {settings}")
    return "\n".join(lines)

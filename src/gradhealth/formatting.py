"""How numbers, horizons and verdicts are written, in one place for every face and renderer (standard library only).

>>> format_number(0.1234567), format_number(None), format_number(float("inf"), " steps")
('0.123', 'n/a', '∞ steps')
>>> format_horizon(44.0, reached=True), format_horizon(458.2, reached=False, compact=True)
('44 steps', '≈458 (extrapolated)')
>>> format_horizon(38.0, reached=True, censored=True)
'≥ 38 steps (censored by the resolution floor)'
>>> format_interval((9.0, 12.0), 0.9, " steps"), format_interval((40.0, float("inf")), None)
('90% [9, 12] steps', '[40, ∞]')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gradhealth.report import DirectionResult, InputInfo, Report

__all__ = [
    "VERDICT_COLORS",
    "VERDICT_STYLES",
    "format_bytes",
    "format_horizon",
    "format_inputs",
    "format_interval",
    "format_level",
    "format_number",
    "format_report",
    "interval_suffix",
    "model_label",
    "sparkline",
]

#: rich styles of each verdict (and of an input that could not be audited).
VERDICT_STYLES = {
    "healthy": "green",
    "inconclusive": "magenta",
    "finite_memory": "cyan",
    "vanishing": "yellow",
    "exploding": "red",
    "non_finite": "bold red",
    "error": "red",
}

#: (text, background) colours of each verdict in HTML.
VERDICT_COLORS = {
    "healthy": ("#1a7f37", "#dafbe1"),
    "inconclusive": ("#6e40c9", "#fbefff"),
    "finite_memory": ("#0550ae", "#ddf4ff"),
    "vanishing": ("#9a6700", "#fff8c5"),
    "exploding": ("#bc4c00", "#fff1e5"),
    "non_finite": ("#82071e", "#ffebe9"),
    "error": ("#82071e", "#ffebe9"),
}


def format_number(value: float | None, unit: str = "", digits: int = 3) -> str:
    """Human-readable number: ``None`` and NaN as ``n/a``, infinities as ``∞``, integers without a point."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if math.isinf(value):
        return ("∞" if value > 0 else "-∞") + unit
    if float(value).is_integer() and abs(value) < 1e9:
        return f"{int(value)}{unit}"
    return f"{value:.{digits}g}{unit}"


def format_bytes(size: float) -> str:
    """A memory size in binary units: ``format_bytes(4 * 2**30) == '4.0 GiB'``, ``'512 B'``, ``'1.5 MiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(size) < 1024 or unit == "PiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def format_horizon(
    horizon: float | None, *, reached: bool, censored: bool = False, compact: bool = False, digits: int = 3
) -> str:
    """A horizon with what kind of number it is.

    Args:
        horizon: the horizon in steps.
        reached: whether g fell below ε within K (else ``horizon`` is extrapolated, or ``inf``).
        censored: whether the resolution floor hid the crossing (``horizon`` is a lower bound).
        compact: the short form for table cells.
        digits: significant digits of an extrapolated value.
    """
    unit = "" if compact else " steps"
    if censored:
        return f"≥ {format_number(horizon)}" + (
            " (censored)" if compact else f"{unit} (censored by the resolution floor)"
        )
    if reached or horizon is None:
        return format_number(horizon, unit)
    if math.isinf(horizon):
        return "∞ (not reached)" if compact else "∞ (not reached within K; g does not decay)"
    value = format_number(horizon, unit, digits)
    return f"≈{value} (extrapolated)" if compact else f"≈{value} (not reached within K; extrapolated)"


def format_interval(
    interval: Sequence[float] | None, level: float | None = None, unit: str = "", digits: int = 3
) -> str:
    """An interval as ``[low, high]``, with its level and unit when given (``90% [9, 12] steps``); the empty
    string when there is none.

    >>> format_interval([8.0, 11.5]), format_interval(None), format_interval((9.0, 12.0), 0.9, " steps")
    ('[8, 11.5]', '', '90% [9, 12] steps')
    """
    if interval is None:
        return ""
    low, high = (format_number(v, digits=digits) for v in interval[:2])
    prefix = f"{format_level(level)} " if level is not None else ""
    return f"{prefix}[{low}, {high}]{unit}"


def format_level(level: float | None) -> str:
    """A confidence level as a percentage (``90%``); the empty string when there is none.

    >>> format_level(0.9), format_level(0.975), format_level(None)
    ('90%', '97.5%', '')
    """
    return f"{level * 100:g}%" if level is not None else ""


def interval_suffix(metrics: Any, name: str, unit: str = "") -> str:
    """`` (90% [9, 12])``: the interval of one metric of a :class:`~gradhealth.report.LagMetrics`, for appending
    after its value; empty when the metric has none."""
    pair = metrics.intervals.get(name) if metrics.intervals else None
    return f" ({format_interval(pair, metrics.interval_level, unit)})" if pair else ""


def model_label(model: Mapping[str, Any]) -> str:
    """How a report names its model: the checkpoint (with the layer inside it), else the model's class name, else
    the adapter family; ``model`` is ``Report.model``.

        >>> model_label({"class": "torch.nn.modules.rnn.LSTM", "adapter": "torch.nn.LSTM"})
        'LSTM'
        >>> model_label({"checkpoint": "runs/ep3.pt", "layer": "encoder.rnn", "class": "torch.nn.modules.rnn.LSTM"})
        'ep3.pt:encoder.rnn'
    """
    checkpoint = model.get("checkpoint")
    if checkpoint:
        name = str(checkpoint).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
        layer = model.get("layer")
        return f"{name}:{layer}" if layer and layer != name else name
    qualname = str(model.get("class") or "").rsplit(".", 1)[-1]
    return qualname or str(model.get("adapter") or "model")


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
        f"  horizon@{eps:g}: {horizon}{interval_suffix(m, 'horizon')}   "
        f"horizon@1e-3: {horizon_1e3}{interval_suffix(m, 'horizon_1e3')}",
        f"  decay rate: {format_number(m.decay_rate, '/step')}{interval_suffix(m, 'decay_rate')} "
        f"(tail {format_number(m.decay_rate_tail, '/step')}{interval_suffix(m, 'decay_rate_tail')}, "
        f"R² {format_number(m.fit_r2)})",
        f"  half-life: {format_number(m.half_life, ' steps')}{interval_suffix(m, 'half_life')}   "
        f"timescale: {format_number(m.timescale, ' steps')}{interval_suffix(m, 'timescale')}",
        f"  peak: lag {m.peak_lag}{interval_suffix(m, 'peak_lag')}, gain {format_number(m.peak_gain)}"
        f"{interval_suffix(m, 'peak_gain')}"
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
        f"gradhealth {report.gradhealth_version} report: {model_label(model)} "
        f"({format_number(model.get('parameters'))} parameters), K = {cfg.get('seq_len')}"
    )
    lines = [head]
    output = model.get("output")
    if output not in (None, "sequence"):
        lines.append(f"output: {output} (the loss sits on it; lags count back from the last input step)")
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
    if model.get("probe_dtype_reason"):
        lines.append(f"probe dtype: {model.get('probe_dtype')} ({model['probe_dtype_reason']})")
    if report.inputs is not None:
        lines.append(f"inputs: {format_inputs(report.inputs)}")
    return "\n".join(lines)


def format_inputs(info: InputInfo) -> str:
    """Where the probe inputs came from: ``val.npy (float32 [32, 41, 2] features, sha256 d68e658de6b166fa)``."""
    shape = "[" + ", ".join(str(n) for n in info.shape) + "]"
    kind = info.kind.replace("_", " ")
    return f"{info.source} ({info.dtype} {shape} {kind}, sha256 {info.sha256})"

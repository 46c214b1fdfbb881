"""CI gates: pass/fail decisions on a Report against :class:`Thresholds`, shared by the pytest assertions and the
CLI's exit codes.

They read the Report only (standard library only: no torch). Every threshold is checked per direction of
time, so a bidirectional model passes only if both directions do.

    >>> from gradhealth.gates import Thresholds, parse_drop
    >>> parse_drop("20%"), parse_drop("15")
    (HorizonDrop(amount=20.0, is_percent=True), HorizonDrop(amount=15.0, is_percent=False))
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from gradhealth._setting_types import HorizonDrop, parse_drop
from gradhealth.errors import ConfigError
from gradhealth.formatting import format_interval
from gradhealth.report import GATE_METRICS, VERDICTS, DirectionResult, LagMetrics, Report

__all__ = [
    "COMPARABLE_SETTINGS",
    "GATE_DECISIONS",
    "GateResult",
    "HorizonDrop",
    "Thresholds",
    "check_comparable",
    "evaluate_gates",
    "failed",
    "parse_drop",
    "parse_verdicts",
    "setting_differences",
]

#: Settings that change what a horizon means: two reports are comparable only if all of them match.
COMPARABLE_SETTINGS = ("eps", "seq_len", "burn_in", "task", "input_scale", "dtype")


#: How a gate on a metric with an interval decides: on the point estimate, or on the end of the interval that is
#: least favourable to passing.
GATE_DECISIONS = ("point", "conservative")


def parse_verdicts(names: str | Iterable[str], *, source: str = "argument") -> frozenset[str]:
    """Parse a comma-separated list (or iterable) of verdict names.

    Raises:
        ConfigError: a name is not a verdict.
    """
    items = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    unknown = [n for n in items if n not in VERDICTS]
    if unknown:
        raise ConfigError("fail_on", ",".join(unknown), f"verdicts are {', '.join(VERDICTS)}", source=source)
    return frozenset(items)


@dataclass(frozen=True)
class Thresholds:
    """Thresholds a report must meet.

    Attributes:
        fail_on: verdicts that fail the gate.
        min_horizon: the horizon (at the audit's ε) must be at least this many steps.
        max_horizon: the horizon must be at most this many steps.
        max_decay_rate: the gradient may decay at most this fast: fails when ``decay_rate < -|max_decay_rate|``.
        baseline: a previous report to compare against.
        max_horizon_drop: how far the horizon may fall below the baseline's.
        gate_decision: ``"point"`` (decide on the point estimate) or ``"conservative"`` (on the end of the
            metric's interval least favourable to passing). Either way a gate whose threshold lies inside the
            interval is borderline.
    """

    fail_on: frozenset[str] = frozenset()
    min_horizon: float | None = None
    max_horizon: float | None = None
    max_decay_rate: float | None = None
    baseline: Report | None = None
    max_horizon_drop: HorizonDrop | None = None
    gate_decision: str = "point"

    def __post_init__(self) -> None:
        if self.gate_decision not in GATE_DECISIONS:
            raise ConfigError(
                "gate_decision", self.gate_decision, f"must be one of {', '.join(GATE_DECISIONS)}", source="argument"
            )

    @property
    def is_empty(self) -> bool:
        """True when no gate is set."""
        return not (
            self.fail_on
            or self.min_horizon is not None
            or self.max_horizon is not None
            or self.max_decay_rate is not None
            or (self.baseline is not None and self.max_horizon_drop is not None)
        )


@dataclass(frozen=True)
class GateResult:
    """The outcome of one gate on one direction.

    ``borderline`` is True when the gate's outcome differs between the two ends of the deciding metric's
    ``interval`` (another probe seed could decide otherwise).
    """

    gate: str
    passed: bool
    message: str
    direction: str = "forward"
    measured: float | str | None = None
    threshold: float | str | None = None
    extra: dict[str, float] = field(default_factory=dict)
    borderline: bool = False
    interval: list[float] | None = None


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "∞"
    return f"{value:g}"


def setting_differences(old: Report, new: Report) -> list[str]:
    """The :data:`COMPARABLE_SETTINGS` whose values differ between two reports, as ``"eps 0.01 -> 0.05"``."""
    differences = []
    for name in COMPARABLE_SETTINGS:
        a, b = old.config.get(name), new.config.get(name)
        if a != b:
            differences.append(f"{name} {a!r} -> {b!r}")
    return differences


def check_comparable(old: Report, new: Report, *, what: str = "the baseline") -> None:
    """Refuse to compare horizons measured with different settings.

    Raises:
        ConfigError: a setting of :data:`COMPARABLE_SETTINGS` differs; the message lists each difference.
    """
    differences = setting_differences(old, new)
    if differences:
        raise ConfigError(
            "baseline",
            what,
            f"its horizons were measured with other settings ({'; '.join(differences)}); horizons are comparable "
            "only when eps, seq_len, burn_in, task, input_scale and dtype match: re-run the baseline with these "
            "settings",
            source="--baseline",
        )


def evaluate_gates(report: Report, gates: Thresholds) -> list[GateResult]:
    """Check every gate on every direction of the report; returns passed and failed results alike.

    Raises:
        ConfigError: a baseline was measured with other settings (:func:`check_comparable`).
    """
    if gates.baseline is not None and gates.max_horizon_drop is not None:
        check_comparable(gates.baseline, report)
    results: list[GateResult] = []
    for d in report.directions:
        m = d.metrics
        if gates.fail_on:
            results.append(_verdict_gate(d, gates.fail_on, gates.gate_decision, m.max_lag))
        if gates.min_horizon is not None:
            results.append(_metric_gate(d.name, m, "min_horizon", gates.min_horizon, gates.gate_decision))
        if gates.max_horizon is not None:
            results.append(_metric_gate(d.name, m, "max_horizon", gates.max_horizon, gates.gate_decision))
        if gates.max_decay_rate is not None:
            results.append(_metric_gate(d.name, m, "max_decay_rate", gates.max_decay_rate, gates.gate_decision))
        if gates.baseline is not None and gates.max_horizon_drop is not None:
            results.append(_baseline_gate(d, gates.baseline, gates.max_horizon_drop, gates.gate_decision))
    return results


def _straddles(pair: tuple[float, float] | None, limit: float, *, at_least: bool) -> bool:
    """Whether a gate that passes for values ``>= limit`` (``at_least``, else ``<= limit``) passes at one end of
    the interval and fails at the other."""
    if pair is None:
        return False
    low, high = pair
    return low < limit <= high if at_least else low <= limit < high


def _decision(passed: bool, borderline: bool, decision: str) -> bool:
    """The gate's outcome: the point estimate's, or (conservative) a pass only if both ends of the interval pass.
    The interval contains the point estimate, so that is a point pass that is not borderline."""
    return passed and not (decision == "conservative" and borderline)


def _borderline_note(borderline: bool, pair: tuple[float, float] | None, level: float | None, unit: str) -> str:
    if not borderline or pair is None:
        return ""
    return f" (borderline: the {format_interval(pair, level, unit)} interval contains the threshold)"


def _verdict_gate(d: DirectionResult, fail_on: frozenset[str], decision: str, max_lag: int) -> GateResult:
    """The verdict gate; borderline when the horizon interval straddles K and the gate treats vanishing and
    healthy differently (another probe seed could give the other verdict)."""
    bad = d.verdict in fail_on
    pair = d.metrics.horizon_ci
    splits = ("vanishing" in fail_on) != ("healthy" in fail_on) and d.verdict in ("vanishing", "healthy")
    borderline = splits and _straddles(pair, max_lag + 0.5, at_least=True)
    message = f"verdict {d.verdict}" + (f" is in fail-on ({', '.join(sorted(fail_on))})" if bad else " allowed")
    if borderline and pair is not None:
        message += f" (borderline: the {format_interval(pair, d.metrics.interval_level, ' steps')} horizon "
        message += f"interval straddles K = {max_lag})"
    return GateResult(
        "verdict",
        _decision(not bad, borderline, decision),
        message,
        d.name,
        d.verdict,
        ",".join(sorted(fail_on)),
        borderline=borderline,
        interval=list(pair) if borderline and pair is not None else None,
    )


#: How each metric gate reads: (the metric's words, unit of the value, comparison when passing and failing, the
#: threshold's words).
_WORDING = {
    "min_horizon": ("horizon", "", ">=", "<", "min ", " steps"),
    "max_horizon": ("horizon", "", "<=", ">", "max ", " steps"),
    "max_decay_rate": ("decay rate", "/step", "within", "faster than", "", "/step"),
}


def _metric_gate(direction: str, m: LagMetrics, gate: str, threshold: float, decision: str) -> GateResult:
    metric, at_least = GATE_METRICS[gate]
    words, unit, good, bad, side, limit_unit = _WORDING[gate]
    limit = -abs(threshold) if gate == "max_decay_rate" else threshold
    point = getattr(m, metric)
    pair = m.interval(metric)
    point_passes = point is None or (point >= limit if at_least else point <= limit)
    borderline = point is not None and _straddles(pair, limit, at_least=at_least)
    passed = _decision(point_passes, borderline, decision)
    message = f"{words} {_fmt(point)}{unit} {good if passed else bad} {side}{_fmt(limit)}{limit_unit}"
    if passed != point_passes:
        message += " at the conservative end of its interval"
    message += _borderline_note(borderline, pair, m.interval_level, limit_unit)
    return GateResult(
        gate,
        passed,
        message,
        direction,
        point,
        limit,
        borderline=borderline,
        interval=list(pair) if pair is not None else None,
    )


def _baseline_gate(d: DirectionResult, baseline: Report, drop: HorizonDrop, decision: str) -> GateResult:
    direction, pair = d.name, d.metrics.horizon_ci
    try:
        before = baseline.direction(direction).metrics.horizon
    except KeyError:
        return GateResult("max_horizon_drop", False, f"the baseline has no {direction!r} direction", direction)
    allowed = before * drop.amount / 100 if drop.is_percent else drop.amount
    horizon = d.metrics.horizon
    lost = before - horizon
    ok = math.isinf(horizon) if math.isinf(before) else lost <= allowed + 1e-09
    borderline = math.isfinite(before) and _straddles(pair, before - allowed - 1e-09, at_least=True)
    percent = f" ({lost / before * 100:.1f}%)" if before and math.isfinite(before) and math.isfinite(lost) else ""
    return GateResult(
        "max_horizon_drop",
        _decision(ok, borderline, decision),
        f"horizon {_fmt(horizon)} vs baseline {_fmt(before)}: dropped {_fmt(lost)} steps{percent}, allowed {drop}"
        + _borderline_note(borderline, pair, d.metrics.interval_level, " steps"),
        direction,
        horizon,
        before,
        {"allowed_steps": allowed},
        borderline=borderline,
        interval=list(pair) if pair is not None else None,
    )


def failed(results: Iterable[GateResult]) -> list[GateResult]:
    """The failed results only."""
    return [r for r in results if not r.passed]

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
from gradhealth.report import VERDICTS, Report

__all__ = [
    "COMPARABLE_SETTINGS",
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
    """

    fail_on: frozenset[str] = frozenset()
    min_horizon: float | None = None
    max_horizon: float | None = None
    max_decay_rate: float | None = None
    baseline: Report | None = None
    max_horizon_drop: HorizonDrop | None = None

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
    """The outcome of one gate on one direction."""

    gate: str
    passed: bool
    message: str
    direction: str = "forward"
    measured: float | str | None = None
    threshold: float | str | None = None
    extra: dict[str, float] = field(default_factory=dict)


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
        horizon = m.horizon
        if gates.fail_on:
            bad = d.verdict in gates.fail_on
            results.append(
                GateResult(
                    "verdict",
                    not bad,
                    f"verdict {d.verdict}"
                    + (f" is in fail-on ({', '.join(sorted(gates.fail_on))})" if bad else " allowed"),
                    d.name,
                    d.verdict,
                    ",".join(sorted(gates.fail_on)),
                )
            )
        if gates.min_horizon is not None:
            ok = horizon >= gates.min_horizon
            results.append(
                GateResult(
                    "min_horizon",
                    ok,
                    f"horizon {_fmt(horizon)} {'>=' if ok else '<'} min {_fmt(gates.min_horizon)} steps",
                    d.name,
                    horizon,
                    gates.min_horizon,
                )
            )
        if gates.max_horizon is not None:
            ok = horizon <= gates.max_horizon
            results.append(
                GateResult(
                    "max_horizon",
                    ok,
                    f"horizon {_fmt(horizon)} {'<=' if ok else '>'} max {_fmt(gates.max_horizon)} steps",
                    d.name,
                    horizon,
                    gates.max_horizon,
                )
            )
        if gates.max_decay_rate is not None:
            limit = -abs(gates.max_decay_rate)
            rate = m.decay_rate
            ok = rate is None or rate >= limit
            results.append(
                GateResult(
                    "max_decay_rate",
                    ok,
                    f"decay rate {_fmt(rate)}/step {'within' if ok else 'faster than'} {_fmt(limit)}/step",
                    d.name,
                    rate,
                    limit,
                )
            )
        if gates.baseline is not None and gates.max_horizon_drop is not None:
            results.append(_baseline_gate(d.name, horizon, gates.baseline, gates.max_horizon_drop))
    return results


def _baseline_gate(direction: str, horizon: float, baseline: Report, drop: HorizonDrop) -> GateResult:
    try:
        before = baseline.direction(direction).metrics.horizon
    except KeyError:
        return GateResult("max_horizon_drop", False, f"the baseline has no {direction!r} direction", direction)
    lost = before - horizon
    allowed = before * drop.amount / 100 if drop.is_percent else drop.amount
    ok = math.isinf(horizon) if math.isinf(before) else lost <= allowed + 1e-09
    percent = f" ({lost / before * 100:.1f}%)" if before and math.isfinite(before) and math.isfinite(lost) else ""
    return GateResult(
        "max_horizon_drop",
        ok,
        f"horizon {_fmt(horizon)} vs baseline {_fmt(before)}: dropped {_fmt(lost)} steps{percent}, allowed {drop}",
        direction,
        horizon,
        before,
        {"allowed_steps": allowed},
    )


def failed(results: Iterable[GateResult]) -> list[GateResult]:
    """The failed results only."""
    return [r for r in results if not r.passed]

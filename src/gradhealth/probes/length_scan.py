"""The length-scan probe: how the gradient of the last output with respect to the first input scales with T.

For each length T of a ladder (16, 32, ..., 4096 by default): fresh inputs of length T, the loss at the last
step L = Σ_b <v_b, y_b[T-1]> (the same v_b at every length), and one backward pass (the lag profile's recipe,
:func:`~gradhealth.probes._bptt.input_gradient_norms`, forward direction of time) give
N_first(T) = sqrt(mean_b ‖∂L/∂x_b[0]‖²) (the longest lag, T - 1) and N_total(T) = sqrt(mean_b ‖∂L/∂x_b‖²) (all
lags together). ``growth_rate`` is the least-squares slope of ln N_first against T: ln ρ per step for a linear
recurrence ρQ, so exploding gradients show as a positive rate and vanishing ones as a negative rate while
N_total plateaus. The scan stops at the first non-finite length, or once N_first falls below the dtype's
resolution floor (longer lengths would only measure underflow).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gradhealth.findings import make_finding
from gradhealth.formatting import format_number
from gradhealth.metrics import linear_fit
from gradhealth.probes._bptt import input_gradient_norms
from gradhealth.probes.base import Probe, ProbeContext
from gradhealth.report import Finding

__all__ = ["LengthPoint", "LengthScan", "LengthScanResult"]


@dataclass
class LengthPoint:
    """The gradient norms at one sequence length."""

    length: int
    first_input_norm: float
    total_norm: float
    is_finite: bool


@dataclass
class LengthScanResult:
    """Gradient norms over the ladder and their growth rates.

    Attributes:
        points: one per length measured, in ladder order.
        growth_rate: slope of ln N_first against T (per step), over finite, resolved points.
        growth_r2: R² of that fit.
        total_growth_rate: the same for N_total.
        first_nonfinite_length: the first length with a NaN/Inf gradient, or ``None``.
        stopped: ``complete``, ``non_finite``, ``underflow``, or ``data_length`` (the user's sequences are shorter
            than the next length).
    """

    points: list[LengthPoint]
    growth_rate: float | None
    growth_r2: float | None
    total_growth_rate: float | None
    first_nonfinite_length: int | None
    stopped: str


class LengthScan(Probe):
    """Gradient norm versus sequence length, its growth rate per step, and the first non-finite length."""

    name = "length_scan"
    description = "gradient norm versus sequence length, growth rate per step, first non-finite length"

    #: sequence lengths, scanned in this order; ``None``: the audit's ``length_scan_lengths`` setting.
    ladder: tuple[int, ...] | None = None

    def __init__(self, *, ladder: tuple[int, ...] | None = None) -> None:
        if ladder is not None:
            self.ladder = tuple(ladder)

    def run(self, ctx: ProbeContext) -> LengthScanResult:
        points: list[LengthPoint] = []
        floors: list[float] = []
        stopped = "complete"
        longest = getattr(ctx.task, "max_len", None)  # the user's sequences cannot be lengthened
        for length in self.ladder or ctx.config.length_scan_lengths:
            if longest is not None and length > longest:
                stopped = "data_length"
                break
            point, floor = self._measure(ctx, length)
            points.append(point)
            floors.append(floor)
            if not point.is_finite:
                stopped = "non_finite"
                break
            if point.first_input_norm <= floor:
                stopped = "underflow"
                break
        usable = [p for p, floor in zip(points, floors, strict=True) if p.is_finite and p.first_input_norm > floor]
        lengths = np.array([p.length for p in usable], dtype=np.float64)
        rate, r2 = linear_fit(lengths, np.log([p.first_input_norm for p in usable]))
        totals = [p for p in usable if p.total_norm > 0]
        total_rate, _ = linear_fit(np.array([p.length for p in totals], float), np.log([p.total_norm for p in totals]))
        first_bad = next((p.length for p in points if not p.is_finite), None)
        return LengthScanResult(points, rate, r2, total_rate, first_bad, stopped)

    def _measure(self, ctx: ProbeContext, length: int) -> tuple[LengthPoint, float]:
        """The norms at one length, and the resolution floor they were measured with."""
        inputs = ctx.make_batch(f"{self.name}/{length}", total_len=length).inputs
        # the same v at every length (one stream), so the fit measures the growth of the Jacobian, not v's spread
        # unlifted: the scan stops at the first length whose first input's gradient underflows, and a lifted seed
        # would only carry it to longer (costlier) lengths that underflow a little later
        measured = input_gradient_norms(ctx, inputs, max_lag=length - 1, stream=f"{self.name}/v", lift=False)[0]
        per_step = measured.norms  # lag order: column length - 1 is the first input
        first = float(per_step[:, -1].pow(2).mean().sqrt())
        total = float(per_step.pow(2).sum(1).mean().sqrt())
        finite = math.isfinite(first) and math.isfinite(total) and measured.output_is_finite
        return LengthPoint(length, first, total, finite), measured.floor

    def findings(self, result: LengthScanResult, ctx: ProbeContext) -> list[Finding]:
        found = []
        if result.first_nonfinite_length is not None:
            message = f"the gradient becomes NaN/Inf at sequence length {result.first_nonfinite_length}"
            found.append(make_finding("GH402", message, probe=self.name, length=result.first_nonfinite_length))
        usable = [p for p in result.points if p.is_finite and p.first_input_norm > 0]
        if result.growth_rate is not None and result.growth_rate > 0 and len(usable) >= 2:
            gain = usable[-1].first_input_norm / usable[0].first_input_norm
            if gain >= ctx.config.explode_threshold:
                message = (
                    f"∂L/∂x_0 grows as e^({format_number(result.growth_rate)} T): {format_number(gain)}x from T = "
                    f"{usable[0].length} to "
                    f"T = {usable[-1].length}"
                )
                found.append(make_finding("GH401", message, probe=self.name, growth_rate=result.growth_rate, gain=gain))
        return found

"""The lag-profile probe: how far back gradient reaches, from ONE forward and ONE backward pass per direction.

Protocol (the metric contract, DESIGN.md / docs/metrics.md): inputs x ~ task (gaussian N(0, s²) by default) of
length T = burn-in + K + 1; the loss sits at one output step, L = Σ_b <v_b, y_b[t_out]> with a fresh gaussian v_b
per sample (t_out = T - 1; t_out = 0 for the backward direction of a bidirectional model); one backward pass gives
N_b(k) = ||∂L/∂x_b[t_out - k]|| for every lag k = 0..K at once. :func:`gradhealth.metrics.summarize_profile`
turns the norms into the profile, metrics, verdict and tags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gradhealth.findings import make_finding
from gradhealth.formatting import format_number
from gradhealth.metrics import summarize_profile
from gradhealth.probes._bptt import LagNorms, input_gradient_norms
from gradhealth.probes.base import Probe, ProbeContext
from gradhealth.report import DirectionResult, Finding, LagMetrics

__all__ = ["LagProfile", "LagProfileResult", "lag_norms"]


@dataclass
class LagProfileResult:
    """One :class:`~gradhealth.report.DirectionResult` per direction of time."""

    directions: list[DirectionResult]


def lag_norms(ctx: ProbeContext, stream: str = "lag_profile") -> list[LagNorms]:
    """Per-sample gradient norms ``[B, K + 1]`` by direction of time (the shared recipe,
    :func:`~gradhealth.probes._bptt.input_gradient_norms`, on a batch of the audit's task)."""
    inputs = ctx.make_batch(stream).inputs
    return input_gradient_norms(ctx, inputs, max_lag=ctx.config.seq_len, stream=stream)


class LagProfile(Probe):
    """Per-lag gradient profile, decay rate, half-life, memory horizon and verdict."""

    name = "lag_profile"
    description = "per-lag gradient profile, decay rate, half-life, memory horizon and verdict"

    def run(self, ctx: ProbeContext) -> LagProfileResult:
        cfg = ctx.config
        results = []
        for measured in lag_norms(ctx):
            summary = summarize_profile(
                measured.norms.numpy(),
                dtype=ctx.dtype_name,
                floor=measured.floor,
                eps=cfg.eps,
                eps_secondary=cfg.eps_secondary,
                explode_threshold=cfg.explode_threshold,
                output_is_finite=measured.output_is_finite,
                recurrent=ctx.adapter.architecture in ("recurrent", "unknown"),
            )
            d = DirectionResult(measured.direction, summary.verdict, summary.metrics, summary.profile, summary.tags)
            results.append(d)
        return LagProfileResult(results)

    def findings(self, result: LagProfileResult, ctx: ProbeContext) -> list[Finding]:
        found = []
        for d in result.directions:
            where = {"probe": self.name, "direction": d.name}
            found += [make_finding(code, message, **where, **data) for code, message, data in _verdict_finding(d, ctx)]
            found += [make_finding(code, message, **where) for code, message in _tag_findings(d, ctx)]
        return found


def _reference(m: LagMetrics) -> str:
    return "its lag-0 value" if m.reference_lag == 0 else f"its value at lag {m.reference_lag}"


def _verdict_finding(d: DirectionResult, ctx: ProbeContext) -> list[tuple[str, str, dict[str, Any]]]:
    cfg, m = ctx.config, d.metrics
    if d.verdict == "non_finite":
        at = f"from lag {m.first_nonfinite_lag}" if m.first_nonfinite_lag is not None else "in the output"
        return [("GH003", f"NaN/Inf gradient {at}", {"first_nonfinite_lag": m.first_nonfinite_lag})]
    if d.verdict == "exploding":
        message = (
            f"g(k) reaches {cfg.explode_threshold:g}x {_reference(m)} at lag {m.first_explode_lag} "
            f"(peak {format_number(m.peak_gain)} at lag {m.peak_lag}; K = {cfg.seq_len})"
        )
        return [("GH002", message, {"first_explode_lag": m.first_explode_lag, "peak_gain": m.peak_gain})]
    if d.verdict == "inconclusive":
        message = (
            f"g(k) drops below the {ctx.dtype_name} resolution floor ({format_number(m.relative_floor)} of "
            f"{_reference(m)}) while still above eps = {cfg.eps:g}: the horizon is at least "
            f"{format_number(m.horizon)} steps, which cannot tell vanishing from healthy at K = {cfg.seq_len}"
        )
        return [("GH008", message, {"horizon_lower_bound": m.horizon, "relative_floor": m.relative_floor})]
    if d.verdict == "finite_memory":
        span = int(m.max_lag if m.horizon == math.inf else m.horizon)
        message = (
            f"the gradient is exactly 0 beyond lag {_last_positive_lag(d)}: the output of this "
            f"{ctx.adapter.architecture} model depends only on the last {span} inputs (a finite receptive field, "
            f"short of K = {cfg.seq_len}; nothing vanishes through time)"
        )
        return [("GH020", message, {"horizon": m.horizon, "architecture": ctx.adapter.architecture})]
    if d.verdict == "vanishing" and ctx.adapter.architecture == "attention":
        return []  # GH021 says what a short attention profile means; GH001's advice is for recurrences
    if d.verdict == "vanishing" and "no_gradient" not in d.tags:
        message = (
            f"gradient falls below {cfg.eps:g} of {_reference(m)} after {format_number(m.horizon)} steps, "
            f"short of K = {cfg.seq_len} (half-life {format_number(m.half_life, ' steps')})"
        )
        return [("GH001", message, {"horizon": m.horizon, "half_life": m.half_life})]
    return []


def _tag_findings(d: DirectionResult, ctx: ProbeContext) -> list[tuple[str, str]]:
    m = d.metrics
    found = []
    if m.reference_lag > 0:
        message = (
            f"the output does not depend on the input at lags 0..{m.reference_lag - 1}: g(k) is normalised at lag "
            f"{m.reference_lag}, the first lag with a gradient"
        )
        found.append(("GH009", message))
    if "no_gradient" in d.tags:
        found.append(("GH007", "every gradient of the output with respect to the input is exactly 0"))
    if "transient_amplification" in d.tags:
        message = f"g rises to {format_number(m.peak_gain)} at lag {m.peak_lag}, then decays"
        found.append(("GH004", message))
    if "unresolved_tail" in d.tags:
        unresolved = m.max_lag + 1 - m.resolved_lags
        message = (
            f"{unresolved} lags fall below the {ctx.dtype_name} resolution floor ({format_number(m.relative_floor)} "
            f"of {_reference(m)}) and are left out of the fits"
        )
        if m.horizon_censored or m.horizon_1e3_censored:
            which = "horizon" if m.horizon_censored else "horizon@1e-3"
            bound = m.horizon if m.horizon_censored else m.horizon_1e3
            message += f"; the {which} is censored: at least {format_number(bound)} steps"
        found.append(("GH005", message))
    if "non_exponential" in d.tags:
        found.append(("GH006", f"ln g(k) fits a line with R² = {format_number(m.fit_r2)}"))
    if ctx.adapter.architecture == "attention":
        message = (
            "the model reaches past inputs through attention, not a recurrent state: g(k) measures how much the "
            "output at the last step draws on lag k for these inputs, not a product of Jacobians through time"
        )
        if d.verdict == "vanishing":
            message += f"; it falls below {ctx.config.eps:g} after {format_number(m.horizon)} steps"
        elif not m.horizon_reached and m.horizon != math.inf:
            message += "; the extrapolated horizon assumes a decay that attention does not have"
        found.append(("GH021", message))
    return found


def _last_positive_lag(d: DirectionResult) -> int:
    g = d.profile.g
    return max((k for k, v in enumerate(g) if v is not None and v > 0), default=0)

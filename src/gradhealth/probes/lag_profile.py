"""The lag-profile probe: how far back gradient reaches, from ONE forward and ONE backward pass per direction.

Protocol (the metric contract, DESIGN.md / docs/metrics.md): inputs x ~ task (gaussian N(0, s²) by default) of
length T = burn-in + K + 1; the loss sits at one output step, L = Σ_b <v_b, y_b[t_out]> with a fresh gaussian v_b
per sample (t_out = T - 1; t_out = 0 for the backward direction of a bidirectional model); one backward pass gives
N_b(k) = ||∂L/∂x_b[t_out - k]|| for every lag k = 0..K at once. :func:`gradhealth.metrics.summarize_profile`
turns the norms into the profile, metrics, verdict and tags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from gradhealth.findings import make_finding
from gradhealth.formatting import format_horizon, format_interval, format_number
from gradhealth.metrics import summarize_profile
from gradhealth.probes._bptt import LagNorms, input_gradient_norms
from gradhealth.probes.base import Probe, ProbeContext
from gradhealth.report import DirectionResult, Finding, LagMetrics
from gradhealth.tasks.data import DataTask
from gradhealth.uncertainty import (
    FewSampleVerdict,
    few_sample_verdict,
    profile_intervals,
    withhold_unresolved_extrapolation,
)

__all__ = ["LagProfile", "LagProfileResult", "horizon_precision", "lag_norms"]


@dataclass
class LagProfileResult:
    """One :class:`~gradhealth.report.DirectionResult` per direction of time, and the directions whose verdict
    one or two samples decide."""

    directions: list[DirectionResult]
    few_sample_verdicts: dict[str, FewSampleVerdict] = field(default_factory=dict)
    probe_batches: int = 1


def horizon_precision(metrics: LagMetrics) -> float:
    """The relative half-width of the horizon's interval, (high - low) / (2 · horizon): ``inf`` when the interval
    is unbounded or missing, 0 for a horizon of 0 (nothing to resolve)."""
    pair = metrics.horizon_ci
    if pair is None or not all(math.isfinite(v) for v in (*pair, metrics.horizon)):
        return math.inf
    return 0.0 if metrics.horizon == 0 else (pair[1] - pair[0]) / (2.0 * metrics.horizon)


def _is_precise(d: DirectionResult, target: float) -> bool:
    return d.verdict == "non_finite" or horizon_precision(d.metrics) <= target


def _joined(first: LagNorms, second: LagNorms) -> LagNorms:
    """Two batches of one direction as one: samples stacked, the coarser floor of the two."""
    return LagNorms(
        first.direction,
        torch.cat([first.norms, second.norms]),
        first.output_is_finite and second.output_is_finite,
        max(first.floor, second.floor),
        first.seed_scale,
        first.flushed or second.flushed,
    )


def _direction_result(measured: LagNorms, ctx: ProbeContext) -> tuple[DirectionResult, FewSampleVerdict | None]:
    """Point estimates, their intervals, and whether one or two samples decide the verdict, for one direction."""
    cfg = ctx.config
    norms = measured.norms.numpy()
    summary = summarize_profile(
        norms,
        dtype=ctx.dtype_name,
        floor=measured.floor,
        eps=cfg.eps,
        eps_secondary=cfg.eps_secondary,
        explode_threshold=cfg.explode_threshold,
        output_is_finite=measured.output_is_finite,
        recurrent=ctx.adapter.architecture in ("recurrent", "unknown"),
        summary=cfg.summary,
    )
    m = summary.metrics
    m.samples = int(norms.shape[0])
    if cfg.bootstrap_samples:
        m.intervals = profile_intervals(
            norms,
            m,
            summary.profile.resolved,
            dtype=ctx.dtype_name,
            eps=cfg.eps,
            eps_secondary=cfg.eps_secondary,
            level=cfg.interval_level,
            samples=cfg.bootstrap_samples,
            seed=cfg.seed,
            summary=cfg.summary,
        )
        m.interval_level = cfg.interval_level
        withhold_unresolved_extrapolation(m, summary.tags)
    few = None
    if cfg.summary == "rms":
        few = few_sample_verdict(
            norms, summary.verdict, m, summary.profile.resolved, eps=cfg.eps, explode_threshold=cfg.explode_threshold
        )
    return DirectionResult(measured.direction, summary.verdict, m, summary.profile, summary.tags), few


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
        measured = lag_norms(ctx)
        batches = 1
        while True:
            pairs = [_direction_result(m, ctx) for m in measured]
            directions = [d for d, _ in pairs]
            target = cfg.target_horizon_precision
            if target is None or batches >= cfg.max_probe_batches or all(_is_precise(d, target) for d in directions):
                break
            if cfg.task == DataTask.name:
                break  # the user's sequences are all there is: another batch would count them twice
            more = lag_norms(ctx, f"lag_profile/batch{batches}")
            measured = [_joined(a, b) for a, b in zip(measured, more, strict=True)]
            batches += 1
        outliers = {d.name: few for d, few in pairs if few is not None}
        return LagProfileResult(directions, outliers, batches)

    def findings(self, result: LagProfileResult, ctx: ProbeContext) -> list[Finding]:
        found = []
        for d in result.directions:
            where = {"probe": self.name, "direction": d.name}
            found += [make_finding(code, message, **where, **data) for code, message, data in _verdict_finding(d, ctx)]
            found += [make_finding(code, message, **where) for code, message in _tag_findings(d, ctx)]
            target = ctx.config.target_horizon_precision
            if target is not None and not _is_precise(d, target):
                interval = format_interval(d.metrics.horizon_ci, d.metrics.interval_level) or "n/a"
                message = (
                    f"the horizon's interval {interval} is "
                    f"±{format_number(horizon_precision(d.metrics) * 100, '%')} of the horizon after "
                    f"{result.probe_batches} probe batches (max_probe_batches), short of the target "
                    f"±{format_number(target * 100, '%')}"
                )
                if ctx.config.task == DataTask.name:
                    message += "; the audit does not add batches to the user's own inputs: give it more sequences"
                found.append(make_finding("GH015", message, **where, probe_batches=result.probe_batches))
            few = result.few_sample_verdicts.get(d.name)
            if few is not None:
                found.append(make_finding("GH013", _few_sample_message(d, few), **where, **_few_sample_data(few)))
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
    if d.verdict == "vanishing" and m.verdict_basis == "recurrent":
        message = (
            f"the recurrent path's gradient falls below {cfg.eps:g} of its value at lag {m.recurrent_reference_lag} "
            f"after {format_number(m.horizon_recurrent)} steps, short of K = {cfg.seq_len} (behind a direct "
            "input-to-output path, see GH014)"
        )
        return [("GH001", message, {"horizon_recurrent": m.horizon_recurrent, "half_life": m.half_life})]
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
    if "no_extrapolation" in d.tags:
        rate = format_interval(m.intervals.get("decay_rate_tail"), m.interval_level, "/step") or "n/a"
        message = (
            f"g(k) is still above eps at K = {m.max_lag} and the tail fit cannot carry it further (tail rate "
            f"{format_number(m.decay_rate_tail, '/step')}, interval {rate}, R² {format_number(m.fit_r2)}, "
            f"{m.resolved_lags} resolved lags): the horizon is reported as not reached within K, with no "
            "extrapolation"
        )
        found.append(("GH012", message))
    if m.recurrent_reference_lag is not None:
        recurrent = format_horizon(m.horizon_recurrent, reached=m.horizon_recurrent_reached)
        message = (
            f"g falls from 1 to {format_number(d.profile.g[m.recurrent_reference_lag])} in the first step, then "
            f"decays far more slowly: a direct input-to-output path. Normalised at lag {m.recurrent_reference_lag}, "
            f"the recurrent path's horizon is {recurrent} (lag-0 horizon {format_number(m.horizon)} steps); the "
            f"verdict {d.verdict} is decided by the recurrent path"
        )
        found.append(("GH014", message))
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


def _few_sample_message(d: DirectionResult, few: FewSampleVerdict) -> str:
    one = len(few.samples) == 1
    which = f"sample {few.samples[0]}" if one else f"samples {few.samples[0]} and {few.samples[1]}"
    message = (
        f"the verdict {d.verdict} rests on {which} ({format_number(few.share * 100, '%')} of G(k)² at lag "
        f"{few.lag}); without {'it' if one else 'them'} the verdict is {few.verdict_without}"
    )
    median = d.profile.quantiles.get("q50")
    if median and math.isfinite(median[few.lag]):
        message += f"; the median sample's g at lag {few.lag} is {format_number(10.0 ** median[few.lag])}"
    return message


def _few_sample_data(few: FewSampleVerdict) -> dict[str, Any]:
    return {"samples": few.samples, "verdict_without": few.verdict_without, "share": few.share, "lag": few.lag}


def _last_positive_lag(d: DirectionResult) -> int:
    g = d.profile.g
    return max((k for k, v in enumerate(g) if v is not None and v > 0), default=0)

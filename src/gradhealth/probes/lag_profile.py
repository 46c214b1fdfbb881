"""The lag-profile probe: how far back gradient reaches, from ONE forward and ONE backward pass per direction.

Protocol (the metric contract, DESIGN.md / docs/metrics.md): inputs x ~ task (gaussian N(0, s²) by default) of
length T = burn-in + K + 1; the loss sits at one output step, L = Σ_b <v_b, y_b[t_out]> with a fresh gaussian v_b
per sample (t_out = T - 1; t_out = 0 for the backward direction of a bidirectional model); one backward pass gives
N_b(k) = ||∂L/∂x_b[t_out - k]|| for every lag k = 0..K at once. :func:`gradhealth.metrics.summarize_profile`
turns the norms into the profile, metrics, verdict and tags.
"""

from __future__ import annotations

from dataclasses import dataclass

from gradhealth.findings import make_finding
from gradhealth.metrics import summarize_profile
from gradhealth.probes._bptt import LagNorms, input_gradient_norms
from gradhealth.probes.base import Probe, ProbeContext
from gradhealth.render.text import format_number
from gradhealth.report import DirectionResult, Finding

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
            )
            d = DirectionResult(measured.direction, summary.verdict, summary.metrics, summary.profile, summary.tags)
            results.append(d)
        return LagProfileResult(results)

    def findings(self, result: LagProfileResult, ctx: ProbeContext) -> list[Finding]:
        cfg = ctx.config
        found = []
        for d in result.directions:
            m = d.metrics
            where = {"probe": self.name, "direction": d.name}
            if d.verdict == "non_finite":
                at = f"from lag {m.first_nonfinite_lag}" if m.first_nonfinite_lag is not None else "in the output"
                found.append(
                    make_finding("GH003", f"NaN/Inf gradient {at}", **where, first_nonfinite_lag=m.first_nonfinite_lag)
                )
            elif d.verdict == "exploding":
                found.append(
                    make_finding(
                        "GH002",
                        f"g(k) reaches {cfg.explode_threshold:g}x its lag-0 value at lag {m.first_explode_lag} "
                        f"(peak {format_number(m.peak_gain)} at lag {m.peak_lag}; K = {cfg.seq_len})",
                        **where,
                        first_explode_lag=m.first_explode_lag,
                        peak_gain=m.peak_gain,
                    )
                )
            elif d.verdict == "vanishing" and "no_gradient" not in d.tags:
                found.append(
                    make_finding(
                        "GH001",
                        f"gradient falls below {cfg.eps:g} of its lag-0 value after {format_number(m.horizon)} steps, "
                        f"short of K = {cfg.seq_len} (half-life {format_number(m.half_life, ' steps')})",
                        **where,
                        horizon=m.horizon,
                        half_life=m.half_life,
                    )
                )
            tag_codes = {
                "no_gradient": ("GH007", "every gradient of the output with respect to the input is exactly 0"),
                "transient_amplification": (
                    "GH004",
                    f"g peaks at {format_number(m.peak_gain)} at lag {m.peak_lag} before decaying",
                ),
                "unresolved_tail": (
                    "GH005",
                    f"{m.max_lag + 1 - m.resolved_lags} lags fall below the {ctx.dtype_name} floor",
                ),
                "non_exponential": ("GH006", f"ln g(k) fits a line with R² = {format_number(m.fit_r2)}"),
            }
            for tag, (code, message) in tag_codes.items():
                if tag in d.tags:
                    found.append(make_finding(code, message, **where))
        return found

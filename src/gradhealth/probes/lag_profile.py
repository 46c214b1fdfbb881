"""The lag-profile probe: how far back gradient reaches, from ONE forward and ONE backward pass per direction.

Protocol (the metric contract, DESIGN.md / docs/metrics.md): inputs x ~ task (gaussian N(0, s²) by default) of
length T = burn-in + K + 1; the loss sits at one output step, L = Σ_b <v_b, y_b[t_out]> with a fresh gaussian v_b
per sample (t_out = T - 1; t_out = 0 for the backward direction of a bidirectional model); one backward pass gives
N_b(k) = ||∂L/∂x_b[t_out - k]|| for every lag k = 0..K at once. :func:`gradhealth.metrics.summarize_profile`
turns the norms into the profile, metrics, verdict and tags.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gradhealth.findings import make_finding
from gradhealth.metrics import resolution_floor, summarize_profile
from gradhealth.probes.base import Probe, ProbeContext, input_gradients_only
from gradhealth.render.text import format_number
from gradhealth.report import DirectionResult, Finding

__all__ = ["LagProfile", "LagProfileResult", "lag_norms"]


@dataclass
class LagProfileResult:
    """One :class:`~gradhealth.report.DirectionResult` per direction of time."""

    directions: list[DirectionResult]


def lag_norms(ctx: ProbeContext, stream: str = "lag_profile") -> dict[str, tuple[torch.Tensor, bool]]:
    """Per-sample gradient norms ``[B, K + 1]`` (float64, CPU) by direction, and whether the output at the loss
    step was finite. One forward pass; one backward pass per direction."""
    cfg = ctx.config
    max_lag, total = cfg.seq_len, cfg.total_len
    inputs = ctx.make_batch(stream).inputs
    if inputs.is_floating_point():
        inputs.requires_grad_(True)
    directions = ctx.adapter.directions()
    norms: dict[str, tuple[torch.Tensor, bool]] = {}
    with input_gradients_only(ctx.module), torch.enable_grad():
        out = ctx.adapter.run(inputs)
        for i, direction in enumerate(directions):
            y_t = direction.select(out.output)[:, 0 if direction.is_reverse else total - 1]
            v = ctx.randn(f"{stream}/{direction.name}", tuple(y_t.shape), like=y_t)
            loss = (y_t * v).sum()
            if loss.requires_grad:
                (grad,) = torch.autograd.grad(
                    loss, out.grad_input, retain_graph=i < len(directions) - 1, allow_unused=True
                )
            else:
                grad = None
            if grad is None:  # the output does not depend on the input at all
                grad = torch.zeros_like(out.grad_input)
            per_step = out.batch_first_grad(grad).detach().to(torch.float64).norm(dim=-1)
            window = per_step[:, : max_lag + 1] if direction.is_reverse else per_step[:, total - 1 - max_lag :].flip(1)
            norms[direction.name] = (window.cpu(), bool(torch.isfinite(y_t).all()))
    return norms


class LagProfile(Probe):
    """Per-lag gradient profile, decay rate, half-life, memory horizon and verdict."""

    name = "lag_profile"
    description = "per-lag gradient profile, decay rate, half-life, memory horizon and verdict"

    def run(self, ctx: ProbeContext) -> LagProfileResult:
        cfg = ctx.config
        floor = resolution_floor(ctx.dtype_name)
        results = []
        for name, (window, output_is_finite) in lag_norms(ctx).items():
            summary = summarize_profile(
                window.numpy(),
                floor=floor,
                eps=cfg.eps,
                eps_secondary=cfg.eps_secondary,
                explode_threshold=cfg.explode_threshold,
                output_is_finite=output_is_finite,
            )
            results.append(DirectionResult(name, summary.verdict, summary.metrics, summary.profile, summary.tags))
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

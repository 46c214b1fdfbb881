"""The ``ssm_decay`` probe: analytic timescales of a diagonal state-space recurrence, read from its decays."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gradhealth.probes.base import Probe, ProbeContext
from gradhealth.report import Finding

from gradhealth_example_plugin.adapter import DiagonalSSMAdapter

if TYPE_CHECKING:
    from gradhealth.adapters import Adapter

__all__ = ["DecaySpectrum", "DecaySpectrumResult", "analytic_horizon"]


def analytic_horizon(decay: float, eps: float) -> float:
    """Horizon of g(k) = |a|^k at ε: 1 + the last lag with |a|^k ≥ ε, i.e. 1 + floor(ln ε / ln |a|); ``inf`` if
    |a| ≥ 1 (no decay), 1 if a = 0."""
    a = abs(decay)
    if a >= 1.0:
        return math.inf
    if a == 0.0:
        return 1.0
    return 1.0 + math.floor(math.log(eps) / math.log(a) + 1e-12)


@dataclass
class DecaySpectrumResult:
    """Per-channel decays, their timescales -1/ln|a_i| (steps), and the slowest channel's analytic horizon."""

    decays: list[float]
    timescales: list[float]
    slowest_decay: float
    horizon: float
    is_stable: bool


class DecaySpectrum(Probe):
    """Analytic memory of each channel of a diagonal state-space recurrence."""

    name = "ssm_decay"
    description = "per-channel decays, timescales and analytic horizon of a DiagonalSSM"

    def skip_reason(self, adapter: Adapter) -> str | None:
        if isinstance(adapter, DiagonalSSMAdapter):
            return None
        return "only applies to gradhealth_example_plugin.DiagonalSSM models"

    def run(self, ctx: ProbeContext) -> DecaySpectrumResult:
        adapter = ctx.adapter
        assert isinstance(adapter, DiagonalSSMAdapter)  # skip_reason lets nothing else through
        decays = [float(a) for a in adapter.model.decay.detach().double().cpu()]
        timescales = [math.inf if abs(a) >= 1 else (0.0 if a == 0 else -1.0 / math.log(abs(a))) for a in decays]
        slowest = max(decays, key=abs)
        return DecaySpectrumResult(
            decays=decays,
            timescales=timescales,
            slowest_decay=slowest,
            horizon=analytic_horizon(slowest, ctx.config.eps),
            is_stable=all(abs(a) < 1 for a in decays),
        )

    def findings(self, result: DecaySpectrumResult, ctx: ProbeContext) -> list[Finding]:
        if result.is_stable:
            return []
        unstable = [i for i, a in enumerate(result.decays) if abs(a) >= 1]
        return [
            Finding(
                code="EXAMPLE001",
                severity="error",
                title="a channel does not decay (|a| ≥ 1)",
                message=f"channels {unstable} have |a| ≥ 1 (largest {abs(result.slowest_decay):.4g})",
                advice="Parametrise the decay as a = sigmoid(θ) or exp(-softplus(θ)) so that 0 < a < 1.",
                probe=self.name,
                data={"channels": unstable},
            )
        ]

"""The catalogue of findings: stable codes, their severity, title and the remedy the literature supports.

Probes raise findings with :func:`make_finding`; the text of each code lives here once, so docs/findings.md, the
CLI and the pytest messages all say the same thing. Codes: GH0xx lag profile, GH1xx parameter gradients,
GH2xx spectra and Lyapunov exponents, GH3xx gates, GH4xx length scan and state gradients, GH9xx the audit itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gradhealth.report import Finding

__all__ = ["CATALOGUE", "SEVERITIES", "FindingSpec", "make_finding", "sort_findings"]

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class FindingSpec:
    """What a finding code means and what to do about it."""

    code: str
    severity: str
    title: str
    advice: str


CATALOGUE: dict[str, FindingSpec] = {
    spec.code: spec
    for spec in (
        FindingSpec(
            "GH001",
            "warning",
            "gradient vanishes before the dependency length",
            "Use gated cells (LSTM/GRU) with long initial timescales: chrono initialisation (Tallec & Ollivier "
            "2018) or a forget-gate bias of 1-2 (Jozefowicz et al. 2015); for vanilla RNNs, orthogonal or "
            "identity-scaled recurrent weights (Le et al. 2015); or shorten the dependency the model must bridge.",
        ),
        FindingSpec(
            "GH002",
            "error",
            "gradient explodes within the dependency length",
            "Clip gradients by global norm near the average measured norm (Pascanu et al. 2013), and bring the "
            "recurrent weights' largest singular value towards 1 (orthogonal init, spectral normalisation).",
        ),
        FindingSpec(
            "GH003",
            "error",
            "non-finite gradient (NaN or Inf)",
            "Check the weights and inputs for NaN/Inf, lower the input scale or learning rate, clip gradients, "
            "and re-run with dtype='float64' to tell overflow from a genuine NaN source.",
        ),
        FindingSpec(
            "GH004",
            "info",
            "transient amplification: gradient grows before it decays",
            "Typical of a non-normal recurrent matrix (Orhan & Pitkow 2020); harmless if bounded, but it makes "
            "the norm of W_hh a poor guide: trust the measured profile over the spectral radius.",
        ),
        FindingSpec(
            "GH005",
            "info",
            "profile tail below the dtype's resolution floor",
            "The gradient underflowed at long lags; those lags are excluded from the fits. The horizon is "
            "unaffected (it ends earlier); probe in float64 to resolve the tail.",
        ),
        FindingSpec(
            "GH006",
            "info",
            "decay is not exponential (R² < 0.9)",
            "Decay rate and half-life summarise a curved profile; read the profile itself, and the tail rate "
            "(decay_rate_tail), which describes the asymptote.",
        ),
        FindingSpec(
            "GH007",
            "error",
            "the output does not depend on the input",
            "Every gradient is exactly zero: check the layout (the output selector, the embedding receiving the "
            "gradient) and that the model's forward actually uses its input.",
        ),
        FindingSpec(
            "GH901",
            "info",
            "probe ran in float32 because the model failed in float64",
            "Gradients below about 1e-31 cannot be resolved in float32; make the model dtype-agnostic (create "
            "internal tensors with the input's dtype) to probe in float64.",
        ),
    )
}


def make_finding(
    code: str,
    message: str,
    *,
    probe: str,
    direction: str | None = None,
    **data: Any,
) -> Finding:
    """Build a :class:`Finding` for a catalogued code.

    Raises:
        KeyError: the code is not in :data:`CATALOGUE` (register new codes there first).
    """
    spec = CATALOGUE[code]
    return Finding(
        code=code,
        severity=spec.severity,
        title=spec.title,
        message=message,
        advice=spec.advice,
        probe=probe,
        direction=direction,
        data=data,
    )


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Worst first (error, warning, info), then by code."""
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(findings, key=lambda f: (rank.get(f.severity, len(rank)), f.code))

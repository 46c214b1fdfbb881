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
            "The gradient fell below what the probe dtype resolves (tiny/eps, relative to the measured gradient); "
            "those lags are left out of the fits. If the floor lies above eps the horizon is censored (a lower "
            "bound, tagged censored_horizon); probe in a wider dtype (dtype='float64') to resolve the tail.",
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
            "GH008",
            "warning",
            "inconclusive: the resolution floor hides the horizon",
            "The profile dropped below the probe dtype's resolution floor before it reached eps, so the horizon "
            "is only a lower bound and neither 'healthy' nor 'vanishing' can be told. Probe in float32 or "
            "float64 (dtype='float64'); half precisions resolve about 3 decades below the largest gradient.",
        ),
        FindingSpec(
            "GH009",
            "info",
            "the output sees the input only after a delay",
            "The gradient at lag 0 (and the first lags) is exactly zero, e.g. a model that reads out h_{t-1}; "
            "g(k) is normalised at the first lag with a gradient, so growth and decay are measured from there.",
        ),
        FindingSpec(
            "GH012",
            "info",
            "horizon not reached within K, and no extrapolation",
            "The tail fit is too short, too curved or too noisy to carry the profile beyond K (fewer than 8 "
            "resolved lags, R² < 0.9, or a tail-rate interval that reaches 0), so no extrapolated number is "
            "given. Raise seq_len to measure the horizon, or raise batch_size to narrow the tail rate.",
        ),
        FindingSpec(
            "GH013",
            "warning",
            "the verdict rests on one or two samples",
            "Leaving out the one or two probe samples that weigh most at the deciding lag changes the verdict: "
            "the RMS profile is dominated by outliers. Look at the median profile (summary='median'), probe with "
            "your own data (inputs), or raise batch_size; decide on the verdict only if it holds for typical "
            "samples.",
        ),
        FindingSpec(
            "GH014",
            "info",
            "a direct input-to-output path hides the recurrent memory",
            "g falls 10x or more in the first step, then decays far more slowly: a skip connection or the D term "
            "of a state-space model carries the lag-0 gradient. The lag-0 horizon measures that path; the "
            "recurrent path's horizon (horizon_recurrent, normalised at the first lag after it) is what the "
            "model remembers, and it decides the verdict.",
        ),
        FindingSpec(
            "GH015",
            "info",
            "target precision not reached within the probe budget",
            "The horizon's interval is still wider than target_horizon_precision after max_probe_batches probe "
            "batches. Raise max_probe_batches or batch_size, accept a wider target, or raise seq_len when the "
            "interval is unbounded (a horizon beyond K).",
        ),
        FindingSpec(
            "GH020",
            "warning",
            "finite receptive field: the output depends only on the last few inputs",
            "The gradient is exactly zero beyond the field: finite memory is a property of the architecture "
            "(a convolution's kernel and dilation, a per-step layer), not vanishing gradients, so gated cells or "
            "initialisation will not change it. If the task needs longer dependencies, widen the field (more or "
            "dilated convolution layers, a longer kernel or context window) or add a recurrent or attention layer.",
        ),
        FindingSpec(
            "GH021",
            "info",
            "attention: no recurrent product for the gradient to vanish through",
            "Remedies for vanishing gradients in recurrent networks (gated cells, chrono or orthogonal "
            "initialisation, clipping) do not apply. A short horizon means the attention weights on distant "
            "positions are small for the probe inputs: check the attention mask, window and positional "
            "encoding, and probe with sequences from your own data.",
        ),
        FindingSpec(
            "GH101",
            "error",
            "non-finite parameter gradient (NaN or Inf)",
            "The task loss back-propagates NaN/Inf into the weights: clip gradients by global norm, lower the "
            "learning rate or input scale, and re-run in float64 to tell overflow from a NaN source.",
        ),
        FindingSpec(
            "GH102",
            "warning",
            "a layer or gate block is starved of gradient",
            "Its gradient/weight ratio is under 1/100 of the others', so it barely learns: check that gradient "
            "reaches it (the lag profile's horizon), use gated cells or a better-conditioned init for the layers "
            "below, or per-layer learning rates / an adaptive optimiser (Adam).",
        ),
        FindingSpec(
            "GH103",
            "warning",
            "a layer is flooded with gradient",
            "Its gradient/weight ratio is over 100x the others': its updates will dominate and may diverge. Clip "
            "gradients by global norm near the average measured norm (Pascanu et al. 2013) and check its "
            "recurrent matrix (spectrum probe).",
        ),
        FindingSpec(
            "GH104",
            "info",
            "gradient clipping would rescale this gradient",
            "Pascanu et al. (2013) suggest a clipping threshold near the average gradient norm over updates; "
            "the measured average over sub-batches is in this finding's data (suggested_threshold).",
        ),
        FindingSpec(
            "GH201",
            "warning",
            "recurrent matrix can amplify gradients (γ·σ_max(W_hh) well above 1)",
            "σ_max > 1/γ is the necessary condition for exploding gradients (Pascanu et al. 2013): clip gradients "
            "by global norm near the measured average norm, and bring σ_max towards 1 (orthogonal init, "
            "spectral normalisation).",
        ),
        FindingSpec(
            "GH202",
            "info",
            "gradients provably vanish (γ·σ_max(W_hh) < 1)",
            "Pascanu et al.'s sufficient condition for vanishing holds: every step shrinks the gradient. Use an "
            "orthogonal or identity-scaled W_hh with gain 1 (Le et al. 2015), or gated cells (LSTM/GRU).",
        ),
        FindingSpec(
            "GH203",
            "warning",
            "positive top Lyapunov exponent: the dynamics are chaotic or exploding",
            "Perturbations, and so gradients, grow exponentially along the trajectory: clip gradients near the "
            "measured average norm, lower the recurrent gain (σ_max of W_hh) or the input scale.",
        ),
        FindingSpec(
            "GH204",
            "error",
            "non-finite recurrent weights or state trajectory (NaN or Inf)",
            "The weights (or the states they produce) hold NaN or Inf, so no spectrum or Lyapunov exponent exists: "
            "find the update that produced them (a diverged step, a learning rate too high, no gradient "
            "clipping) and audit an earlier checkpoint.",
        ),
        FindingSpec(
            "GH301",
            "warning",
            "memory gates forget within a few steps (forget/update timescale under 3 steps)",
            "A forget-gate bias near 0 gives f ≈ 0.5 and a timescale of about 2 steps: use chrono initialisation "
            "(Tallec & Ollivier 2018: b_f = log u, u ~ U[1, T_max - 1]) or a forget bias of 1-2 (Jozefowicz et "
            "al. 2015); for a GRU, bias the update gate z towards 1 the same way.",
        ),
        FindingSpec(
            "GH302",
            "warning",
            "saturated tanh units",
            "Most candidate or cell activations sit at ±1, where tanh' ≈ 0 blocks the gradient: lower the input "
            "scale, normalise inputs, or add layer normalisation (Ba et al. 2016).",
        ),
        FindingSpec(
            "GH303",
            "warning",
            "dead hidden units",
            "Some units never activate on the probe inputs, so they carry no gradient: check their biases and "
            "input weights (dead ReLUs: lower the learning rate or use tanh), or re-initialise them.",
        ),
        FindingSpec(
            "GH401",
            "error",
            "gradient grows exponentially with sequence length",
            "The gradient with respect to the first input grows as e^(rate·T): clip gradients by global norm near "
            "the measured average norm (Pascanu et al. 2013), lower σ_max of W_hh, or train on shorter "
            "truncated-BPTT windows.",
        ),
        FindingSpec(
            "GH402",
            "error",
            "gradient becomes non-finite at long sequence lengths",
            "The model overflows past this length: clip gradients, lower the recurrent gain or input scale, and "
            "keep training sequences (or truncated-BPTT windows) shorter than this length.",
        ),
        FindingSpec(
            "GH403",
            "warning",
            "state gradient grows within the dependency length",
            "The gradient with respect to an earlier state exceeds the explode threshold: the recurrent Jacobian "
            "amplifies; clip gradients near the measured average norm and check the spectrum probe.",
        ),
        FindingSpec(
            "GH404",
            "error",
            "non-finite state gradient (NaN or Inf)",
            "Back-propagation through the state overflows or meets a NaN: clip gradients, lower the input scale, "
            "and re-run in float64.",
        ),
        FindingSpec(
            "GH902",
            "info",
            "denormals are not flushed on every CPU thread (slower, same numbers)",
            "The probe's backward passes run about ten times slower where gradients pass through the denormal range; "
            "no number changes. In a forked child process, start workers with the 'spawn' method instead; on "
            "non-x86 CPUs nothing can be done.",
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

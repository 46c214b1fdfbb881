"""The spectrum probe: static, from the weights alone, what each recurrent matrix can do to a gradient.

For every recurrent layer and direction: the largest singular value σ_max, the spectral radius ρ and the
eigenvalues (what :func:`gradhealth.plot.plot_spectrum` draws against the unit circle) of W_hh and of each gate
block, and for vanilla RNNs Pascanu et al.'s (2013) conditions on γ·σ_max, where γ bounds the nonlinearity's
derivative (1 for tanh and ReLU, 1/4 for the sigmoid): one step multiplies a gradient by at most
‖diag(φ')W‖ ≤ γ·σ_max, so γ·σ_max < 1 is *sufficient* for vanishing, and σ_max > 1/γ is *necessary* for exploding.

    >>> import torch
    >>> pascanu_bound(0.5 * torch.eye(3), "sigmoid")
    0.125
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from gradhealth.adapters import Adapter
from gradhealth.findings import make_finding
from gradhealth.formatting import format_number
from gradhealth.probes._recurrent import LayerWeights, find_recurrent_layers
from gradhealth.probes.base import Probe, ProbeContext
from gradhealth.report import Finding

__all__ = [
    "GAMMA",
    "MAX_EIGENVALUES",
    "LayerSpectrum",
    "MatrixSpectrum",
    "Spectrum",
    "SpectrumResult",
    "eigenvalue_pairs",
    "gram_sigma_max",
    "matrix_spectrum",
    "pascanu_bound",
]

#: Bound on the derivative of each nonlinearity (Pascanu et al. 2013).
GAMMA = {"tanh": 1.0, "relu": 1.0, "sigmoid": 0.25}

#: γ·σ_max at or above this raises GH201 ("well above 1").
AMPLIFY_MARGIN = 1.5


@dataclass
class MatrixSpectrum:
    """σ_max and (for square matrices) the spectral radius and eigenvalues of one matrix.

    Attributes:
        name: ``"W_hh"``, ``"W_hh[f]"``, ``"W_hr"``, ...
        shape: ``[rows, columns]``.
        sigma_max: the largest singular value.
        spectral_radius: the largest eigenvalue magnitude (``None`` unless square).
        eigenvalues: the eigenvalues as ``[re, im]`` pairs, largest magnitude first, at most
            :data:`MAX_EIGENVALUES` of them (``None`` unless square).
        eigenvalues_truncated: only the largest :data:`MAX_EIGENVALUES` of more eigenvalues are kept.
        is_finite: every entry is finite; otherwise σ_max and the spectral radius are NaN and no eigenvalue is
            computed (finding GH204).
    """

    name: str
    shape: list[int]
    sigma_max: float
    spectral_radius: float | None
    eigenvalues: list[list[float]] | None = None
    eigenvalues_truncated: bool = False
    is_finite: bool = True


@dataclass
class LayerSpectrum:
    """The recurrent matrices of one layer and direction.

    Attributes:
        layer: layer name such as ``"LSTM.l0"`` or ``"rnn.l1_reverse"``.
        kind: ``RNN_TANH``, ``RNN_RELU``, ``LSTM`` or ``GRU``.
        recurrent: W_hh as a whole.
        blocks: each gate block of W_hh (LSTM i/f/g/o, GRU r/z/n).
        projection: W_hr of a projected LSTM.
        gamma: derivative bound γ of the nonlinearity (vanilla RNNs only).
        pascanu_bound: γ·σ_max(W_hh) (vanilla RNNs only; gated cells are not bounded this way).
        vanishing_guaranteed: γ·σ_max < 1 (sufficient for vanishing).
        exploding_possible: σ_max > 1/γ (necessary for exploding).
    """

    layer: str
    kind: str
    recurrent: MatrixSpectrum
    blocks: list[MatrixSpectrum] = field(default_factory=list)
    projection: MatrixSpectrum | None = None
    gamma: float | None = None
    pascanu_bound: float | None = None
    vanishing_guaranteed: bool | None = None
    exploding_possible: bool | None = None


@dataclass
class SpectrumResult:
    """One :class:`LayerSpectrum` per recurrent layer and direction."""

    layers: list[LayerSpectrum]


#: square matrices larger than this get their eigenvalues in float32 (half the cost; relative error ~1e-6).
EIG_FLOAT64_MAX = 64

#: at most this many eigenvalues (the largest in magnitude) are kept per matrix, so a report stays small.
MAX_EIGENVALUES = 1024


def matrix_spectrum(name: str, weight: torch.Tensor, *, sigma_max: float | None = None) -> MatrixSpectrum:
    """σ_max (float64), and for a square ``weight`` its spectral radius and eigenvalues (one decomposition).

    ``sigma_max`` is σ_max when already known (:func:`gram_sigma_max` of several matrices at once)."""
    w = weight.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(w).all()):
        # LAPACK refuses (or prints errors for) NaN/Inf input; the matrix has no meaningful spectrum anyway.
        square = w.shape[0] == w.shape[1]
        return MatrixSpectrum(name, list(w.shape), math.nan, math.nan if square else None, is_finite=False)
    sigma = sigma_max if sigma_max is not None else gram_sigma_max([w])[0]
    result = MatrixSpectrum(name, list(w.shape), sigma, None)
    if w.shape[0] == w.shape[1] and w.numel():
        eig_input = w if w.shape[0] <= EIG_FLOAT64_MAX else w.to(torch.float32)
        eigenvalues = torch.linalg.eigvals(eig_input)
        result.spectral_radius = float(eigenvalues.abs().max())
        result.eigenvalues = eigenvalue_pairs(eigenvalues, significant=12 if eig_input.dtype == torch.float64 else 7)
        result.eigenvalues_truncated = eigenvalues.numel() > MAX_EIGENVALUES
    return result


def gram_sigma_max(weights: list[torch.Tensor], *, stacked: bool = False) -> list[float]:
    """σ_max of each finite matrix (all of one shape), in float64, as the square root of the largest eigenvalue of
    its Gram matrix W^T W (or W W^T, whichever is smaller), all in one batched call; with ``stacked``, one more
    value: σ_max of the matrices stacked on top of each other, whose Gram matrix is the sum of theirs.

    Accuracy: only the LARGEST singular value is taken this way, and it is as accurate as from an SVD. The Gram
    matrix is formed with an error of at most about m·u·σ_max² in norm (m the inner dimension, u = 2^-53) and the
    symmetric eigensolver is backward stable (error about n·u·‖G‖ = n·u·σ_max²), so λ_max = σ_max² carries a
    RELATIVE error of order (m + n)·u, and σ_max = √λ_max half of that (about 1e-13 at m + n = 1280 in the worst
    case, 1e-15 typically; an SVD's is of order n·u too). Small singular values would lose their relative accuracy
    (u·σ_max²/σ²), but they are not asked for. Each matrix is first scaled by a power of two (exact) so that its
    squares neither overflow nor underflow.
    """
    if not weights:
        return []
    w = torch.stack([x.detach().to("cpu", torch.float64) for x in weights])
    if w[0].numel() == 0:
        return [0.0] * (len(weights) + stacked)
    # each matrix scaled by its own power of two 2^e, e from its largest entry m·2^e (0.5 <= m < 1)
    exponents = torch.frexp(w.abs().amax(dim=(1, 2)))[1]
    w = torch.ldexp(w, -exponents.view(-1, 1, 1).to(torch.float64))
    grams = w.transpose(1, 2) @ w if stacked or w.shape[1] >= w.shape[2] else w @ w.transpose(1, 2)
    if stacked:  # the sum of the Gram matrices 2^(2e) G, scaled by the largest 2^(2e) (tiny terms may underflow)
        top = exponents.max()
        scales = (2 * (exponents - top)).view(-1, 1, 1).to(torch.float64)
        grams = torch.cat([grams, torch.ldexp(grams, scales).sum(0, keepdim=True)])
        exponents = torch.cat([exponents, top.view(1)])
    largest = torch.linalg.eigvalsh(grams)[:, -1].clamp_min(0).sqrt()
    return [math.ldexp(float(v), int(e)) for v, e in zip(largest, exponents, strict=True)]


def eigenvalue_pairs(eigenvalues: torch.Tensor, *, significant: int = 12) -> list[list[float]]:
    """Eigenvalues as JSON-able ``[re, im]`` pairs, largest magnitude first (then larger imaginary part first).

    Args:
        eigenvalues: a 1-D complex tensor.
        significant: digits kept relative to the largest magnitude; the decomposition is not more accurate than
            that (about 1e-12 in float64, 1e-7 in float32) and round numbers keep the JSON short.

    Returns:
        At most :data:`MAX_EIGENVALUES` pairs.
    """
    values = eigenvalues.detach().to("cpu", torch.complex128)
    pairs = sorted(zip(values.real.tolist(), values.imag.tolist(), strict=True), key=lambda p: (-math.hypot(*p), -p[1]))
    scale = max((math.hypot(*p) for p in pairs), default=0.0)
    if scale == 0 or not math.isfinite(scale):
        return [[re, im] for re, im in pairs[:MAX_EIGENVALUES]]
    ndigits = significant - math.ceil(math.log10(scale))
    return [[round(re, ndigits) + 0.0, round(im, ndigits) + 0.0] for re, im in pairs[:MAX_EIGENVALUES]]


def pascanu_bound(weight: torch.Tensor, nonlinearity: str) -> float:
    """γ·σ_max(W): the most one step h' = φ(W h + ...) can multiply a gradient's norm by.

    Raises:
        ValueError: the nonlinearity is not one of :data:`GAMMA`.
    """
    if nonlinearity not in GAMMA:
        raise ValueError(f"no derivative bound for nonlinearity {nonlinearity!r}; known: {', '.join(GAMMA)}")
    return GAMMA[nonlinearity] * matrix_spectrum("W", weight).sigma_max


def layer_spectrum(w: LayerWeights) -> LayerSpectrum:
    """The spectrum of one layer and direction."""
    blocks = w.blocks(w.w_hh)
    if len(blocks) > 1 and bool(torch.isfinite(w.w_hh.detach()).all()):
        # σ_max of every block and of the whole W_hh (the blocks stacked) from one batched Gram computation
        *sigmas, whole = gram_sigma_max(list(blocks.values()), stacked=True)
        result = LayerSpectrum(w.name, w.kind, matrix_spectrum("W_hh", w.w_hh, sigma_max=whole))
        result.blocks = [
            matrix_spectrum(f"W_hh[{g}]", b, sigma_max=sigma)
            for (g, b), sigma in zip(blocks.items(), sigmas, strict=True)
        ]
    else:
        result = LayerSpectrum(w.name, w.kind, matrix_spectrum("W_hh", w.w_hh))
        if len(blocks) > 1:
            result.blocks = [matrix_spectrum(f"W_hh[{g}]", b) for g, b in blocks.items()]
    if w.w_hr is not None:
        result.projection = matrix_spectrum("W_hr", w.w_hr)
    if w.kind in ("RNN_TANH", "RNN_RELU") and result.recurrent.is_finite:
        result.gamma = GAMMA["relu" if w.kind == "RNN_RELU" else "tanh"]
        result.pascanu_bound = result.gamma * result.recurrent.sigma_max
        result.vanishing_guaranteed = result.pascanu_bound < 1
        result.exploding_possible = result.recurrent.sigma_max > 1 / result.gamma
    return result


class Spectrum(Probe):
    """σ_max and spectral radius of every recurrent matrix and gate block, and Pascanu's conditions."""

    name = "spectrum"
    description = "σ_max and spectral radius of each recurrent matrix and gate block; Pascanu's bound"

    def skip_reason(self, adapter: Adapter) -> str | None:
        if not find_recurrent_layers(adapter.module):
            return "no nn.RNN/LSTM/GRU or *Cell module in the model, so no recurrent matrix to read"
        return None

    def run(self, ctx: ProbeContext) -> SpectrumResult:
        layers = [layer_spectrum(w) for layer in find_recurrent_layers(ctx.module) for w in layer.weights()]
        return SpectrumResult(layers)

    def findings(self, result: SpectrumResult, ctx: ProbeContext) -> list[Finding]:
        found = []
        for layer in result.layers:
            broken = [m.name for m in (layer.recurrent, *layer.blocks, layer.projection) if m and not m.is_finite]
            if broken:
                message = f"{layer.layer}: {', '.join(broken)} hold NaN or Inf entries; no spectrum computed"
                found.append(make_finding("GH204", message, probe=self.name, layer=layer.layer, matrices=broken))
            if layer.pascanu_bound is None or layer.gamma is None:
                continue
            data: dict[str, Any] = {
                "layer": layer.layer,
                "sigma_max": layer.recurrent.sigma_max,
                "pascanu_bound": layer.pascanu_bound,
            }
            if layer.pascanu_bound >= AMPLIFY_MARGIN:
                message = (
                    f"{layer.layer}: σ_max(W_hh) = {format_number(layer.recurrent.sigma_max)}, so one step can "
                    f"multiply a gradient by up to γ·σ_max = {format_number(layer.pascanu_bound)}"
                )
                found.append(make_finding("GH201", message, probe=self.name, **data))
            elif layer.vanishing_guaranteed:
                message = (
                    f"{layer.layer}: γ·σ_max(W_hh) = {format_number(layer.pascanu_bound)} < 1, so every "
                    f"gradient path shrinks at least that much per step"
                )
                found.append(make_finding("GH202", message, probe=self.name, **data))
        return found

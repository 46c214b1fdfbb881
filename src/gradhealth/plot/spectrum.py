"""Eigenvalues of each recurrent matrix against the unit circle (when the ``spectrum`` probe ran)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from gradhealth.report import Report

from gradhealth.plot._common import COLORS, _new_axes


def plot_spectrum(report: Report, *, ax: Axes | None = None) -> Axes | None:
    """Each recurrent matrix against the unit circle.

    With eigenvalues recorded (``eigenvalues`` as ``[re, im]`` pairs), they are drawn in the complex plane with
    the unit circle; otherwise each matrix's spectral radius ρ (bar) and largest singular value σ_max (marker) are
    drawn against the line ``|λ| = 1`` (the unit circle's radius). Reads ``report.probes["spectrum"]``; returns
    ``None`` when that probe did not run.

    Args:
        report: the report.
        ax: axes to draw on; a new figure is made when omitted.

    Returns:
        The axes, or ``None`` when there is nothing to draw.

    Raises:
        MissingExtraError: matplotlib is not installed.
    """
    matrices = spectrum_rows(report)
    if not matrices:
        return None
    if any(m.eigenvalues for m in matrices):
        return _plot_eigenvalues(matrices, ax)
    ax = ax if ax is not None else _new_axes(height=max(3.0, 0.3 * len(matrices) + 1.4))
    positions = list(range(len(matrices)))
    radii = [m.spectral_radius if m.spectral_radius is not None else math.nan for m in matrices]
    ax.barh(
        positions, [0.0 if math.isnan(r) else r for r in radii], color=COLORS[0], alpha=0.8, label="ρ (spectral radius)"
    )
    sigma = [m.sigma_max if m.sigma_max is not None else math.nan for m in matrices]
    ax.scatter(sigma, positions, marker="D", color=COLORS[1], zorder=3, label="σ_max (largest singular value)")
    ax.axvline(1.0, color="0.35", ls="--", lw=1.0, label="|λ| = 1 (unit circle)")
    ax.set_yticks(positions, [m.name for m in matrices], fontsize="small")
    ax.invert_yaxis()
    finite = [v for v in [*radii, *sigma] if math.isfinite(v)]
    ax.set_xlim(0, max([1.2, *finite]) * 1.1)
    ax.set_xlabel("magnitude (above 1: linear dynamics can grow; far below: they shrink)")
    ax.legend(loc="lower right", fontsize="x-small", framealpha=0.9)
    ax.set_title("Recurrent matrices against the unit circle", fontsize="medium")
    return ax


#: Markers of the layers and directions in the eigenvalue plot (colour tells the gate block apart).
MARKERS = ("o", "^", "s", "v", "D", "P", "X", "*")


def _plot_eigenvalues(matrices: list[SpectrumRow], ax: Axes | None) -> Axes:
    ax = ax if ax is not None else _new_axes(width=8.5, height=5.5)
    theta = [2 * math.pi * i / 256 for i in range(257)]
    ax.plot(
        [math.cos(t) for t in theta], [math.sin(t) for t in theta], color="0.35", lw=1.2, label="unit circle |λ| = 1"
    )
    ax.axhline(0.0, color="0.8", lw=0.6, zorder=0)
    ax.axvline(0.0, color="0.8", lw=0.6, zorder=0)
    drawn = [m for m in matrices if m.eigenvalues]
    layers = list(dict.fromkeys(m.layer for m in drawn))
    blocks = list(dict.fromkeys(m.matrix for m in drawn))
    # One colour per gate block and one marker per layer/direction, so a gate reads the same across layers; with
    # no gate blocks (vanilla RNNs) the colour follows the layer as well.
    by_block = len(blocks) > 1
    extent = 1.0
    for m in drawn:
        color_index = blocks.index(m.matrix) if by_block else layers.index(m.layer)
        label = f"{m.name} (ρ = {m.spectral_radius:.3g})" if m.spectral_radius is not None else m.name
        if m.truncated:
            label += f", largest {len(m.eigenvalues)}"
        ax.scatter(
            [p[0] for p in m.eigenvalues],
            [p[1] for p in m.eigenvalues],
            s=18,
            marker=MARKERS[layers.index(m.layer) % len(MARKERS)],
            color=COLORS[color_index % len(COLORS)],
            alpha=0.8,
            linewidths=0,
            label=label,
        )
        extent = max([extent, *(math.hypot(*p) for p in m.eigenvalues)])
    ax.set_aspect("equal")
    ax.set_xlim(-extent * 1.1, extent * 1.1)
    ax.set_ylim(-extent * 1.1, extent * 1.1)
    ax.set_xlabel("Re λ")
    ax.set_ylabel("Im λ")
    # Outside the axes: inside, the legend of a bidirectional LSTM (eight blocks) hides eigenvalues.
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="x-small", framealpha=0.9, borderaxespad=0)
    ax.set_title("Recurrent matrix eigenvalues and the unit circle", fontsize="medium")
    return ax


@dataclass(frozen=True)
class SpectrumRow:
    """One recurrent matrix (or gate block) of the ``spectrum`` probe."""

    name: str
    spectral_radius: float | None
    sigma_max: float | None
    eigenvalues: list[tuple[float, float]] = field(default_factory=list)
    layer: str = field(default="", compare=False)
    matrix: str = field(default="", compare=False)
    truncated: bool = field(default=False, compare=False)


def spectrum_rows(report: Report) -> list[SpectrumRow]:
    """The matrices of :func:`plot_spectrum`: each layer's gate blocks (``LSTM.l0 W_hh[f]``), or its whole
    recurrent matrix when it has no gate blocks."""
    data = report.probes.get("spectrum")
    if not isinstance(data, Mapping):
        return []
    rows = []
    for layer in data.get("layers") or []:
        if not isinstance(layer, Mapping):
            continue
        name = str(layer.get("layer", "?"))
        records = [b for b in layer.get("blocks") or [] if isinstance(b, Mapping)]
        recurrent = layer.get("recurrent")
        if not records and isinstance(recurrent, Mapping):
            records = [recurrent]
        for record in records:
            radius, sigma = record.get("spectral_radius"), record.get("sigma_max")
            rows.append(
                SpectrumRow(
                    f"{name} {record.get('name', '')}".strip(),
                    float(radius) if isinstance(radius, (int, float)) else None,
                    float(sigma) if isinstance(sigma, (int, float)) else None,
                    _eigenvalues(record.get("eigenvalues")),
                    layer=name,
                    matrix=str(record.get("name", "")),
                    truncated=record.get("eigenvalues_truncated") is True,
                )
            )
    return rows


def _eigenvalues(values: Any) -> list[tuple[float, float]]:
    points = []
    for value in values or []:
        if isinstance(value, (list, tuple)) and len(value) == 2:
            points.append((float(value[0]), float(value[1])))
        elif isinstance(value, (int, float)):
            points.append((float(value), 0.0))
    return points

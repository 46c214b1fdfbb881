"""Plots of a Report (matplotlib, the optional extra ``gradhealth[plot]``).

- :func:`plot_profiles`: lag profiles g(k) on a log scale with the ε line, each horizon marked and the per-sample
  band (10th to 90th percentile); several models or directions overlaid.
- :func:`plot_parameter_gradients`: gradient norm per parameter, grouped by layer and gate (when the
  ``parameter_gradients`` probe ran).
- :func:`plot_spectrum`: eigenvalues of each recurrent matrix against the unit circle (when the ``spectrum``
  probe ran).
- :func:`plot_report` puts the available panels of one report in one figure; :func:`save_report_plots` writes
  one PNG per panel to a folder (what ``gradhealth audit --plot DIR`` calls).

Figures are built with :class:`matplotlib.figure.Figure` directly, never through ``pyplot``, so plotting needs
no display, leaves no global figure state behind and works the same in a notebook, a CI job or a server.
matplotlib is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradhealth.errors import GradhealthError
from gradhealth.formatting import format_horizon

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from gradhealth.report import DirectionResult, Report

__all__ = [
    "PLOT_EXTRA",
    "GradientRow",
    "MissingExtraError",
    "SpectrumRow",
    "figure_png",
    "label_reports",
    "parameter_gradient_rows",
    "plot_parameter_gradients",
    "plot_profiles",
    "plot_report",
    "plot_spectrum",
    "require_matplotlib",
    "save_figure",
    "save_report_plots",
    "spectrum_rows",
]

PLOT_EXTRA = "pip install 'gradhealth[plot]'"

#: Line colours, colour-blind safe (Okabe & Ito), in the order models are drawn.
COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")

#: Profiles are clipped to this on the log axis: a vanishing profile drains off the bottom instead of squeezing
#: every other curve into the top of the plot.
Y_FLOOR = 1e-12


class MissingExtraError(GradhealthError, ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""


def require_matplotlib() -> None:
    """Check that matplotlib is importable.

    Raises:
        MissingExtraError: matplotlib is missing; the message says ``pip install 'gradhealth[plot]'``.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(f"plotting needs matplotlib, which is not installed: {PLOT_EXTRA}") from exc


def label_reports(reports: Report | Sequence[Report] | Mapping[str, Report]) -> list[tuple[str, Report]]:
    """Pair each report with a label: the mapping key, else the model's class and K.

    Args:
        reports: one report, a sequence of reports, or reports by label.

    Returns:
        ``(label, report)`` pairs in order.
    """
    from gradhealth.report import Report

    if isinstance(reports, Report):
        return [(_default_label(reports), reports)]
    if isinstance(reports, Mapping):
        return [(str(k), v) for k, v in reports.items()]
    pairs = [(_default_label(r), r) for r in reports]
    names = [p[0] for p in pairs]
    return [(f"{name} #{i + 1}" if names.count(name) > 1 else name, r) for i, (name, r) in enumerate(pairs)]


def _default_label(report: Report) -> str:
    return str(report.model.get("adapter") or report.model.get("class") or "model")


def _series(reports: Report | Sequence[Report] | Mapping[str, Report]) -> list[tuple[str, DirectionResult, Report]]:
    series = []
    for label, report in label_reports(reports):
        for result in report.directions:
            name = f"{label} ({result.name})" if len(report.directions) > 1 else label
            series.append((name, result, report))
    return series


def _masked(values: Iterable[float], keep: Iterable[bool]) -> list[float]:
    """Values to draw on a log axis: NaN (a gap) where unresolved, non-finite or not positive."""
    return [v if k and math.isfinite(v) and v > 0 else math.nan for v, k in zip(values, keep, strict=True)]


def plot_profiles(
    reports: Report | Sequence[Report] | Mapping[str, Report],
    *,
    ax: Axes | None = None,
    band: bool = True,
    title: str | None = None,
    first_color: int = 0,
) -> Axes:
    """Overlay the lag profiles g(k) of one or more reports (every direction of each) on a log scale.

    Each profile is drawn over its resolved lags, with the 10th-90th percentile band of the per-sample ratios
    (``profile.quantiles`` q10/q90 are log10 ratios), a dotted line at its horizon when reached within K, and
    the ε line of the first report.

    Args:
        reports: one report, a sequence of reports, or reports by label.
        ax: axes to draw on; a new figure is made when omitted (``ax.figure`` is it).
        band: draw the per-sample band.
        title: axes title.
        first_color: index into :data:`COLORS` of the first line (to match another plot's colours).

    Returns:
        The axes drawn on.

    Raises:
        MissingExtraError: matplotlib is not installed.
    """
    ax = ax if ax is not None else _new_axes()
    series = _series(reports)
    lowest = 1.0
    highest = 1.0
    for i, (name, result, _report) in enumerate(series):
        color = COLORS[(first_color + i) % len(COLORS)]
        style = "--" if result.name == "backward" else "-"
        prof, m = result.profile, result.metrics
        g = _masked(prof.g, prof.resolved)
        drawn = [v for v in g if not math.isnan(v)]
        lowest = min([lowest, *drawn])
        highest = max([highest, *drawn])
        horizon = format_horizon(m.horizon, reached=m.horizon_reached, censored=m.horizon_censored, compact=True)
        label = f"{name}: {result.verdict}, horizon {horizon}"
        ax.plot(prof.lags, g, style, color=color, lw=1.8, label=label)
        if band and "q10" in prof.quantiles and "q90" in prof.quantiles:
            low = [10.0**q if math.isfinite(q) else math.nan for q in prof.quantiles["q10"]]
            high = [10.0**q if math.isfinite(q) else math.nan for q in prof.quantiles["q90"]]
            ax.fill_between(
                prof.lags, _masked(low, prof.resolved), _masked(high, prof.resolved), color=color, alpha=0.15, lw=0
            )
        if m.horizon_reached and m.horizon > 0:
            ax.axvline(m.horizon, color=color, ls=":", lw=1.2)
    eps = float(series[0][2].config.get("eps", 1e-2)) if series else 1e-2
    ax.axhline(eps, color="0.35", ls="--", lw=1.0, label=f"ε = {eps:g}")
    ax.set_yscale("log")
    ax.set_ylim(max(lowest, Y_FLOOR) / 3.0, highest * 3.0)
    ax.set_xlim(0, max((r.profile.lags[-1] for _, r, _ in series if r.profile.lags), default=1))
    ax.set_xlabel("lag k: steps between the input and the output the loss is taken at")
    ax.set_ylabel("g(k) = ‖∂L/∂x[t−k]‖ / ‖∂L/∂x[t]‖")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best", fontsize="small", framealpha=0.9)
    ax.set_title(title or "Gradient through time (dotted: horizon, band: 10-90% of samples)", fontsize="medium")
    return ax


def plot_parameter_gradients(report: Report, *, ax: Axes | None = None) -> Axes | None:
    """Bar chart of the task-loss gradient norm per layer and gate block (log scale), one colour per layer.

    Reads ``report.probes["parameter_gradients"]`` (its ``groups`` with per-gate ``blocks``, else its
    ``parameters``); returns ``None`` (drawing nothing) when that probe did not run. Gate blocks the probe calls
    starved, zero gradients and NaN/Inf are labelled on the bar.

    Args:
        report: the report.
        ax: axes to draw on; a new figure is made when omitted.

    Returns:
        The axes, or ``None`` when there is nothing to draw.

    Raises:
        MissingExtraError: matplotlib is not installed.
    """
    rows = parameter_gradient_rows(report)
    if not rows:
        return None
    ax = ax if ax is not None else _new_axes(height=max(3.0, 0.3 * len(rows) + 1.4))
    groups = list(dict.fromkeys(r.group for r in rows))
    positions = list(range(len(rows)))
    drawable = [r.grad_norm for r in rows if math.isfinite(r.grad_norm) and r.grad_norm > 0]
    low = min(drawable, default=1e-3) / 3.0
    widths = [r.grad_norm if math.isfinite(r.grad_norm) and r.grad_norm > 0 else 0.0 for r in rows]
    colors = [COLORS[groups.index(r.group) % len(COLORS)] for r in rows]
    ax.barh(positions, widths, color=colors)
    ax.set_yticks(positions, [r.label for r in rows], fontsize="small")
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(low, max(drawable, default=1.0) * 3.0)
    for pos, row in zip(positions, rows, strict=True):
        note = _bar_note(row)
        if note:
            ax.annotate(note, (0.01, pos), xycoords=("axes fraction", "data"), color="#D55E00", va="center")
    ax.set_xlabel("gradient norm ‖∂L/∂θ‖ of the task loss (log scale)")
    ax.set_title("Parameter gradients by layer and gate", fontsize="medium")
    ax.grid(True, axis="x", which="major", alpha=0.3)
    return ax


def _bar_note(row: GradientRow) -> str:
    if not math.isfinite(row.grad_norm):
        return "NaN/Inf"
    if row.grad_norm == 0:
        return "0 (no gradient)"
    return "starved" if row.is_starved else ""


@dataclass(frozen=True)
class GradientRow:
    """One bar of the parameter-gradient plot."""

    label: str
    grad_norm: float
    group: str
    is_starved: bool = False


def parameter_gradient_rows(report: Report) -> list[GradientRow]:
    """The bars of :func:`plot_parameter_gradients`: one per gate block of each layer (``LSTM.l0 [f]``), or one
    per layer without gates, or one per parameter when the probe recorded no layer groups."""
    data = report.probes.get("parameter_gradients")
    if not isinstance(data, Mapping):
        return []
    rows: list[GradientRow] = []
    for group in data.get("groups") or []:
        if not isinstance(group, Mapping):
            continue
        name = str(group.get("group", "?"))
        starved = set(group.get("starved_blocks") or [])
        blocks = group.get("blocks") or {}
        if blocks:
            rows += [
                GradientRow(f"{name} [{gate}]", _float(b.get("grad_norm")), name, gate in starved)
                for gate, b in blocks.items()
                if isinstance(b, Mapping)
            ]
        else:
            rows.append(GradientRow(name, _float(group.get("grad_norm")), name))
    if rows:
        return rows
    for param in data.get("parameters") or []:
        if isinstance(param, Mapping):
            group = str(param.get("group", ""))
            rows.append(GradientRow(str(param.get("name", "?")), _float(param.get("grad_norm")), group))
    return rows


def _float(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan


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


def plot_report(report: Report, path: str | Path | None = None, *, band: bool = True) -> Figure:
    """One figure with every panel the report has data for: profiles, parameter gradients, spectrum.

    Args:
        report: the report.
        path: where to save the figure (format from the suffix: ``.png``, ``.svg``, ``.pdf``); not saved if None.
        band: draw the per-sample band on the profile panel.

    Returns:
        The matplotlib figure.

    Raises:
        MissingExtraError: matplotlib is not installed.
    """
    require_matplotlib()
    from matplotlib.figure import Figure

    extra = [p for p in ("parameter_gradients", "spectrum") if _has_panel(report, p)]
    fig = Figure(figsize=(8.0 + 5.0 * len(extra), 5.0), layout="constrained")
    axes = fig.subplots(1, 1 + len(extra), squeeze=False)[0]
    plot_profiles(report, ax=axes[0], band=band)
    for ax, panel in zip(axes[1:], extra, strict=True):
        _PANELS[panel](report, ax=ax)
    if path is not None:
        save_figure(fig, path)
    return fig


def _has_panel(report: Report, name: str) -> bool:
    return bool(parameter_gradient_rows(report) if name == "parameter_gradients" else spectrum_rows(report))


_PANELS = {"parameter_gradients": plot_parameter_gradients, "spectrum": plot_spectrum}


def save_report_plots(report: Report, directory: str | Path, *, stem: str = "gradhealth") -> list[Path]:
    """Write one PNG per available panel to ``directory`` (created if missing).

    Files: ``{stem}-profile.png`` always, ``{stem}-parameter-gradients.png`` and ``{stem}-spectrum.png`` when
    those probes ran. This is what ``gradhealth audit --plot DIR`` calls, once per audited model (with a
    distinct ``stem`` per model).

    Args:
        report: the report.
        directory: output folder.
        stem: file-name prefix.

    Returns:
        The paths written.

    Raises:
        MissingExtraError: matplotlib is not installed.
    """
    require_matplotlib()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    profile_ax = plot_profiles(report)
    written.append(save_figure(profile_ax.figure, out / f"{stem}-profile.png"))
    for panel in ("parameter_gradients", "spectrum"):
        ax = _PANELS[panel](report)
        if ax is not None:
            written.append(save_figure(ax.figure, out / f"{stem}-{panel.replace('_', '-')}.png"))
    return written


def save_figure(fig: Any, path: str | Path, *, dpi: int = 120) -> Path:
    """Save a figure (format from the suffix) and return the path."""
    target = Path(path)
    if target.parent != Path():
        target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=dpi)
    return target


def figure_png(fig: Any, *, dpi: int = 110) -> bytes:
    """A figure as PNG bytes (for embedding in HTML)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _new_axes(*, width: float = 8.0, height: float = 5.0) -> Axes:
    require_matplotlib()
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig.add_subplot()

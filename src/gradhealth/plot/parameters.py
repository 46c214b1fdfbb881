"""Parameter-gradient bars per layer and gate block (when the ``parameter_gradients`` probe ran)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from gradhealth.report import Report

from gradhealth.plot._common import COLORS, _new_axes, plot_text


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
    ax.set_yticks(positions, [plot_text(r.label) for r in rows], fontsize="small")
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

"""What every plot shares: the optional matplotlib dependency, colours, and saving figures."""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradhealth.errors import GradhealthError

if TYPE_CHECKING:
    from matplotlib.axes import Axes


PLOT_EXTRA = "pip install 'gradhealth[plot]'"

#: Line colours, colour-blind safe (Okabe & Ito), in the order models are drawn.
COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")

#: Profiles are clipped to this on the log axis: a vanishing profile drains off the bottom instead of squeezing
#: every other curve into the top of the plot.
Y_FLOOR = 1e-12


def plot_text(text: str) -> str:
    """A name as matplotlib draws it literally: control characters (and undecodable bytes of a file name, which
    its font code cannot take) written out, and ``$`` escaped so that it never starts mathtext."""
    from gradhealth.render.escape import printable

    return printable(text).replace("$", r"\$")


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


def _masked(values: Iterable[float], keep: Iterable[bool]) -> list[float]:
    """Values to draw on a log axis: NaN (a gap) where unresolved, non-finite or not positive."""
    return [v if k and math.isfinite(v) and v > 0 else math.nan for v, k in zip(values, keep, strict=True)]

"""Plots of a Report (matplotlib, the optional extra ``gradhealth[plot]``).

- :func:`plot_profiles`: lag profiles g(k) on a log scale with the ε line, each horizon marked and the per-sample
  band (10th to 90th percentile); several models or directions overlaid.
- :func:`plot_parameter_gradients`: gradient norm per parameter, grouped by layer and gate (when the
  ``parameter_gradients`` probe ran).
- :func:`plot_spectrum`: eigenvalues of each recurrent matrix against the unit circle (when the ``spectrum``
  probe ran).
- :func:`plot_history`: a training history (``gradhealth.monitor``) over steps, with profiles at chosen steps.
- :func:`plot_report` puts the available panels of one report in one figure; :func:`save_report_plots` writes
  one PNG per panel to a folder (what ``gradhealth audit --plot DIR`` calls).

Figures are built with :class:`matplotlib.figure.Figure` directly, never through ``pyplot``, so plotting needs
no display, leaves no global figure state behind and works the same in a notebook, a CI job or a server.
matplotlib is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from gradhealth.report import Report

from gradhealth.plot._common import (
    COLORS,
    PLOT_EXTRA,
    Y_FLOOR,
    MissingExtraError,
    figure_png,
    require_matplotlib,
    save_figure,
)
from gradhealth.plot.history import plot_history
from gradhealth.plot.parameters import GradientRow, parameter_gradient_rows, plot_parameter_gradients
from gradhealth.plot.profile import label_reports, plot_profiles
from gradhealth.plot.spectrum import SpectrumRow, plot_spectrum, spectrum_rows

__all__ = [
    "COLORS",
    "PLOT_EXTRA",
    "Y_FLOOR",
    "GradientRow",
    "MissingExtraError",
    "SpectrumRow",
    "figure_png",
    "label_reports",
    "parameter_gradient_rows",
    "plot_history",
    "plot_parameter_gradients",
    "plot_profiles",
    "plot_report",
    "plot_spectrum",
    "require_matplotlib",
    "save_figure",
    "save_report_plots",
    "spectrum_rows",
]


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

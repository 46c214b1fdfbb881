"""Plots drawn from Reports, checked against analytic profiles (gradhealth.reference) rather than pictures."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

import gradhealth
from gradhealth import reference
from gradhealth.plot import (
    Y_FLOOR,
    MissingExtraError,
    SpectrumRow,
    parameter_gradient_rows,
    plot_parameter_gradients,
    plot_profiles,
    plot_report,
    plot_spectrum,
    require_matplotlib,
    save_report_plots,
    spectrum_rows,
)

pytest.importorskip("matplotlib")

K = 60


@pytest.fixture(scope="module")
def linear() -> gradhealth.Report:
    return gradhealth.audit(reference.LinearRecurrence(4, 0.9), seq_len=K, batch_size=4, probes="quick")


@pytest.fixture(scope="module")
def bidirectional() -> gradhealth.Report:
    torch.manual_seed(0)
    model = torch.nn.GRU(3, 8, batch_first=True, bidirectional=True)
    return gradhealth.audit(model, seq_len=24, batch_size=4, probes="quick")


def _curves(ax: object) -> list[object]:
    return [line for line in ax.get_lines() if line.get_label() and not line.get_label().startswith("_")]  # type: ignore[attr-defined]


def test_profile_line_is_the_analytic_profile(linear: gradhealth.Report) -> None:
    ax = plot_profiles(linear)
    profile_line, eps_line = _curves(ax)
    ys = profile_line.get_ydata()
    assert list(profile_line.get_xdata()) == list(range(K + 1))
    assert max(abs(y / 0.9**k - 1) for k, y in enumerate(ys)) < 1e-9
    assert list(eps_line.get_ydata()) == [1e-2, 1e-2]
    verticals = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert [line.get_xdata()[0] for line in verticals] == [44.0]  # horizon@1e-2 of 0.9^k
    assert ax.get_yscale() == "log"
    assert "horizon 44" in profile_line.get_label()


def test_band_spans_the_sample_quantiles(linear: gradhealth.Report) -> None:
    ax = plot_profiles(linear)
    assert len(ax.collections) == 1
    # Every sample follows 0.9^k exactly, so the 10-90% band collapses onto the profile.
    vertices = ax.collections[0].get_paths()[0].vertices
    finite = vertices[(vertices[:, 0] > 0) & (vertices[:, 0] < K)]
    assert all(abs(y / 0.9**x - 1) < 1e-9 for x, y in finite)
    assert len(plot_profiles(linear, band=False).collections) == 0


def test_overlay_of_directions_and_models(linear: gradhealth.Report, bidirectional: gradhealth.Report) -> None:
    ax = plot_profiles({"linear": linear, "bigru": bidirectional})
    labels = [line.get_label() for line in _curves(ax)]
    assert labels[0].startswith("linear:")
    assert labels[1].startswith("bigru (forward):") and labels[2].startswith("bigru (backward):")
    assert _curves(ax)[2].get_linestyle() == "--"
    colors = {line.get_color() for line in _curves(ax)[:3]}
    assert len(colors) == 3


def test_vanishing_profile_is_clipped_at_the_floor() -> None:
    report = gradhealth.audit(reference.LinearRecurrence(3, 0.3), seq_len=K, batch_size=2, probes="quick")
    assert report.profile.g[-1] < 1e-25
    ax = plot_profiles(report)
    assert ax.get_ylim()[0] == pytest.approx(Y_FLOOR / 3)


def test_report_plot_and_saved_files(linear: gradhealth.Report, tmp_path: Path) -> None:
    fig = linear.plot(tmp_path / "sub" / "profile.png")
    assert len(fig.axes) == 1
    assert (tmp_path / "sub" / "profile.png").read_bytes()[:4] == b"\x89PNG"
    written = save_report_plots(linear, tmp_path / "plots", stem="lin")
    assert [p.name for p in written] == ["lin-profile.png"]


EIGS = [(0.5, 0.5), (0.5, -0.5), (1.2, 0.0)]


def _with_probes(report: gradhealth.Report, *, eigenvalues: bool = False) -> gradhealth.Report:
    data = report.to_dict()
    blocks = {
        "i": {"grad_norm": 0.1},
        "f": {"grad_norm": 0.0},
        "g": {"grad_norm": float("nan")},
        "o": {"grad_norm": 2.0},
    }
    matrix = {"name": "W_hh", "sigma_max": 1.5, "spectral_radius": 1.2}
    if eigenvalues:
        matrix["eigenvalues"] = [list(e) for e in EIGS]
    data["probes"] = {
        "parameter_gradients": {
            "parameters": [{"name": "weight_hh_l0", "group": "LSTM.l0", "grad_norm": 0.5}],
            "groups": [
                {"group": "LSTM.l0", "grad_norm": 0.5, "blocks": blocks, "starved_blocks": ["i"]},
                {"group": "Linear", "grad_norm": 0.25},
            ],
        },
        "spectrum": {"layers": [{"layer": "RNN.l0", "recurrent": matrix, "blocks": []}]},
    }
    return gradhealth.Report.from_dict(data)


def test_parameter_gradient_bars(linear: gradhealth.Report) -> None:
    report = _with_probes(linear)
    rows = parameter_gradient_rows(report)
    assert [r.label for r in rows] == ["LSTM.l0 [i]", "LSTM.l0 [f]", "LSTM.l0 [g]", "LSTM.l0 [o]", "Linear"]
    ax = plot_parameter_gradients(report)
    assert ax is not None
    assert [bar.get_width() for bar in ax.patches] == [0.1, 0.0, 0.0, 2.0, 0.25]
    assert [t.get_text() for t in ax.texts] == ["starved", "0 (no gradient)", "NaN/Inf"]
    assert len({bar.get_facecolor() for bar in ax.patches}) == 2  # one colour per layer
    assert plot_parameter_gradients(linear) is None


def test_spectrum_radius_against_one(linear: gradhealth.Report) -> None:
    report = _with_probes(linear)
    assert spectrum_rows(report) == [SpectrumRow("RNN.l0 W_hh", 1.2, 1.5)]
    ax = plot_spectrum(report)
    assert ax is not None
    assert [bar.get_width() for bar in ax.patches] == [1.2]
    assert [tuple(p) for p in ax.collections[0].get_offsets()] == [(1.5, 0.0)]
    assert [line.get_xdata()[0] for line in ax.get_lines()] == [1.0]
    assert plot_spectrum(linear) is None
    assert len(plot_report(report).axes) == 3


def test_spectrum_eigenvalues_against_the_unit_circle(linear: gradhealth.Report) -> None:
    ax = plot_spectrum(_with_probes(linear, eigenvalues=True))
    assert ax is not None
    circle = ax.get_lines()[0]
    radii = [math.hypot(x, y) for x, y in zip(circle.get_xdata(), circle.get_ydata(), strict=True)]
    assert max(abs(r - 1) for r in radii) < 1e-12
    assert [tuple(p) for p in ax.collections[0].get_offsets()] == EIGS


def test_standard_probes_of_a_real_lstm(tmp_path: Path) -> None:
    torch.manual_seed(0)
    report = gradhealth.audit(torch.nn.LSTM(3, 6, batch_first=True), seq_len=12, batch_size=4, probes="standard")
    if "parameter_gradients" not in report.probes or "spectrum" not in report.probes:
        pytest.skip(f"probes not installed: {report.skipped_probes}")
    rows = parameter_gradient_rows(report)
    assert [r.label for r in rows] == [f"LSTM.l0 [{gate}]" for gate in "ifgo"]
    radii = [r.spectral_radius for r in spectrum_rows(report)]
    assert len(radii) == 4 and all(r is not None and r > 0 for r in radii)
    written = save_report_plots(report, tmp_path, stem="lstm")
    assert [p.name for p in written] == ["lstm-profile.png", "lstm-parameter-gradients.png", "lstm-spectrum.png"]


def test_missing_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch, linear: gradhealth.Report) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'gradhealth\[plot\]'"):
        require_matplotlib()
    with pytest.raises(MissingExtraError):
        linear.plot()
    assert isinstance(MissingExtraError("x"), (ImportError, gradhealth.GradhealthError))

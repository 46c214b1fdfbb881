"""The spectrum panel draws the recorded eigenvalues in the complex plane against the unit circle."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import gradhealth
from gradhealth.plot import plot_spectrum, save_report_plots, spectrum_rows

pytest.importorskip("matplotlib")

THETA = 0.6


def _rotation_rnn() -> torch.nn.RNN:
    """A float64 tanh RNN with W_hh = diag(0.9·R(θ), 0.5): eigenvalues 0.9·e^{±iθ} and 0.5."""
    rnn = torch.nn.RNN(2, 3, batch_first=True, dtype=torch.float64)
    c, s = math.cos(THETA), math.sin(THETA)
    weight = torch.tensor([[0.9 * c, -0.9 * s, 0.0], [0.9 * s, 0.9 * c, 0.0], [0.0, 0.0, 0.5]], dtype=torch.float64)
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(weight)
    return rnn


def test_eigenvalues_of_an_audited_rnn_are_drawn_against_the_unit_circle(tmp_path: Path) -> None:
    report = gradhealth.audit(_rotation_rnn(), seq_len=8, batch_size=2, probes=["spectrum"])
    report = gradhealth.Report.from_json(report.to_json())
    ax = plot_spectrum(report)
    assert ax is not None
    assert ax.get_aspect() == 1.0  # "equal": the unit circle is a circle
    assert not ax.patches  # no bars: the complex-plane view, not the fallback
    circle = ax.get_lines()[0]
    radii = [math.hypot(x, y) for x, y in zip(circle.get_xdata(), circle.get_ydata(), strict=True)]
    assert max(abs(r - 1) for r in radii) < 1e-12
    (points,) = ax.collections
    want = [(0.9 * math.cos(THETA), 0.9 * math.sin(THETA)), (0.9 * math.cos(THETA), -0.9 * math.sin(THETA)), (0.5, 0)]
    assert [tuple(p) for p in points.get_offsets()] == [pytest.approx(w, abs=1e-12) for w in want]
    assert ax.get_legend().get_texts()[1].get_text() == "RNN.l0 W_hh (ρ = 0.9)"
    (png,) = [p for p in save_report_plots(report, tmp_path, stem="rot") if p.name == "rot-spectrum.png"]
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_a_bidirectional_lstm_gets_a_colour_per_gate_and_a_marker_per_direction() -> None:
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(4, 6, batch_first=True, bidirectional=True)
    report = gradhealth.audit(lstm, seq_len=8, batch_size=2, probes=["spectrum"])
    rows = spectrum_rows(report)
    assert [r.name for r in rows] == [f"LSTM.{d} W_hh[{g}]" for d in ("l0", "l0_reverse") for g in "ifgo"]
    assert all(len(r.eigenvalues) == 6 for r in rows)
    ax = plot_spectrum(report)
    assert ax is not None
    assert len(ax.collections) == 8
    colors = [tuple(c.get_facecolor()[0]) for c in ax.collections]
    assert colors[:4] == colors[4:]  # the same gate, the same colour in both directions
    assert len(set(colors[:4])) == 4
    markers = [c.get_paths()[0].vertices.tobytes() for c in ax.collections]
    assert len(set(markers[:4])) == 1 and len(set(markers[4:])) == 1 and markers[0] != markers[4]
    ax.figure.canvas.draw()  # the legend sits right of the axes, so it hides no eigenvalue
    legend_box = ax.get_legend().get_window_extent()
    assert legend_box.x0 >= ax.get_window_extent().x1


def test_truncated_eigenvalues_are_labelled() -> None:
    report = gradhealth.audit(_rotation_rnn(), seq_len=8, batch_size=2, probes=["spectrum"])
    data = report.to_dict()
    recurrent = data["probes"]["spectrum"]["layers"][0]["recurrent"]
    recurrent["eigenvalues"] = recurrent["eigenvalues"][:2]
    recurrent["eigenvalues_truncated"] = True
    ax = plot_spectrum(gradhealth.Report.from_dict(data))
    assert ax is not None
    assert ax.get_legend().get_texts()[1].get_text() == "RNN.l0 W_hh (ρ = 0.9), largest 2"

"""``gradhealth history``: a monitor's history as a table, a plot and an HTML page; bad files and steps exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gradhealth.cli import app
from gradhealth.history import HistoryRecord, append_record
from gradhealth.monitor import Monitor
from gradhealth.reference import LinearRecurrence


def record(step: int, horizon: float, verdict: str, *, reached: bool = True) -> HistoryRecord:
    lags = list(range(6))
    return HistoryRecord(
        step=step,
        verdict=verdict,
        horizon=horizon,
        horizon_reached=reached,
        decay_rate=-0.5 if reached else None,
        seq_len=5,
        eps=0.01,
        lags=lags,
        g=[0.5**k for k in lags],
        horizon_interval=[horizon - 1, horizon + 2] if reached else None,
    )


@pytest.fixture
def history(tmp_path: Path) -> Path:
    path = tmp_path / "run.jsonl"
    for rec in (
        record(0, 3, "vanishing"),
        record(50, 4, "vanishing"),
        record(100, float("inf"), "healthy", reached=False),
    ):
        append_record(path, rec)
    return path


def test_table_lists_every_audit(history: Path) -> None:
    result = CliRunner().invoke(app, ["history", str(history)])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 3
    cells = [cell.strip() for cell in rows[0].split("│")[1:-1]]
    assert cells == ["0", "vanishing", "3", "[2, 5]", "-0.5/step"]
    assert "50" in rows[1] and "[3, 6]" in rows[1] and "-0.5/step" in rows[1]
    assert "healthy" in rows[2] and "∞ (not reached)" in rows[2]


def test_plot_and_html_from_a_real_monitor_run(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "a<b>.jsonl"
    monitor = Monitor(LinearRecurrence(3, rho=0.9), every=1, history=path, seq_len=50, batch_size=2, dtype="float64")
    for _ in range(3):
        monitor.step()
    png, page = tmp_path / "h.png", tmp_path / "h.html"
    result = CliRunner().invoke(app, ["history", str(path), "--plot", str(png), "--html", str(page), "--at", "2"])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.count("data:image/png;base64,") == 1
    assert "a&lt;b&gt;.jsonl" in text and "a<b>" not in text
    assert text.count("<tr><td") == 3 and ">44<" in text  # g(k) = 0.9^k: horizon 44 at every step
    assert "lag profiles g(k) at steps 2." in text


def test_unknown_step_exits_2_and_lists_the_audited_steps(history: Path) -> None:
    result = CliRunner().invoke(app, ["history", str(history), "--at", "7"])
    assert result.exit_code == 2
    assert "--at 7: no audit at that step" in result.stderr and "0, 50, 100" in result.stderr
    assert result.stdout == ""


def test_a_file_that_is_not_a_history_exits_2_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text('{"format": "gradhealth-history/1", "step": 1}\n{"verdict": 3}\n')
    result = CliRunner().invoke(app, ["history", str(path)])
    assert result.exit_code == 2
    assert f"{path}:1: not a gradhealth history record" in result.stderr
    assert "Traceback" not in result.stderr

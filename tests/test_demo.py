"""The demo: the tanh RNN vanishes, the chrono LSTM keeps gradient longest, and the numbers are the engine's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import gradhealth
from gradhealth.cli import app
from gradhealth.demo import (
    DEMO_MODELS,
    RECURRENT_MODELS,
    build_demo_models,
    demo_sparklines,
    demo_summary,
    demo_table,
    learned_delays,
    remedies_table,
    run_demo,
)
from gradhealth.errors import ConfigError

SMALL = {"seq_len": 40, "hidden_size": 16, "batch_size": 4}


@pytest.fixture(scope="module")
def reports() -> dict[str, gradhealth.Report]:
    return run_demo(**SMALL)


def test_verdicts(reports: dict[str, gradhealth.Report]) -> None:
    assert list(reports) == list(DEMO_MODELS)
    assert reports["tanh RNN"].verdict == "vanishing"
    assert reports["chrono LSTM"].verdict == "healthy"
    longest = max(RECURRENT_MODELS, key=lambda name: reports[name].metrics.horizon)
    assert longest == "chrono LSTM"
    # attention: one hop to every earlier step, so g(k) stays far above ε at every lag
    attention = reports["attention"]
    assert attention.verdict == "healthy" and not attention.metrics.horizon_reached
    assert min(attention.profile.g) > attention.config["eps"]
    for name in ("tanh RNN", "LSTM", "GRU"):
        assert reports[name].metrics.horizon < SMALL["seq_len"] / 2


def test_numbers_match_a_direct_audit(reports: dict[str, gradhealth.Report]) -> None:
    models = build_demo_models(seq_len=SMALL["seq_len"], hidden_size=SMALL["hidden_size"])
    for name, model in models.items():
        direct = gradhealth.audit(model, seq_len=SMALL["seq_len"], batch_size=SMALL["batch_size"], probes="quick")
        assert direct.to_dict() == reports[name].to_dict()


def test_models_are_seeded_and_leave_global_rng_alone() -> None:
    before = torch.get_rng_state()
    first = build_demo_models(seq_len=20, hidden_size=8, seed=3)
    second = build_demo_models(seq_len=20, hidden_size=8, seed=3)
    assert torch.equal(torch.get_rng_state(), before)
    for name in DEMO_MODELS:
        for p, q in zip(first[name].parameters(), second[name].parameters(), strict=True):
            assert torch.equal(p, q)


def test_summary_states_the_measured_horizons(reports: dict[str, gradhealth.Report]) -> None:
    text = demo_summary(reports)
    assert len(text.splitlines()) == 2
    shortest = min(r.metrics.horizon for r in reports.values() if r.verdict == "vanishing")
    assert f"{shortest:.0f}" in text
    assert "chrono LSTM keeps it" in text


def test_table_and_sparklines(reports: dict[str, gradhealth.Report]) -> None:
    from rich.console import Console

    console = Console(width=120, record=True)
    console.print(demo_table(reports))
    table = console.export_text()
    for name, report in reports.items():
        row = next(line for line in table.splitlines() if line.startswith(f"│ {name} "))
        assert report.verdict in row
    lines = demo_sparklines(reports, width=41).splitlines()
    assert len(lines) == 1 + len(reports)
    tanh = lines[1 + list(reports).index("tanh RNN")]
    assert tanh.split("|")[1][0] == "█"  # g(0) = 1 is the top of the scale
    assert tanh.split("|")[1].endswith(" ")  # drained below 1e-12 by lag K = 40


def test_bad_seq_len() -> None:
    with pytest.raises(ConfigError, match="seq_len"):
        run_demo(seq_len=1)


def test_cli_demo_writes_plot_and_html(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png, page = tmp_path / "demo.png", tmp_path / "demo.html"
    args = [
        "demo",
        "--seq-len",
        "30",
        "--hidden-size",
        "12",
        "--batch-size",
        "4",
        "--plot",
        str(png),
        "--html",
        str(page),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in DEMO_MODELS:
        assert name in result.stdout
    assert "vanishing" in result.stdout and "healthy" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.count("data:image/png;base64,") == 1 + len(DEMO_MODELS)


def test_cli_demo_rejects_short_seq_len() -> None:
    result = CliRunner().invoke(app, ["demo", "--seq-len", "1"])
    assert result.exit_code == 2


def test_shipped_learned_delays_and_remedies() -> None:
    from rich.console import Console

    delays, note = learned_delays()
    assert set(DEMO_MODELS) <= set(delays)
    assert "copy task" in note and "bench_trainability.py" in note
    console = Console(width=160, record=True)
    console.print(remedies_table())
    text = console.export_text()
    assert "orthogonal init" in text and "identity init" in text and "with clipping" in text


def test_default_demo_shows_the_learned_delays() -> None:
    result = CliRunner().invoke(app, ["demo", "--seq-len", "20", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    delays, _ = learned_delays()
    row = next(line for line in result.stdout.splitlines() if line.startswith("│ chrono LSTM "))
    assert row.rstrip(" │").endswith(delays["chrono LSTM"])
    assert "Remedies, measured" in result.stdout

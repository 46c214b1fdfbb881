"""``--forecast-step`` and ``--step-per-call``: the Layout fields that are plain data, given on the command line to a
``--model`` factory's module. The models are linear recurrences with closed-form profiles g(k) = ρ^k."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import Result

import gradhealth
from gradhealth.reference import LinearRecurrence
from gradhealth.report import Report

Run = Callable[..., Result]
HERE = "tests.cli.test_layout_flags"
SEQ_LEN = 32
ARGS = ["--seq-len", str(SEQ_LEN), "--batch-size", "4", "--probes", "quick", "--format", "json"]


class TwoStepForecaster(nn.Module):
    """``[B, T, 3] -> [B, 2, 3]``: forecast step 0 is the last state of a ρ = 0.5 recurrence, step 1 that of a
    ρ = 0.8 one. The gradient of step s at lag k is ρ_s^k times a fixed orthogonal matrix: g(k) = ρ_s^k."""

    def __init__(self) -> None:
        super().__init__()
        self.input_size = 3
        self.fast = LinearRecurrence(3, 0.5, seed=1)
        self.slow = LinearRecurrence(3, 0.8, seed=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.fast(x)[:, -1], self.slow(x)[:, -1]], dim=1)


class StreamingLinear(nn.Module):
    """One step per call, ``x_t: [B, 3] -> h_t``, with ``h_t = 0.7 Q h_{t-1} + x_t`` carried between calls and
    cleared by ``reset_state``: g(k) = 0.7^k."""

    def __init__(self) -> None:
        super().__init__()
        self.input_size = 3
        self.inner = LinearRecurrence(3, 0.7, seed=3)
        self.state: torch.Tensor | None = None

    def reset_state(self) -> None:
        self.state = None

    def forward(self, x_t: torch.Tensor) -> torch.Tensor:
        previous = torch.zeros_like(x_t) if self.state is None else self.state
        self.state = previous @ self.inner.weight.t().to(x_t.dtype) + x_t
        return self.state


def streaming_with_layout() -> tuple[nn.Module, gradhealth.Layout]:
    return StreamingLinear(), gradhealth.Layout(step_per_call=True)


def _save(model: nn.Module, tmp_path: Path) -> Path:
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    return path


def _report(result: Result) -> Report:
    assert result.exit_code == 0, result.stderr
    return Report.from_json(result.stdout)


def _rho_powers(rho: float) -> list[float]:
    return [rho**k for k in range(SEQ_LEN + 1)]


@pytest.mark.parametrize(("step", "rho", "horizon"), [("0", 0.5, 7), ("1", 0.8, 21), ("-1", 0.8, 21)])
def test_forecast_step_flag(run: Run, tmp_path: Path, step: str, rho: float, horizon: int) -> None:
    path = _save(TwoStepForecaster(), tmp_path)
    report = _report(run("audit", path, *ARGS, "--model", f"{HERE}:TwoStepForecaster", "--forecast-step", step))
    assert report.profile.g == pytest.approx(_rho_powers(rho), rel=1e-9, abs=0)
    assert report.metrics.horizon == horizon  # first k with ρ^k < 1e-2: 0.5^7, 0.8^21
    assert report.model["output"] == f"forecast step {int(step) % 2} of 2"


def test_forecaster_without_the_flag_names_it(run: Run, tmp_path: Path) -> None:
    path = _save(TwoStepForecaster(), tmp_path)
    result = run("audit", path, *ARGS, "--model", f"{HERE}:TwoStepForecaster")
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line
    assert "(a forecast horizon?)" in line and "--forecast-step N" in line


def test_forecast_step_from_pyproject(run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _save(TwoStepForecaster(), tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.gradhealth]\nforecast_step = 1\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    report = _report(run("audit", path, *ARGS, "--model", f"{HERE}:TwoStepForecaster"))
    assert report.profile.g == pytest.approx(_rho_powers(0.8), rel=1e-9, abs=0)


def test_forecast_step_must_be_an_integer(run: Run, tmp_path: Path) -> None:
    path = _save(TwoStepForecaster(), tmp_path)
    result = run("audit", path, *ARGS, "--model", f"{HERE}:TwoStepForecaster", "--forecast-step", "1.5")
    assert result.exit_code == 2
    assert "forecast" in result.stderr and "integer" in result.stderr


def test_step_per_call_flag(run: Run, tmp_path: Path) -> None:
    model = StreamingLinear()
    path = _save(model, tmp_path)
    report = _report(run("audit", path, *ARGS, "--model", f"{HERE}:StreamingLinear", "--step-per-call"))
    assert report.profile.g == pytest.approx(_rho_powers(0.7), rel=1e-9, abs=0)
    assert report.metrics.horizon == 13  # 0.7^12 = 0.0138 >= 1e-2 > 0.7^13 = 0.0097
    assert report.model["architecture"] == "recurrent"
    assert model.state is None  # the user's module never ran


def test_no_step_per_call_overrides_the_factory_layout(run: Run, tmp_path: Path) -> None:
    """The factory says one step per call; ``--no-step-per-call`` wins: one call then takes the whole ``[B, T, 3]``
    sequence, which this module maps step by step with a zero state (y_t = x_t), so nothing reaches back: g(k) = 0
    for every k >= 1."""
    path = _save(StreamingLinear(), tmp_path)
    factory = ["--model", f"{HERE}:streaming_with_layout"]
    assert _report(run("audit", path, *ARGS, *factory)).profile.g == pytest.approx(_rho_powers(0.7), rel=1e-9)
    report = _report(run("audit", path, *ARGS, *factory, "--no-step-per-call"))
    assert report.profile.g[1:] == [0.0] * SEQ_LEN

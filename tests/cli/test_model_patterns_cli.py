"""The model patterns of tests/adapters/patterns.py audited through the CLI: a ``--model`` factory (returning the
model, or the model and its ``gradhealth.Layout``) plus the saved state_dict gives the same profile as the API
on the same weights, and the analytic one where there is one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from tests.adapters import patterns as p
from torch import nn
from typer.testing import Result

import gradhealth
from gradhealth.report import Report

Run = Callable[..., Result]
HERE = "tests.cli.test_model_patterns_cli"
SEQ_LEN, BATCH = 10, 3
FAST = ["--seq-len", str(SEQ_LEN), "--batch-size", str(BATCH), "--probes", "quick", "--format", "json"]


def _lengths(x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), x.shape[1], dtype=torch.long)


def _windows(x: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"insample_y": x, "insample_mask": torch.ones_like(x)}


def classifier() -> nn.Module:
    torch.manual_seed(1)
    return p.LastStepClassifier()


def encoder() -> nn.Module:
    torch.manual_seed(2)
    return p.FinalStateEncoder()


def forecaster() -> tuple[nn.Module, gradhealth.Layout]:
    torch.manual_seed(3)
    return p.HorizonForecaster(horizon=5), gradhealth.Layout(forecast_step=2)


def dict_forecaster() -> tuple[nn.Module, gradhealth.Layout]:
    torch.manual_seed(4)
    layout = gradhealth.Layout(call=lambda x: ((_windows(x),), {}), output="forecast", forecast_step=1)
    return p.DictForecaster(), layout


def packed() -> tuple[nn.Module, gradhealth.Layout]:
    torch.manual_seed(5)
    return p.PackedGRU(), gradhealth.Layout(call=lambda x: ((x, _lengths(x)), {}))


def complex_diagonal() -> nn.Module:
    return p.ComplexDiagonal(modes=4, radius=0.9)


def streaming() -> tuple[Any, gradhealth.Layout]:
    torch.manual_seed(7)
    return p.StreamingCell(), gradhealth.Layout(step_per_call=True, forward_kwargs={"sr": 16000})


def streaming_scripted() -> tuple[Any, gradhealth.Layout]:
    model, layout = streaming()
    return torch.jit.script(model), layout


def zero_scale_norm() -> nn.Module:
    torch.manual_seed(8)
    return p.ZeroScaleNorm()


CASES = {
    "classifier": (classifier, {}),
    "encoder": (encoder, {}),
    "forecaster": (forecaster, {}),
    "dict_forecaster": (dict_forecaster, {"input_size": 1}),
    "packed": (packed, {}),
    "complex_diagonal": (complex_diagonal, {}),
    "streaming": (streaming, {"input_size": 3}),
    "streaming_scripted": (streaming_scripted, {"input_size": 3}),
    "zero_scale_norm": (zero_scale_norm, {}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_pattern_through_the_cli_equals_the_api(run: Run, tmp_path: Path, name: str) -> None:
    factory, extra = CASES[name]
    built = factory()
    model, layout = built if isinstance(built, tuple) else (built, None)
    path = tmp_path / f"{name}.pt"
    torch.save(model.state_dict(), path)
    flags = [f"--input-size={extra['input_size']}"] if "input_size" in extra else []
    result = run("audit", path, *FAST, "--model", f"{HERE}:{name}", *flags)
    assert result.exit_code == 0, result.stderr
    cli = Report.from_json(result.stdout)
    api = gradhealth.audit(model, layout=layout, seq_len=SEQ_LEN, batch_size=BATCH, probes="quick", **extra)
    assert cli.profile.g == pytest.approx(api.profile.g, rel=1e-10, abs=1e-300)
    assert cli.verdict == api.verdict
    assert cli.model.get("output") == api.model.get("output")
    if name == "complex_diagonal":  # |lambda| = 0.9 on every mode: g(k) = 0.9^k exactly
        assert cli.profile.g == pytest.approx(p.radius_profile(0.9, SEQ_LEN), rel=1e-10)

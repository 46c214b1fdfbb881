"""Contract: every probe runs, or skips with a reason, on every model family, and leaves no trace behind."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from torch import nn

import gradhealth
from gradhealth.config import PRESETS
from gradhealth.plugins import probe_classes

PROBES = [name for name in PRESETS["thorough"] if name != "lag_profile"]


def _module(model: Any) -> nn.Module | None:
    return model if isinstance(model, nn.Module) else getattr(model, "step", None)


def _snapshot(model: Any) -> dict[str, Any]:
    module = _module(model)
    if not isinstance(module, nn.Module):
        return {}
    return {
        "params": {n: (p.detach().clone(), p.requires_grad) for n, p in module.named_parameters()},
        "grads": {n: p.grad for n, p in module.named_parameters()},
        "training": [m.training for m in module.modules()],
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in module.modules()],
    }


def test_every_thorough_probe_is_registered() -> None:
    assert set(PROBES) <= set(probe_classes())


@pytest.mark.usefixtures("short_ladder")
def test_every_probe_runs_or_skips_and_leaves_no_trace(table_model: tuple[str, Any, dict[str, Any]]) -> None:
    name, model, kwargs = table_model
    module = _module(model)
    if isinstance(module, nn.Module):
        module.train()
    before = _snapshot(model)
    rng = torch.get_rng_state()
    report = gradhealth.audit(model, seq_len=6, batch_size=2, probes="thorough", **kwargs)
    assert torch.equal(torch.get_rng_state(), rng), name
    after = _snapshot(model)
    if before:
        for key, (value, flag) in before["params"].items():
            assert torch.equal(value, after["params"][key][0]) and flag == after["params"][key][1], (name, key)
        assert all(g is None for g in after["grads"].values()), name
        assert before["training"] == after["training"], name
        assert before["hooks"] == after["hooks"], name
    for probe in PROBES:
        ran, skipped = probe in report.probes, probe in report.skipped_probes
        assert ran != skipped, (name, probe)
        if skipped:
            assert len(report.skipped_probes[probe]) > 20, (name, probe)
    assert json.loads(report.to_json())["probes"].keys() == report.probes.keys()
    for finding in report.findings:
        assert finding.advice, finding.code


EXPECTED_RUNS = {
    "rnn_tanh": {"parameter_gradients", "spectrum", "state_gradients", "length_scan", "lyapunov"},
    "lstm_stacked_bi_proj": set(PROBES),
    "gru_cell": set(PROBES),
    "token_dataclass": set(PROBES),
    "unrolled_step": set(PROBES),
    "linear_recurrence": {"parameter_gradients", "length_scan"},
}


@pytest.mark.parametrize("name", sorted(EXPECTED_RUNS))
@pytest.mark.usefixtures("short_ladder")
def test_probes_that_apply_run(name: str) -> None:
    from tests.conftest import MODEL_TABLE

    factory, kwargs = MODEL_TABLE[name]
    torch.manual_seed(0)
    report = gradhealth.audit(factory(), seq_len=6, batch_size=2, probes="thorough", **kwargs)
    assert set(report.probes) == EXPECTED_RUNS[name]

"""Helpers for probe tests: a probe context over a model, and small reference step functions."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import gradhealth
from gradhealth.config import AuditConfig
from gradhealth.plugins import adapt, get_task
from gradhealth.probes.base import ProbeContext
from gradhealth.probes.length_scan import LengthScan


def probe_context(
    model: Any, *, dtype: torch.dtype = torch.float64, layout: gradhealth.Layout | None = None, **settings: Any
) -> ProbeContext:
    """The context the engine would hand a probe: an adapter over a copy of ``model`` in ``dtype``, in eval mode."""
    settings.setdefault("seq_len", 16)
    settings.setdefault("batch_size", 4)
    config = AuditConfig(**settings)
    adapter = adapt(model, layout)
    copy = adapter.materialize(dtype, torch.device("cpu"))
    if copy.module is not None:
        copy.module.eval()
    input_size = config.input_size or adapter.input_size
    assert input_size is not None
    return ProbeContext(copy, config, get_task(config.task), dtype, torch.device("cpu"), input_size)


def linear_unrolled(weight: torch.Tensor) -> gradhealth.Unrolled:
    """h_t = W h_{t-1} + x_t, y_t = h_t, as a step function (g(k) = ‖W^k‖-like, exactly ρ^k for W = ρQ)."""
    size = weight.shape[0]

    def step(x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = h @ weight.to(x).t() + x
        return h, h

    return gradhealth.Unrolled(
        step, input_size=size, init_state=lambda b, dtype, device: torch.zeros(b, size, dtype=dtype, device=device)
    )


@pytest.fixture
def short_ladder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the length scan cheap when the engine constructs it."""
    monkeypatch.setattr(LengthScan, "ladder", (8, 16, 32))

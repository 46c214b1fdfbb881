"""Snapshot and restore everything an audit could disturb: RNG streams, grad mode, and (when a model has to be
probed in place) its train/eval modes, ``requires_grad`` flags, ``.grad`` tensors and hooks.

The per-thread denormal flush lives in :mod:`gradhealth._denormals` and is re-exported here for the engine."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from gradhealth._denormals import (
    FlushStatus,
    flush_denormals,
    is_flushing_denormals,
    measure_flushed_fraction,
    set_flush_denormal_all_threads,
)

__all__ = [
    "FlushStatus",
    "flush_denormals",
    "is_flushing_denormals",
    "measure_flushed_fraction",
    "preserved_state",
    "set_flush_denormal_all_threads",
]

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)


def _module_snapshot(module: nn.Module) -> dict[str, Any]:
    return {
        "training": [(m, m.training) for m in module.modules()],
        "params": [(p, p.requires_grad, p.grad) for p in module.parameters()],
        "hooks": [
            (m, name, dict(getattr(m, name))) for m in module.modules() for name in _HOOK_DICTS if hasattr(m, name)
        ],
    }


def _restore_module(snapshot: dict[str, Any]) -> None:
    for m, training in snapshot["training"]:
        m.training = training
    for p, requires_grad, grad in snapshot["params"]:
        p.requires_grad_(requires_grad)
        p.grad = grad
    for m, name, hooks in snapshot["hooks"]:
        current = getattr(m, name)
        current.clear()
        current.update(hooks)


@contextmanager
def preserved_state(model: Any) -> Iterator[None]:
    """Restore global RNG states, grad mode and the model's module state on exit, also on error."""
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None  # type: ignore[no-untyped-call]
    grad_enabled = torch.is_grad_enabled()
    snapshot = _module_snapshot(model) if isinstance(model, nn.Module) else None
    try:
        yield
    finally:
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        torch.set_grad_enabled(grad_enabled)
        if snapshot is not None:
            _restore_module(snapshot)

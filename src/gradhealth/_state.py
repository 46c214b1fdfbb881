"""Snapshot and restore everything an audit could disturb: RNG streams, grad mode, and (when a model has to be
probed in place) its train/eval modes, ``requires_grad`` flags, ``.grad`` tensors and hooks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = ["flush_denormals", "is_flushing_denormals", "preserved_state"]

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


def is_flushing_denormals() -> bool:
    """Whether the CPU flushes denormal floats to zero (torch has a setter but no getter: a denormal input
    multiplied by one comes out as zero exactly when denormals-are-zero is on)."""
    return bool((torch.tensor([1e-39], dtype=torch.float32) * 1.0).item() == 0.0)


@contextmanager
def flush_denormals(enabled: bool = True) -> Iterator[None]:
    """Flush denormals to zero for the duration, then restore the caller's setting.

    A lag profile decays by design, so BPTT from one output step drives gradients through the denormal range,
    where x86 arithmetic is an order of magnitude slower. Values there lie below the resolution floor
    (tiny/eps) and are reported as unresolved either way, so flushing them changes no resolved number.
    """
    if not enabled:
        yield
        return
    before = is_flushing_denormals()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)

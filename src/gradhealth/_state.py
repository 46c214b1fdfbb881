"""Snapshot and restore everything an audit could disturb: RNG streams, grad mode, and (when a model has to be
probed in place) its train/eval modes, ``requires_grad`` flags, ``.grad`` tensors and hooks."""

from __future__ import annotations

import ctypes
import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = ["flush_denormals", "is_flushing_denormals", "preserved_state", "set_flush_denormal_all_threads"]

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
    """Whether this thread flushes denormal floats to zero (torch has a setter but no getter: a denormal input
    multiplied by one comes out as zero exactly when denormals-are-zero is on)."""
    return bool((torch.tensor([1e-39], dtype=torch.float32) * 1.0).item() == 0.0)


@functools.lru_cache(maxsize=1)
def _openmp_runtime() -> ctypes.CDLL | None:
    """The OpenMP runtime torch has loaded, if it exports GNU's ``GOMP_parallel`` (libgomp, and LLVM's and
    Intel's runtimes through their GNU compatibility layer); ``None`` elsewhere."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "omp" in line.rsplit("/", 1)[-1] and ".so" in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
            parallel = lib.GOMP_parallel
        except (OSError, AttributeError):
            continue
        parallel.argtypes = [_TEAM_FUNCTION, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        parallel.restype = None
        return lib
    return None


_TEAM_FUNCTION = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def set_flush_denormal_all_threads(enabled: bool) -> int:
    """Set flush-to-zero on this thread and on every thread of torch's OpenMP pool.

    ``torch.set_flush_denormal`` only sets the calling thread's floating-point control register, while torch's
    kernels run on the OpenMP worker threads too. Running the setter once on each thread of an OpenMP team
    reaches them.

    Returns:
        The number of threads set (1 when no OpenMP runtime with ``GOMP_parallel`` is loaded).
    """
    torch.set_flush_denormal(enabled)
    runtime = _openmp_runtime()
    threads = torch.get_num_threads()
    if runtime is None or threads <= 1:
        return 1
    reached: set[int] = set()

    def on_each_thread(_: object) -> None:
        torch.set_flush_denormal(enabled)
        reached.add(threading.get_native_id())

    callback = _TEAM_FUNCTION(on_each_thread)  # kept alive for the duration of the call
    runtime.GOMP_parallel(callback, None, threads, 0)
    return len(reached)


@contextmanager
def flush_denormals(enabled: bool = True) -> Iterator[None]:
    """Flush denormals to zero on every torch CPU thread for the duration, then restore the caller's setting.

    A lag profile decays by design, so BPTT from one output step drives gradients through the denormal range,
    where x86 arithmetic is an order of magnitude slower. Values there lie below the resolution floor
    (tiny/eps) and are reported as unresolved either way, so flushing them changes no resolved number.
    """
    if not enabled:
        yield
        return
    before = is_flushing_denormals()
    set_flush_denormal_all_threads(True)
    try:
        yield
    finally:
        set_flush_denormal_all_threads(before)

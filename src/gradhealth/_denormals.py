"""Flush denormal floats to zero on every thread torch computes on, check that it took, and give each thread back
its own setting afterwards.

A lag profile decays by design, so backpropagating from one output step drives float32 gradients through the
denormal range, where x86 arithmetic is about ten times slower. ``torch.set_flush_denormal`` only sets the calling
thread's control register (MXCSR), while torch's kernels also run on the threads of its OpenMP team; this module
reaches those threads by running a small function on each of them through torch's own OpenMP runtime.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = [
    "FlushStatus",
    "flush_denormals",
    "is_flushing_denormals",
    "measure_flushed_fraction",
    "set_flush_denormal_all_threads",
]

# Names, not literals: CPython folds a constant expression such as `5e-324 * 1.0` when it compiles the code, on
# whatever thread compiles it, so only a multiply of two variables runs under the current thread's MXCSR.
_TINY = float("5e-324")
_ONE = 1.0
# The float32 bit pattern of 2**-127, a denormal. Built from integers so that no float conversion on a flushing
# thread can zero it before the multiply that is being measured.
_DENORMAL_BITS = 0x00400000
# torch splits an elementwise op into chunks of at least at::internal::GRAIN_SIZE (32768) elements. Two grains per
# thread keep every thread busy even if torch doubles its grain size, and keep the op small: where a thread does not
# flush, its share runs on the slow denormal path.
_ELEMENTS_PER_THREAD = 2 * 32768
# The process that imported this module. Another pid means a forked child, whose OpenMP runtime still believes in
# the parent's worker threads: libgomp is not fork-safe, so starting a team there waits for them forever.
_IMPORT_PID = os.getpid()
# Opens a library that is already loaded without loading anything and without widening its symbol scope.
_NOLOAD_MODE = getattr(os, "RTLD_NOLOAD", 0) | getattr(os, "RTLD_LAZY", 0)
_TEAM_FUNCTION = ctypes.CFUNCTYPE(None, ctypes.c_void_p)

_Parallel = Callable[[object, object, int, int], None]


@dataclass(frozen=True)
class FlushStatus:
    """What :func:`flush_denormals` did, for the engine to report when flushing did not reach every thread.

    Flushing only saves time: values in the denormal range lie below the resolution floor and are unresolved either
    way, so an incomplete flush is a speed note, never a correctness finding.

    Attributes:
        requested: whether flushing was asked for; when ``False`` nothing was touched and the other fields are idle.
        threads_set: how many threads had flush-to-zero set, the calling thread included (0 where the CPU cannot
            flush denormals).
        threads: torch's intra-op thread count when the context was entered.
        verified_fraction: the measured share of an elementwise op's outputs that came out flushed, with the op
            split evenly across torch's intra-op threads (see :func:`measure_flushed_fraction`): 1.0 when every
            thread flushes, about ``1 / threads`` when only the caller does; ``None`` when it could not be measured
            safely (in a forked child).
        reason: why flushing does not reach, or could not be shown to reach, every thread of torch; ``None``
            exactly when flushing was not requested or was measured on every thread.
    """

    requested: bool
    threads_set: int
    threads: int
    verified_fraction: float | None
    reason: str | None


def is_flushing_denormals() -> bool:
    """Whether the calling thread flushes denormal floats to zero.

    torch has a setter but no getter. On x86-64 CPython's float arithmetic runs on SSE, which obeys the same MXCSR
    flush-to-zero and denormals-are-zero bits that torch sets, so multiplying the smallest denormal double by one
    answers the question thread-locally in well under a microsecond. That is checked once against torch's own
    kernels; where it does not hold, a small torch multiply answers instead.

    Returns:
        ``True`` when a denormal multiplied on this thread comes out as zero.
    """
    if _python_floats_see_flushing():
        return _TINY * _ONE == 0.0
    return _torch_is_flushing()


def measure_flushed_fraction() -> float | None:
    """Measure which share of torch's intra-op threads flushes denormals, by running one op across all of them.

    A float32 tensor of ``threads * 65536`` copies of the denormal 2**-127 is halved by torch, which gives each
    intra-op thread an equal contiguous chunk; a thread that flushes writes zeros. The outputs are counted as
    integers, because a float comparison on a flushing thread would see every denormal as zero. It costs about
    0.05 ms on two idle cores (the team's start-up dominates; more on a loaded machine).

    Returns:
        The fraction of outputs that came out as exactly zero: 1.0 when every thread flushes, ``k / threads`` when
        ``k`` of them do (0.5 on two threads when only the caller flushes). ``None`` in a forked child with more
        than one thread, where a parallel op would wait forever for the parent's OpenMP threads.
    """
    threads = torch.get_num_threads()
    if threads > 1 and _is_forked_child():
        return None
    count = threads * _ELEMENTS_PER_THREAD
    denormals = torch.full((count,), _DENORMAL_BITS, dtype=torch.int32).view(torch.float32)
    # Halving keeps the result denormal, so a thread that only flushes results (FTZ without DAZ) is caught too,
    # and no kernel can skip the multiply as it might a multiply by one.
    kept = int(torch.count_nonzero((denormals * 0.5).view(torch.int32)))
    return 1.0 - kept / count


def set_flush_denormal_all_threads(enabled: bool) -> int:
    """Set flush-to-zero on the calling thread and on every thread of torch's OpenMP team.

    This overwrites every thread's setting with ``enabled``; :func:`flush_denormals` is the scoped form that gives
    each thread back its own previous setting.

    Args:
        enabled: whether denormals should be flushed to zero.

    Returns:
        The number of threads set: ``torch.get_num_threads()`` when torch's OpenMP runtime could be reached, 1 when
        only the calling thread could (no such runtime, a single thread, or a forked child), 0 when this CPU cannot
        flush denormals (``torch.set_flush_denormal`` refuses).
    """
    if not torch.set_flush_denormal(enabled):
        return 0
    threads = torch.get_num_threads()
    parallel, _ = _team_runtime(threads)
    if parallel is None:
        return 1
    return len(_on_each_thread(parallel, threads, lambda: torch.set_flush_denormal(enabled)))


@contextmanager
def flush_denormals(enabled: bool = True) -> Iterator[FlushStatus]:
    """Flush denormals to zero on every torch CPU thread for the duration, then give each thread back its own setting.

    Values in the denormal range lie below the resolution floor (tiny/eps) and are reported as unresolved either
    way, so flushing them changes no resolved number; it only avoids the slow path of x86 arithmetic. Each thread's
    previous setting is recorded by native thread id and restored to that thread alone; a thread that torch started
    inside the context gets the caller's previous setting, which it would have inherited.

    Args:
        enabled: ``False`` makes this a no-op that yields an idle status (so callers need no second code path).

    Yields:
        A :class:`FlushStatus`: how many threads were set and the measured flushed fraction on torch's threads,
        with a ``reason`` whenever flushing could not be applied to, or verified on, every thread.

    Example::

        >>> before = is_flushing_denormals()
        >>> with flush_denormals() as status:
        ...     assert status.requested
        ...     assert status.reason is not None or status.verified_fraction == 1.0
        >>> is_flushing_denormals() == before
        True
    """
    threads = torch.get_num_threads()
    if not enabled:
        yield FlushStatus(requested=False, threads_set=0, threads=threads, verified_fraction=None, reason=None)
        return
    caller_before = is_flushing_denormals()
    # Setting the caller's own current value asks whether the CPU can flush at all without changing anything.
    if not torch.set_flush_denormal(caller_before):
        unsupported = "this CPU cannot flush denormals (torch.set_flush_denormal is x86-only), so none were flushed"
        yield FlushStatus(requested=True, threads_set=0, threads=threads, verified_fraction=None, reason=unsupported)
        return
    parallel, why_caller_only = _team_runtime(threads)
    if parallel is None:
        previous = {threading.get_native_id(): caller_before}
        torch.set_flush_denormal(True)
    else:
        previous = _set_each_thread(parallel, threads)
    try:
        fraction = measure_flushed_fraction()
        reason = _incomplete_reason(why_caller_only, fraction, threads)
        yield FlushStatus(
            requested=True, threads_set=len(previous), threads=threads, verified_fraction=fraction, reason=reason
        )
    finally:
        _restore_each_thread(previous, caller_before, parallel, max(threads, torch.get_num_threads()))


def _set_each_thread(parallel: _Parallel, threads: int) -> dict[int, bool]:
    """Turn flushing on across an OpenMP team and return each thread's previous setting by native id."""
    previous: dict[int, bool] = {}

    def record_and_set() -> None:
        previous[threading.get_native_id()] = is_flushing_denormals()
        torch.set_flush_denormal(True)

    _on_each_thread(parallel, threads, record_and_set)
    return previous


def _restore_each_thread(
    previous: dict[int, bool], caller_before: bool, parallel: _Parallel | None, threads: int
) -> None:
    """Give every thread recorded in ``previous`` its own setting back; unrecorded threads get the caller's."""
    if parallel is None or _is_forked_child():
        # Forked inside the context: only this thread exists here, and a team would hang.
        torch.set_flush_denormal(previous.get(threading.get_native_id(), caller_before))
        return
    # A team at least as large as the one that was set reaches the same pool threads again, even if torch's thread
    # count was lowered inside the context.
    _on_each_thread(
        parallel, threads, lambda: torch.set_flush_denormal(previous.get(threading.get_native_id(), caller_before))
    )


def _on_each_thread(parallel: _Parallel, threads: int, action: Callable[[], object]) -> set[int]:
    """Run ``action`` once on each thread of an OpenMP team of ``threads`` (the caller is one); return their ids."""
    _python_floats_see_flushing()  # settle the one-off check on this thread, never on a worker
    reached: set[int] = set()

    def run(_: object) -> None:
        action()
        reached.add(threading.get_native_id())

    callback = _TEAM_FUNCTION(run)  # a local keeps the C callback alive for the duration of the call
    parallel(callback, None, threads, 0)
    return reached


def _team_runtime(threads: int) -> tuple[_Parallel | None, str | None]:
    """torch's ``GOMP_parallel`` when a team should and can be started here; else ``None`` and why only the caller."""
    if threads <= 1:
        return None, None
    if _is_forked_child():
        return None, "this is a forked child process, where the OpenMP runtime is not fork-safe"
    return _openmp_parallel()


@functools.lru_cache(maxsize=1)
def _openmp_parallel() -> tuple[_Parallel | None, str | None]:
    """``GOMP_parallel`` of the OpenMP runtime torch itself is linked with, or ``None`` and why not.

    The symbol is looked up through the handle of torch's own CPU library: ``dlsym`` on a library handle searches
    that library and its dependency tree, so it finds the runtime torch uses (the wheels bundle a libgomp; LLVM's
    and Intel's runtimes export ``GOMP_parallel`` too), not another copy that happens to be loaded, such as the
    libgomp vendored by scikit-learn, whose team would be a different set of threads.
    """
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None, "torch's intra-op threads are not OpenMP threads in this build"
    library = _torch_cpu_library()
    if library is None:
        return None, f"torch's CPU library was not found in {Path(torch.__file__).parent / 'lib'}"
    try:
        parallel = ctypes.CDLL(str(library), mode=_NOLOAD_MODE).GOMP_parallel
    except OSError:
        return None, f"{library} could not be opened as an already loaded library"
    except AttributeError:
        return None, f"the OpenMP runtime that {library.name} is linked with exports no GOMP_parallel"
    parallel.argtypes = [_TEAM_FUNCTION, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    parallel.restype = None
    return parallel, None


def _torch_cpu_library() -> Path | None:
    """The file of torch's CPU library (``libtorch_cpu``), which links the OpenMP runtime torch's kernels use."""
    folder = Path(torch.__file__).parent / "lib"
    for name in ("libtorch_cpu.so", "libtorch_cpu.dylib", "torch_cpu.dll"):
        if (folder / name).is_file():
            return folder / name
    return None


def _incomplete_reason(why_caller_only: str | None, fraction: float | None, threads: int) -> str | None:
    """The status reason: ``None`` when every thread was measured flushing, else what happened and what was seen."""
    if fraction == 1.0:
        return None
    if fraction is None:
        return f"{why_caller_only}: only the calling thread flushes denormals (not measured: it would hang)"
    seen = f"{fraction:.0%} of an elementwise op's outputs on {threads} threads came out flushed"
    if why_caller_only is not None:
        return f"{why_caller_only}: only the calling thread flushes denormals ({seen})"
    return f"flush-to-zero was set, yet only {seen}"


def _is_forked_child() -> bool:
    """Whether this process was forked after this module was imported (``os.fork``, ``multiprocessing``'s fork)."""
    return os.getpid() != _IMPORT_PID


def _torch_is_flushing() -> bool:
    """Whether a torch multiply on this thread flushes a denormal: the slower, assumption-free check."""
    denormal = torch.tensor([_DENORMAL_BITS], dtype=torch.int32).view(torch.float32)
    return int((denormal * 0.5).view(torch.int32).item()) == 0


@functools.lru_cache(maxsize=1)
def _python_floats_see_flushing() -> bool:
    """Whether CPython's float multiply obeys the flush setting torch makes, checked once on this thread by switching
    it on and off and comparing with torch's own kernel (true on x86-64, where both run on SSE)."""
    before = _torch_is_flushing()
    try:
        return all(
            torch.set_flush_denormal(enabled) and (_TINY * _ONE == 0.0) == enabled == _torch_is_flushing()
            for enabled in (True, False)
        )
    finally:
        torch.set_flush_denormal(before)

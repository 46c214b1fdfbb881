"""Denormal flushing, measured on torch's own worker threads: it reaches every one of them, through torch's own
OpenMP runtime, gives each thread back exactly its own setting, never hangs a forked child, and changes no resolved
number of an audit."""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import sys
import sysconfig
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from torch import nn

import gradhealth
import gradhealth.engine
from gradhealth import _denormals, reference
from gradhealth._denormals import (
    FlushStatus,
    flush_denormals,
    is_flushing_denormals,
    measure_flushed_fraction,
    set_flush_denormal_all_threads,
)
from gradhealth.probes import _bptt

# x86 only; setting "off" also gives every test the starting point it assumes: no thread flushes
CAN_FLUSH = torch.set_flush_denormal(False)
needs_flush = pytest.mark.skipif(not CAN_FLUSH, reason="torch.set_flush_denormal is not supported on this CPU")


@pytest.fixture
def two_threads() -> Iterator[None]:
    """Two intra-op threads, so the measured fraction tells the caller (thread 0) from the worker (thread 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert measure_flushed_fraction() == 0.0, "a thread was left flushing by an earlier test"
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(threads)


def requires_torch_runtime() -> None:
    parallel, why_not = _denormals._openmp_parallel()
    if parallel is None:
        pytest.skip(f"torch's OpenMP runtime cannot be reached here: {why_not}")


def library_of(function: object) -> Path:
    """The file of the loaded library that defines a ctypes function (glibc's dladdr)."""

    class DlInfo(ctypes.Structure):
        _fields_ = [
            ("dli_fname", ctypes.c_char_p),
            ("dli_fbase", ctypes.c_void_p),
            ("dli_sname", ctypes.c_char_p),
            ("dli_saddr", ctypes.c_void_p),
        ]

    info = DlInfo()
    address = ctypes.cast(function, ctypes.c_void_p)
    assert ctypes.CDLL(None).dladdr(address, ctypes.byref(info)) != 0
    return Path(info.dli_fname.decode()).resolve()


@needs_flush
def test_python_float_check_agrees_with_torch_on_this_thread() -> None:
    # is_flushing_denormals relies on CPython's float multiply obeying torch's MXCSR bits (x86-64 SSE); compare it
    # with an independent torch multiply in both states
    try:
        for enabled in (True, False, True):
            torch.set_flush_denormal(enabled)
            assert is_flushing_denormals() is enabled
            assert _denormals._torch_is_flushing() is enabled
    finally:
        torch.set_flush_denormal(False)


@needs_flush
def test_measured_fraction_tells_caller_from_worker(two_threads: None) -> None:
    # the measurement itself: caller only flushes -> half of the outputs; no thread -> none; every thread -> all
    torch.set_flush_denormal(True)
    assert measure_flushed_fraction() == 0.5
    torch.set_flush_denormal(False)
    assert measure_flushed_fraction() == 0.0


@needs_flush
def test_flushing_reaches_every_torch_thread_and_ends_with_the_context(two_threads: None) -> None:
    requires_torch_runtime()
    with flush_denormals() as status:
        assert measure_flushed_fraction() == 1.0
    assert status == FlushStatus(requested=True, threads_set=2, threads=2, verified_fraction=1.0, reason=None)
    assert measure_flushed_fraction() == 0.0
    assert not is_flushing_denormals()


@needs_flush
@pytest.mark.parametrize("flushing", ["caller", "workers"])
def test_each_thread_gets_its_own_setting_back(two_threads: None, flushing: str) -> None:
    requires_torch_runtime()
    if flushing == "caller":
        torch.set_flush_denormal(True)
    else:
        set_flush_denormal_all_threads(True)
        torch.set_flush_denormal(False)
    before = measure_flushed_fraction()
    assert before is not None and 0.0 < before < 1.0  # one of the two threads flushes
    with flush_denormals() as status:
        assert status.verified_fraction == 1.0
    assert measure_flushed_fraction() == before
    assert is_flushing_denormals() is (flushing == "caller")
    torch.set_flush_denormal(False)
    if flushing == "workers":
        set_flush_denormal_all_threads(False)
    assert measure_flushed_fraction() == 0.0  # the caller's choice was not copied onto the worker, or back


def second_openmp_runtime(torch_runtime: Path) -> Path | None:
    """A GOMP-compatible OpenMP runtime installed on this machine that is not the file torch uses."""
    folders = [Path(sysconfig.get_config_var("LIBDIR") or sys.prefix)]
    multiarch = sysconfig.get_config_var("MULTIARCH")
    if multiarch:
        folders += [Path("/lib") / multiarch, Path("/usr/lib") / multiarch]
    folders += [Path(p) for p in ("/lib64", "/usr/lib64", "/lib", "/usr/lib", "/usr/local/lib")]
    names = [name for stem in ("gomp", "omp", "iomp5") if (name := ctypes.util.find_library(stem))]
    for name in names:
        for folder in folders:
            if (folder / name).is_file() and (folder / name).resolve() != torch_runtime:
                return folder / name
    return None


@needs_flush
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="dladdr and library search paths are glibc's")
def test_a_second_openmp_runtime_loaded_first_is_not_used(two_threads: None) -> None:
    requires_torch_runtime()
    parallel, _ = _denormals._openmp_parallel()
    torch_runtime = library_of(parallel)
    decoy_path = second_openmp_runtime(torch_runtime)
    if decoy_path is None:
        pytest.skip("no second OpenMP runtime (libgomp/libomp/libiomp5) is installed on this machine")
    # a full path loads a second copy even when the name matches torch's (what a vendored libgomp amounts to)
    decoy = ctypes.CDLL(str(decoy_path)).GOMP_parallel
    decoy.argtypes = parallel.argtypes
    _denormals._openmp_parallel.cache_clear()  # look torch's runtime up again, now with the look-alike loaded
    assert library_of(decoy) != torch_runtime
    # control: the look-alike's team is other threads than torch's, so flushing through it misses torch's worker
    _denormals._on_each_thread(decoy, 2, lambda: torch.set_flush_denormal(True))
    try:
        assert measure_flushed_fraction() == 0.5
    finally:
        _denormals._on_each_thread(decoy, 2, lambda: torch.set_flush_denormal(False))
    assert measure_flushed_fraction() == 0.0
    with flush_denormals() as status:
        assert measure_flushed_fraction() == 1.0
    assert status.verified_fraction == 1.0 and status.reason is None
    assert measure_flushed_fraction() == 0.0


def audit_in_forked_child() -> None:
    """Runs in the child: a flush sets the calling thread only and says why, and a small audit completes."""
    with flush_denormals() as status:
        assert status.threads_set == 1, status
        assert status.verified_fraction is None, status
        assert status.reason is not None and "forked child" in status.reason, status
        assert is_flushing_denormals()
        gradhealth.audit(nn.RNN(2, 3, batch_first=True), seq_len=8, batch_size=2, probes="quick")
    assert not is_flushing_denormals()


@needs_flush
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_child_after_a_flush_does_not_hang(two_threads: None) -> None:
    with flush_denormals() as status:  # the parent's OpenMP team now exists, which a fork cannot copy
        assert status.threads_set >= 1
    assert measure_flushed_fraction() == 0.0  # a parallel op: the team has run in this process
    child = multiprocessing.get_context("fork").Process(target=audit_in_forked_child)
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
        child.join()
        pytest.fail("the forked child hung (an OpenMP team started after fork waits forever)")
    assert child.exitcode == 0  # an assertion error in the child shows as 1, its traceback on stderr


@needs_flush
def test_without_a_runtime_only_the_caller_flushes_and_the_status_says_so(
    two_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_denormals, "_openmp_parallel", lambda: (None, "no runtime here"))
    with flush_denormals() as status:
        assert is_flushing_denormals()
    assert status.threads_set == 1
    assert status.verified_fraction == 0.5
    assert status.reason is not None and status.reason.startswith("no runtime here: only the calling thread")
    assert "50%" in status.reason
    assert measure_flushed_fraction() == 0.0


def test_disabled_touches_nothing() -> None:
    torch.set_flush_denormal(False)
    with flush_denormals(False) as status:
        assert not is_flushing_denormals()
    assert status == FlushStatus(
        requested=False, threads_set=0, threads=torch.get_num_threads(), verified_fraction=None, reason=None
    )


@contextmanager
def no_flush(enabled: bool = True) -> Iterator[FlushStatus]:
    with flush_denormals(False) as status:
        yield status


@needs_flush
def test_flushing_changes_no_resolved_value(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0.3**k in float32, lifted by the probe's seed scale 2^96 (about 1e29), enters the denormal range near
    # k = 128, so K = 200 puts a real denormal tail in the profile
    model = reference.LinearRecurrence(4, 0.3)
    flushed = gradhealth.audit(model, seq_len=200, batch_size=4, dtype="float32", probes="quick").profile
    monkeypatch.setattr(_bptt, "backward_scope", lambda device, *, flush: no_flush())
    plain = gradhealth.audit(model, seq_len=200, batch_size=4, dtype="float32", probes="quick").profile
    assert flushed.resolved == plain.resolved
    resolved = [k for k, ok in enumerate(plain.resolved) if ok]
    # the same float32 arithmetic on normal numbers: only a flushed denormal term could change a sum's last bit
    assert [flushed.g[k] for k in resolved] == pytest.approx([plain.g[k] for k in resolved], rel=1e-6)
    # the comparison is not vacuous: without flushing, the tail keeps denormal gradients that flushing zeroes
    tail = [k for k, ok in enumerate(plain.resolved) if not ok]
    assert any(plain.grad_norm[k] > 0.0 == flushed.grad_norm[k] for k in tail)

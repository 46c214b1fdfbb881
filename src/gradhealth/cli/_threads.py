"""Torch CPU threads per audit job: the CPUs this process may use, shared among the jobs.

torch's default pool is one thread per physical core of the machine, whatever share of it the process may use:
on a CI runner limited by a CPU quota, or with several jobs, the threads oversubscribe the CPUs and spin.
Standard library only (torch is imported only where the count is applied).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["SMALL_MODEL_PARAMETERS", "available_cpus", "threads_for_model", "threads_per_job", "torch_threads"]

#: Below this many parameters, one thread is the default: the probe's matrices are too small for intra-op threads
#: to pay for their synchronisation (measured: 4 GRU(16, 64) audits, 1.9 s with one thread, 6.6 s with two).
SMALL_MODEL_PARAMETERS = 1_000_000


def _quota_cpus() -> int | None:
    """The cgroup v2 CPU quota in whole CPUs (``/sys/fs/cgroup/cpu.max``), or ``None`` when there is none."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, int(quota) // int(period))
    except (ValueError, ZeroDivisionError):
        return None


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    quota = _quota_cpus()
    return max(1, min(cpus, quota) if quota else cpus)


def threads_per_job(threads: int | None, jobs: int) -> int | None:
    """The torch threads each job uses: ``threads`` if set, else ``None`` when ``OMP_NUM_THREADS`` is set (torch
    reads it), else the available CPUs divided by ``jobs``, at least 1."""
    if threads is not None:
        return threads
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    return max(1, available_cpus() // max(1, jobs))


def threads_for_model(per_job: int | None, parameters: int, *, is_explicit: bool) -> int | None:
    """The threads for one model: ``per_job`` if the user set it (or ``None``: leave torch alone), else one thread
    for a model under :data:`SMALL_MODEL_PARAMETERS` parameters, else ``per_job``."""
    if is_explicit or per_job is None:
        return per_job
    return 1 if parameters < SMALL_MODEL_PARAMETERS else per_job


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` torch intra-op threads (``None``: leave them), restored afterwards."""
    if count is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)

"""An audit leaves the caller's process as it was: each torch thread's denormal mode, Python's ``random`` (also on
the first audit, whose imports run then), the user's hooks (they never see probe traffic); and Ctrl-C during
``gradhealth audit --jobs 2`` stops the workers and exits 130 with one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import gradhealth
from gradhealth import _denormals
from gradhealth._denormals import is_flushing_denormals, measure_flushed_fraction, set_flush_denormal_all_threads
from gradhealth.adapters.base import remove_user_hooks

CAN_FLUSH = torch.set_flush_denormal(False)
FAST = {"seq_len": 8, "batch_size": 2, "probes": "quick"}


@pytest.fixture
def two_threads() -> Iterator[None]:
    """Two intra-op threads: the measured flushed fraction tells the caller (0.5) from both threads (1.0)."""
    if not CAN_FLUSH:
        pytest.skip("torch.set_flush_denormal is not supported on this CPU")
    if _denormals._openmp_parallel()[0] is None:
        pytest.skip("torch's OpenMP runtime cannot be reached here")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert measure_flushed_fraction() == 0.0, "a thread was left flushing by an earlier test"
        yield
    finally:
        set_flush_denormal_all_threads(False)
        torch.set_num_threads(threads)


def test_caller_flushing_on_the_main_thread_only_stays_there(two_threads: None) -> None:
    torch.set_flush_denormal(True)
    gradhealth.audit(nn.RNN(3, 4, batch_first=True), **FAST)
    assert is_flushing_denormals()
    assert measure_flushed_fraction() == 0.5  # the worker thread was given back "not flushing"
    torch.set_flush_denormal(False)
    assert measure_flushed_fraction() == 0.0  # and clearing the caller's flag clears every thread


def test_caller_that_cleared_its_own_flag_keeps_it_cleared(two_threads: None) -> None:
    set_flush_denormal_all_threads(True)
    torch.set_flush_denormal(False)
    gradhealth.audit(nn.RNN(3, 4, batch_first=True), **FAST)
    assert not is_flushing_denormals()
    assert measure_flushed_fraction() == 0.5  # the worker still flushes, as the caller left it


def test_first_audit_in_a_process_leaves_python_random_alone() -> None:
    # In a fresh interpreter, so that the audit's first imports (rich draws from `random` at import) happen inside.
    script = textwrap.dedent(
        """
        import random
        random.seed(1234)
        before = random.getstate()
        import torch, gradhealth
        gradhealth.audit(torch.nn.RNN(3, 4, batch_first=True), seq_len=4, batch_size=2, probes="quick")
        print(random.getstate() == before)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def hook(self, name: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> None:
            self.calls.append(name)

        return record


def test_users_hooks_do_not_fire_on_the_probe_copy() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.RNN(3, 4, batch_first=True))
    rnn = model[1]
    seen = _Recorder()
    handles = [
        model.register_forward_hook(seen.hook("model forward")),
        rnn.register_forward_pre_hook(seen.hook("rnn pre")),
        rnn.register_forward_hook(seen.hook("rnn forward kwargs"), with_kwargs=True, always_call=True),
        rnn.register_full_backward_hook(seen.hook("rnn backward")),
    ]
    layout = gradhealth.Layout(batch_first=True, output=lambda out: out[0])
    gradhealth.audit(model, layout=layout, probes="standard", seq_len=8, batch_size=2)
    assert seen.calls == []
    # The user's model keeps its hooks, and they still fire on the user's own calls.
    out, _ = model(torch.randn(2, 5, 3))
    out.sum().backward()
    assert sorted(set(seen.calls)) == ["model forward", "rnn backward", "rnn forward kwargs", "rnn pre"]
    for handle in handles:
        handle.remove()


def test_torchs_own_hooks_stay_on_the_copy() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated in favour of parametrizations, which use no hook at all
        linear = torch.nn.utils.weight_norm(nn.Linear(3, 3))
    linear.register_forward_pre_hook(lambda module, args: None)
    linear.register_forward_hook(lambda module, args, out: None, with_kwargs=False, always_call=True)
    remove_user_hooks(linear)
    kept = list(linear._forward_pre_hooks.values())
    assert [type(h).__name__ for h in kept] == ["WeightNorm"]
    assert not linear._forward_hooks and not linear._forward_hooks_always_called


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in {"Z", "X"}


def _is_worker(pid: int) -> bool:
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the worker processes")
def test_ctrl_c_with_jobs_stops_the_workers(tmp_path: Path) -> None:
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"slow{i}.pt")
        torch.save(nn.LSTM(3, 8, batch_first=True).state_dict(), paths[-1])
    # Long audits (thousands of steps, every probe), so that the workers are busy when Ctrl-C comes.
    command = [sys.executable, "-m", "gradhealth", "audit", *map(str, paths), "--jobs", "2", "--seq-len", "3000",
               "--probes", "thorough", "--format", "json"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        workers: list[int] = []
        hang_guard = time.monotonic() + 120
        while len(workers) < 2 and proc.poll() is None and time.monotonic() < hang_guard:
            workers = [pid for pid in _children(proc.pid) if _is_worker(pid)]
            time.sleep(0.05)
        assert len(workers) == 2, "the worker processes never started"
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)  # a hang guard only: before the fix the audits ran to the end
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["gradhealth: error: interrupted"]
    assert out == ""
    for pid in workers:
        for _ in range(200):  # the parent has returned; the kernel may take a moment to reap
            if not _is_running(pid):
                break
            time.sleep(0.05)
        assert not _is_running(pid), f"worker {pid} still running after the parent exited"

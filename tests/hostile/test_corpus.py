"""The hostile corpus (tests/hostile/corpus.py) through the CLI, without --trust: no code runs, every input exits 2
with one line naming the real reason and echoing no file content, and the memory bombs stay within a bound."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from tests.hostile.corpus import BOMBS, CASES, SECRET, Case, sparse_safetensors
from typer.testing import CliRunner

from gradhealth.cli import app

FAST = ["--seq-len", "16", "--batch-size", "4", "--probes", "quick"]
#: Peak resident memory of a CLI process auditing every memory bomb; measured about 0.3-0.4 GiB (the interpreter
#: and torch alone take about 0.25 GiB); before the limits, single bombs took 1.7-4.2 GB or died allocating 40 GB.
PEAK_BOUND = 1 << 30
#: The address-space limit the bombs run under: an allocation past it fails instead of swapping the machine.
ADDRESS_LIMIT = 3 << 30


def _build(case: Case, tmp_path: Path) -> tuple[list[str], Path, Path]:
    """The inputs under ``tmp_path/work``; the CLI runs in ``tmp_path/work/sub`` (a config file sits above it)."""
    work, canary = tmp_path / "work", tmp_path / "canary"
    (work / "sub").mkdir(parents=True)
    paths, extra = case.build(work, canary)
    return [*map(str, paths), *extra], work / "sub", canary


def _ids(cases: list[Case]) -> list[str]:
    return [c.name for c in cases]


def test_the_corpus_covers_every_family() -> None:
    families = {c.family for c in CASES}
    assert families == {"payload", "archive", "legacy", "allow", "config", "memory", "folder", "file"}
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_audit_refuses_with_one_line_and_runs_nothing(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args, cwd, canary = _build(case, tmp_path)
    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(app, ["audit", *FAST, *args])
    assert not canary.exists(), "code from the input ran"
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("gradhealth: error: ")
    assert case.reason in result.stderr
    assert "Traceback" not in result.output and SECRET[:6] not in result.output
    assert "weights_only=False" not in result.stderr and "will likely succeed" not in result.stderr
    assert "None.None" not in result.stderr and ".None" not in result.stderr


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c.family in {"payload", "legacy", "archive", "folder", "file"}],
    ids=_ids([c for c in CASES if c.family in {"payload", "legacy", "archive", "folder", "file"}]),
)
def test_inspect_runs_nothing_and_never_suggests_allowing_code(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args, cwd, canary = _build(case, tmp_path)
    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(app, ["inspect", *args])
    assert not canary.exists()
    assert "Traceback" not in result.output and SECRET[:6] not in result.output
    if result.exit_code == 2:
        assert result.stderr.count("\n") == 1 and result.stdout == ""
    else:
        assert result.exit_code == 0
        assert "needs --trust (" in result.stdout and "--allow-global" not in result.stdout


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.payload is not None], ids=_ids([c for c in CASES if c.payload is not None])
)
def test_each_payload_is_real(case: Case, tmp_path: Path) -> None:
    # The control: a plain unpickle of the same bytes does create the canary, so the refusals above protect.
    canary = tmp_path / "canary"
    assert case.payload is not None
    with contextlib.suppress(Exception):  # the payload's return value may not fit the rest of the pickle
        pickle.loads(case.payload(canary))
    assert canary.exists()


def test_inspect_reads_the_header_of_a_sparse_40_gb_safetensors(tmp_path: Path) -> None:
    path = sparse_safetensors(tmp_path / "sparse.safetensors")
    result = CliRunner().invoke(app, ["inspect", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["tensors"] == [{"name": "embedding.weight", "shape": [100_000, 100_000], "dtype": "float32"}]


_PEAK = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from gradhealth.cli import app
try:
    app(sys.argv[1:])
finally:
    sys.stderr.write("PEAK %d\\n" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS and ru_maxrss in KiB: Linux")
def test_memory_bombs_stay_within_the_bound(tmp_path: Path) -> None:
    inputs, expected = [], []
    for case in BOMBS:
        args, _, _ = _build(case, tmp_path / case.name)
        paths = [a for a in args if not a.startswith("--")]
        if args != paths:  # a case with its own flags runs on its own below
            continue
        inputs += paths
        expected.append(case.reason)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run(
        [sys.executable, "-c", _PEAK.format(limit=ADDRESS_LIMIT), "audit", *FAST, *inputs],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    lines = done.stderr.splitlines()
    peak = int(lines[-1].split()[1]) * 1024
    errors = lines[:-1]
    assert done.returncode == 2, done.stderr
    assert len(errors) == len(inputs)
    for line, reason in zip(errors, expected, strict=True):
        assert reason in line, line
    assert peak < PEAK_BOUND, f"peak resident memory {peak / 2**20:.0f} MiB"

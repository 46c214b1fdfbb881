"""Security: a checkpoint that would run code is refused, named, and never executed; broken inputs exit 2."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from tests.cli.conftest import FAST
from torch import nn
from typer.testing import Result

Run = Callable[..., Result]


class Payload:
    """Unpickling this runs ``exec``, which creates a marker file: the code execution we must never allow."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def _save(kind: str, tmp_path: Path, marker: Path) -> Path:
    state = nn.GRU(3, 4, batch_first=True).state_dict()
    path = tmp_path / f"{kind}.pt"
    if kind == "zip":
        torch.save({**state, "evil": Payload(marker)}, path)
    elif kind == "legacy":
        torch.save({**state, "evil": Payload(marker)}, path, _use_new_zipfile_serialization=False)
    else:  # Lightning-style: the weights are clean, the payload hides among the hyper-parameters
        torch.save({"state_dict": state, "hyper_parameters": {"cfg": Payload(marker)}}, path)
    return path


@pytest.mark.parametrize("kind", ["zip", "legacy", "lightning"])
@pytest.mark.parametrize("command", ["audit", "inspect"])
def test_code_running_pickle_is_refused(run: Run, tmp_path: Path, kind: str, command: str) -> None:
    marker = tmp_path / "marker"
    path = _save(kind, tmp_path, marker)
    result = run(command, path, *(FAST if command == "audit" else []))
    assert not marker.exists()
    if command == "audit":
        assert result.exit_code == 2
        line = result.stderr
        assert line.count("\n") == 1
        assert "builtins.exec" in line
        assert "--trust would run that code" in line
        assert "--allow-global" not in line  # never suggest allowing the attacker's callable
    else:
        assert result.exit_code == 0
        assert "needs --trust (" in result.stdout
        assert "builtins.exec" in result.stdout
        assert "--allow-global" not in result.stdout


@pytest.mark.parametrize("kind", ["zip", "legacy", "lightning"])
def test_the_payload_is_real(run: Run, tmp_path: Path, kind: str) -> None:
    # The control: with --trust the same file does run its code, so the refusal above is what protects.
    marker = tmp_path / "marker"
    path = _save(kind, tmp_path, marker)
    run("audit", path, *FAST, "--trust")
    assert marker.read_text() == "pwned"


def test_allow_global_loads_an_allowlisted_class(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "with_config.pt"
    torch.save({"state_dict": nn.GRU(3, 4, batch_first=True).state_dict(), "cfg": Path("runs/1")}, path)
    refused = run("audit", path, *FAST)
    assert refused.exit_code == 2
    assert "pathlib.PosixPath" in refused.stderr
    allowed = run("audit", path, *FAST, "--allow-global", "pathlib.PosixPath")
    assert allowed.exit_code == 0, allowed.stderr
    bad = run("audit", path, *FAST, "--allow-global", "pathlib.NoSuchThing")
    assert bad.exit_code == 2
    assert "allow_global" in bad.stderr


def _random_bytes(tmp_path: Path) -> Path:
    data = random.Random(0).randbytes(4096)
    assert data[0] != 0x80 and not data.startswith(b"PK")  # seeded: not a pickle or zip by chance
    path = tmp_path / "random.pt"
    path.write_bytes(data)
    return path


def _truncated(tmp_path: Path) -> Path:
    full = tmp_path / "full.pt"
    torch.save(nn.GRU(3, 4).state_dict(), full)
    data = full.read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    return path


def _truncated_legacy(tmp_path: Path) -> Path:
    full = tmp_path / "full_legacy.pt"
    torch.save(nn.GRU(3, 4).state_dict(), full, _use_new_zipfile_serialization=False)
    data = full.read_bytes()
    path = tmp_path / "truncated_legacy.pt"
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (_random_bytes, "not a checkpoint format"),
        (lambda p: (p / "empty.pt").write_bytes(b"") or p / "empty.pt", "empty"),
        (_truncated, "truncated or corrupt"),
        (_truncated_legacy, "truncated or corrupt"),
        (lambda p: (p / "folder").mkdir() or p / "folder", "folder"),
        (lambda p: p / "missing.pt", "no such file"),
    ],
    ids=["random", "empty", "truncated_zip", "truncated_legacy", "directory", "missing"],
)
@pytest.mark.parametrize("command", ["audit", "inspect"])
def test_broken_inputs_exit_2_with_one_line(
    run: Run, tmp_path: Path, make: Callable[[Path], Path], fragment: str, command: str
) -> None:
    path = make(tmp_path)
    result = run(command, path, *(FAST if command == "audit" else []))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("gradhealth: error: ")
    assert fragment in result.stderr
    assert "Traceback" not in result.output


def test_debug_shows_the_traceback(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    result = run("inspect", path, "--debug")
    assert result.exit_code == 2
    assert "Traceback" in result.stderr

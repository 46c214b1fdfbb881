"""``gradhealth audit --inputs FILE[:KEY]``: every safe format gives the same sequences; anything else exits 2.

The model is ``scaled_orthogonal_rnn(2, 0.5)`` on inputs small enough to keep tanh linear: g(k) = 0.5^k, so the
horizon at 0.01 is 7 (0.5^6 = 0.0156 >= 0.01 > 0.5^7) whichever file the same sequences come from.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import Result

from gradhealth import reference
from gradhealth.report import Report

DATA = (1e-4 * np.random.default_rng(0).standard_normal((4, 21, 2))).astype(np.float32)


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "rnn.pt"
    torch.save(reference.scaled_orthogonal_rnn(2, 0.5).state_dict(), path)
    return path


def _files(folder: Path) -> dict[str, str]:
    np.save(folder / "x.npy", DATA)
    np.savez(folder / "x.npz", x=DATA, y=DATA[:, :5])
    save_file({"x": torch.from_numpy(DATA)}, str(folder / "x.safetensors"))
    torch.save(torch.from_numpy(DATA), folder / "x.pt")
    torch.save({"val": torch.from_numpy(DATA), "other": torch.zeros(1)}, folder / "d.pth")
    return {"npy": "x.npy", "npz": "x.npz:x", "safetensors": "x.safetensors", "pt": "x.pt", "pt dict": "d.pth:val"}


def test_every_safe_format_gives_the_same_numbers(run: Callable[..., Result], checkpoint: Path, tmp_path: Path) -> None:
    reports = {}
    for kind, spec in _files(tmp_path).items():
        result = run("audit", str(checkpoint), "--inputs", spec, "--probes", "quick", "--format", "json")
        assert result.exit_code == 0, (kind, result.stderr)
        reports[kind] = Report.from_json(result.stdout)
    first = reports["npy"]
    assert first.metrics.horizon == 7
    assert first.config["seq_len"] == 10 and first.config["burn_in"] == 10 and first.config["batch_size"] == 4
    assert first.inputs is not None and first.inputs.shape == [4, 21, 2] and first.inputs.source == "x.npy"
    for kind, report in reports.items():
        assert report.metrics == first.metrics, kind
        assert report.inputs is not None and report.inputs.sha256 == first.inputs.sha256, kind


def test_the_table_renderer_names_the_inputs(run: Callable[..., Result], checkpoint: Path, tmp_path: Path) -> None:
    _files(tmp_path)
    result = run("audit", str(checkpoint), "--inputs", "x.npy", "--probes", "quick")
    assert result.exit_code == 0, result.stderr
    assert "x.npy" in result.stdout


class Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("pwned",))


def _bad_files(folder: Path) -> None:
    np.save(folder / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (folder / "x.csv").write_text("1,2\n")
    (folder / "code.pt").write_bytes(pickle.dumps(Payload()))
    np.save(folder / "flat.npy", DATA[:, :, 0])
    np.save(folder / "x.npy", DATA)
    np.savez(folder / "x.npz", x=DATA, y=DATA)
    torch.save([1, 2], folder / "list.pt")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--inputs", "objects.npy"], "pickled Python objects, which are refused"),
        (["--inputs", "x.csv"], "unknown file type '.csv'"),
        (["--inputs", "code.pt"], "needs code to load"),
        (["--inputs", "missing.npy"], "no such file"),
        (["--inputs", "flat.npy"], "float inputs must be"),
        (["--inputs", "x.npz"], "holds several arrays \\(x, y\\): name one as FILE:KEY"),
        (["--inputs", "x.npz:z"], "no array 'z'"),
        (["--inputs", "list.pt"], "holds a list"),
        (["--inputs", "x.npy", "--seq-len", "30"], "from --seq-len: .*the longest K they allow is 20"),
        (["--inputs", "x.npy", "--task", "adding"], "cannot be combined with --inputs"),
    ],
)
def test_anything_else_exits_2_with_one_line(
    run: Callable[..., Result], checkpoint: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    _bad_files(tmp_path)
    result = run("audit", str(checkpoint), *args, "--probes", "quick")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gradhealth: error: ")
    assert __import__("re").search(message, lines[0]), lines[0]
    assert "pwned" not in result.stdout + result.stderr

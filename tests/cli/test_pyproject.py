"""``[tool.gradhealth]`` is read through the settings table: a typo, a bad value or a code-running key is an error
(exit 2, one line naming key, value and file), booleans are strict, and the command line wins."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from tests.cli.conftest import FAST
from torch import nn
from typer.testing import Result

Run = Callable[..., Result]


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "gru.pt"
    torch.save(nn.GRU(3, 4, batch_first=True).state_dict(), path)
    return path


def _write(tmp_path: Path, body: str) -> str:
    path = tmp_path / "pyproject.toml"
    path.write_text(f"[tool.gradhealth]\n{body}\n")
    return f"{path} [tool.gradhealth]"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (
            "min_horizn = 100",
            "invalid setting 'min_horizn' from {where}: unknown gradhealth setting; did you mean min_horizon?",
        ),
        (
            "min-horizn = 100",
            "invalid setting 'min-horizn' from {where}: unknown gradhealth setting; did you mean min_horizon?",
        ),
        ("min_horizon = 'abc'", "invalid min_horizon 'abc' from {where}: must be a number of steps >= 0"),
        ("seq_len = 2.5", "invalid seq_len 2.5 from {where}: must be an integer >= 1"),
        ("seq_len = true", "invalid seq_len True from {where}: must be an integer >= 1"),
        ("progress = 'nah'", "invalid progress 'nah' from {where}: must be true or false (or 1/0, yes/no, on/off)"),
        (
            "fail_on = 'fine'",
            "invalid fail_on 'fine' from {where}: verdicts are healthy, inconclusive, finite_memory, vanishing, "
            "exploding, non_finite",
        ),
        ("output = 'x.json'", "invalid setting 'output' from {where}: output cannot be set from a config file"),
        ("seq-len = 8\nseq_len = 9", "invalid setting 'seq_len' from {where}: seq_len is given twice"),
    ],
)
def test_bad_keys_and_values_exit_2_naming_key_value_and_file(
    run: Run, checkpoint: Path, tmp_path: Path, body: str, problem: str
) -> None:
    where = _write(tmp_path, body)
    result = run("audit", checkpoint, *FAST)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"gradhealth: error: {problem.format(where=where)}\n"


@pytest.mark.parametrize(
    ("body", "flag"),
    [
        ("trust = true", "--trust"),
        ("trust = 'false'", "--trust"),
        ("allow-global = ['builtins.exec']", "--allow-global"),
        ("allow_global = 'pathlib.PosixPath'", "--allow-global"),
        ("model = 'subprocess:call'", "--model"),
        ('model_kwargs = \'{"args": "touch pwned"}\'', "--model-kwargs"),
    ],
)
def test_code_running_settings_are_refused_from_any_config_file(
    run: Run, checkpoint: Path, tmp_path: Path, body: str, flag: str
) -> None:
    # The pyproject.toml sits in a parent folder of the working directory, as an attacker's would.
    where = _write(tmp_path, body)
    work = tmp_path / "sub" / "dir"
    work.mkdir(parents=True)
    result = run("audit", checkpoint, *FAST, cwd=work)
    assert result.exit_code == 2
    assert result.stdout == ""
    key = body.split(" =")[0]
    assert result.stderr == (
        f"gradhealth: error: invalid setting '{key}' from {where}: {key.replace('-', '_')} lets a file run code, so "
        f"it is never read from a config file; pass {flag} on the command line\n"
    )
    assert not (work / "pwned").exists()


def test_the_command_line_wins_and_sources_are_kept(run: Run, checkpoint: Path, tmp_path: Path) -> None:
    where = _write(tmp_path, "seq-len = 12\nbatch_size = 4\nprobes = 'quick'\nprogress = false")
    result = run("audit", checkpoint, "--seq-len", "10", "--verbose", "--format", "json")
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert "  seq_len = 10  (--seq-len)" in lines
    assert f"  batch_size = 4  ({where})" in lines
    assert f"  progress = false  ({where})" in lines
    assert '"seq_len": 10' in result.stdout


def test_not_a_table_and_bad_toml(run: Run, checkpoint: Path, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool]\ngradhealth = 3\n")
    result = run("audit", checkpoint, *FAST)
    assert result.exit_code == 2
    assert "must be a table" in result.stderr
    (tmp_path / "pyproject.toml").write_text("[tool.gradhealth\n")
    result = run("audit", checkpoint, *FAST)
    assert result.exit_code == 2
    assert "not valid TOML" in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_pyproject_without_the_table_is_ignored(run: Run, checkpoint: Path, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert run("audit", checkpoint, *FAST).exit_code == 0

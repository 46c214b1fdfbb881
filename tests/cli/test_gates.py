"""Gates and exit codes on reference models with analytic profiles (g(k) = ρ^k: horizon@1e-2 is 44 for ρ = 0.9,
21 for ρ = 0.8; decay rate ln ρ), plus settings from ``[tool.gradhealth]``."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from typer.testing import Result

from gradhealth import reference
from gradhealth.render.json import read_reports

Run = Callable[..., Result]

LINEAR = ["--model", "gradhealth.reference:LinearRecurrence", "--model-kwargs", '{"size": 3}']
SETTINGS = ["--seq-len", "50", "--batch-size", "4", "--probes", "quick", *LINEAR]


@pytest.fixture
def linear(tmp_path: Path) -> Callable[[float], Path]:
    def save(rho: float) -> Path:
        path = tmp_path / f"linear_{rho}.pt"
        torch.save(reference.LinearRecurrence(3, rho).state_dict(), path)
        return path

    return save


@pytest.mark.parametrize(
    ("rho", "gate", "code"),
    [
        (0.9, ["--min-horizon", "44"], 0),
        (0.9, ["--min-horizon", "45"], 1),
        (0.9, ["--fail-on", "vanishing"], 1),
        (0.9, ["--fail-on", "exploding,non_finite"], 0),
        (1.1, ["--fail-on", "exploding"], 1),
        (0.9, ["--max-decay-rate", "0.11"], 0),  # ln 0.9 = -0.1054
        (0.9, ["--max-decay-rate", "0.1"], 1),
        (0.9, [], 0),
    ],
)
def test_gate_exit_codes(run: Run, linear: Callable[[float], Path], rho: float, gate: list[str], code: int) -> None:
    result = run("audit", linear(rho), *SETTINGS, *gate, "--format", "json")
    assert result.exit_code == code, result.stderr
    assert result.stderr == ""
    entries = read_reports(result.stdout) if gate else []
    if gate:
        (entry,) = entries
        assert entry.status == ("fail" if code else "pass")
        assert {g.gate for g in entry.gates} <= {"verdict", "min_horizon", "max_decay_rate"}


def test_horizon_measured_exactly(run: Run, linear: Callable[[float], Path]) -> None:
    result = run("audit", linear(0.9), *SETTINGS, "--format", "json", "--min-horizon", "1")
    (entry,) = read_reports(result.stdout)
    assert entry.report is not None
    assert entry.report.metrics.horizon == 44
    assert entry.report.metrics.decay_rate == pytest.approx(math.log(0.9), abs=1e-10)
    (gate,) = entry.gates
    assert gate.measured == 44


@pytest.mark.parametrize(("drop", "code"), [("50%", 1), ("53%", 0), ("23", 0), ("22", 1), (None, 1)])
def test_baseline_horizon_drop(
    run: Run, linear: Callable[[float], Path], tmp_path: Path, drop: str | None, code: int
) -> None:
    baseline = tmp_path / "main.json"
    assert run("audit", linear(0.9), *SETTINGS, "--format", "json", "--output", baseline).exit_code == 0
    # 44 -> 21 steps: a drop of 23 steps, 52.3 %; with no --max-horizon-drop any drop fails.
    extra = [] if drop is None else ["--max-horizon-drop", drop]
    result = run("audit", linear(0.8), *SETTINGS, "--baseline", baseline, *extra, "--format", "json")
    assert result.exit_code == code, result.stderr
    (entry,) = read_reports(result.stdout)
    (gate,) = entry.gates
    assert gate.gate == "max_horizon_drop"
    assert (gate.measured, gate.threshold) == (21, 44)


def test_usage_errors_exit_2_with_one_line(run: Run, linear: Callable[[float], Path], tmp_path: Path) -> None:
    path = linear(0.9)
    cases = [
        (["--max-horizon-drop", "10%"], "needs --baseline"),
        (["--fail-on", "bogus"], "invalid fail_on 'bogus'"),
        (["--baseline", tmp_path / "absent.json"], "invalid baseline"),
        (["--format", "pdf"], "known formats"),
        (["--seq-len", "0"], "invalid seq_len '0' from --seq-len"),
        (["--baseline", path, "--max-horizon-drop", "10%"], "not a gradhealth report"),
        (["--model-kwargs", "[1]"], "must be a JSON object"),
    ]
    for extra, fragment in cases:
        result = run("audit", path, *SETTINGS, *extra)
        assert result.exit_code == 2, (extra, result.output)
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1, result.stderr
        assert fragment in result.stderr, (fragment, result.stderr)
    assert run("audit").exit_code == 2
    assert run("audit", path, "--no-such-flag").exit_code == 2


def test_pyproject_settings_with_command_line_first(run: Run, linear: Callable[[float], Path], tmp_path: Path) -> None:
    path = linear(0.9)
    (tmp_path / "pyproject.toml").write_text(
        "[tool.gradhealth]\nseq-len = 50\nbatch_size = 4\nprobes = 'quick'\nmin_horizon = 45\nformat = 'json'\n"
    )
    from_file = run("audit", path, *LINEAR)
    assert from_file.exit_code == 1, from_file.stderr
    report = json.loads(from_file.stdout)["reports"][0]["report"]
    assert report["config"]["seq_len"] == 50
    assert run("audit", path, *LINEAR, "--min-horizon", "40").exit_code == 0
    (tmp_path / "pyproject.toml").write_text("[tool.gradhealth]\nseq_len = 'long'\n")
    bad = run("audit", path)
    assert bad.exit_code == 2
    assert bad.stderr == (
        f"gradhealth: error: invalid seq_len 'long' from {tmp_path / 'pyproject.toml'} [tool.gradhealth]: "
        "must be an integer >= 1\n"
    )


@pytest.mark.parametrize(
    ("changed", "named"),
    [
        (["--eps", "0.05"], "eps 0.01 -> 0.05"),
        (["--seq-len", "60"], "seq_len 50 -> 60"),
        (["--task", "impulse"], "task 'noise' -> 'impulse'"),
        (["--input-scale", "2"], "input_scale 1.0 -> 2.0"),
        (["--dtype", "float32"], "dtype 'float64' -> 'float32'"),
    ],
)
def test_baseline_with_other_settings_is_refused(
    run: Run, linear: Callable[[float], Path], tmp_path: Path, changed: list[str], named: str
) -> None:
    """A horizon at eps 5e-2 is shorter than at 1e-2 for the same model: comparing them is noise, not a drop."""
    baseline = tmp_path / "main.json"
    assert run("audit", linear(0.9), *SETTINGS, "--format", "json", "--output", baseline).exit_code == 0
    later = tmp_path / "later.json"
    args = ["audit", linear(0.9), *SETTINGS, *changed]
    result = run(*args, "--baseline", baseline, "--max-horizon-drop", "10%", "--format", "json")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert named in result.stderr and "re-run the baseline" in result.stderr
    assert run(*args, "--format", "json", "--output", later).exit_code == 0
    compared = run("compare", baseline, later)
    assert compared.exit_code == 2
    assert named in compared.stderr


def test_baseline_with_the_same_settings_compares(run: Run, linear: Callable[[float], Path], tmp_path: Path) -> None:
    baseline = tmp_path / "main.json"
    assert run("audit", linear(0.9), *SETTINGS, "--format", "json", "--output", baseline).exit_code == 0
    result = run("audit", linear(0.9), *SETTINGS, "--baseline", baseline, "--max-horizon-drop", "0", "-f", "json")
    assert result.exit_code == 0, result.stderr

"""``--help`` start-up cost, ``inspect``, ``compare``, output files and formats through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from tests.cli.conftest import FAST, Encoder
from torch import nn
from typer.testing import Result

from gradhealth import reference
from gradhealth.render.json import read_reports

Run = Callable[..., Result]
LINEAR = [
    "--seq-len",
    "50",
    "--batch-size",
    "4",
    "--probes",
    "quick",
    "--model",
    "gradhealth.reference:LinearRecurrence",
    "--model-kwargs",
    '{"size": 3}',
]


@pytest.mark.parametrize("argv", [["--help"], ["audit", "--help"], ["inspect", "--help"], ["compare", "--help"]])
def test_help_does_not_import_torch(argv: list[str]) -> None:
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['gradhealth', *{argv!r}]\n"
        "try:\n    runpy.run_module('gradhealth', run_name='__main__')\n"
        "except SystemExit as exc:\n    code = exc.code\n"
        "sys.stderr.write(f\"RESULT {code} {sorted(m for m in ('torch', 'numpy') if m in sys.modules)}\")\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stderr.strip().endswith("RESULT 0 []"), done.stderr
    assert "Usage" in done.stdout


def test_inspect_lists_format_tensors_layers_and_safety(run: Run, encoder_state: tuple[Path, Encoder]) -> None:
    path, model = encoder_state
    result = run("inspect", path, "--format", "json")
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["format"] == "torch_zip"
    assert info["safety"] == "safe"
    names = {t["name"]: t for t in info["tensors"]}
    assert set(names) == set(model.state_dict())
    assert names["encoder.rnn.weight_hh_l1_reverse"] == {
        "name": "encoder.rnn.weight_hh_l1_reverse",
        "shape": [32, 8],
        "dtype": "float32",
    }
    assert info["recurrent_layers"] == [{"name": "encoder.rnn", "module": "LSTM(3, 8, num_layers=2, bidirectional)"}]
    text = run("inspect", path)
    assert "encoder.rnn: LSTM(3, 8, num_layers=2, bidirectional)" in text.stdout


def test_inspect_code_format_needs_trust(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "scripted"
    torch.jit.save(torch.jit.script(nn.RNN(2, 3)), path)
    info = json.loads(run("inspect", path, "--format", "json").stdout)
    assert (info["format"], info["tensors"]) == ("torchscript", None)
    assert "needs --trust" in info["safety"]
    trusted = json.loads(run("inspect", path, "--format", "json", "--trust").stdout)
    assert trusted["recurrent_layers"] == [{"name": "rnn", "module": "RNN(2, 3)"}]


def _linear_reports(run: Run, tmp_path: Path) -> tuple[Path, Path]:
    paths = []
    for rho in (0.9, 0.8):
        ckpt = tmp_path / f"rho{rho}.pt"
        torch.save(reference.LinearRecurrence(3, rho).state_dict(), ckpt)
        paths.append(tmp_path / f"rho{rho}.json")
        assert run("audit", ckpt, *LINEAR, "--format", "json", "-o", paths[-1]).exit_code == 0
    return paths[0], paths[1]


def test_compare_reports_differences_and_gates(run: Run, tmp_path: Path) -> None:
    old, new = _linear_reports(run, tmp_path)
    result = run("compare", old, new, "--format", "json")
    assert result.exit_code == 0, result.stderr
    (diff,) = json.loads(result.stdout)
    assert (diff["old_horizon"], diff["new_horizon"], diff["horizon_change"]) == (44, 21, -23)
    assert diff["old_decay_rate"] == pytest.approx(-0.10536051565782628, abs=1e-10)
    assert run("compare", old, new, "--max-horizon-drop", "50%").exit_code == 1
    assert run("compare", old, new, "--max-horizon-drop", "23").exit_code == 0
    assert run("compare", new, old, "--max-horizon-drop", "0").exit_code == 0
    table = run("compare", old, new)
    assert "44 -> 21" in table.stdout
    bad = run("compare", old, tmp_path / "rho0.9.pt")
    assert bad.exit_code == 2
    assert bad.stderr.count("\n") == 1


def test_output_file_keeps_stdout_clean(run: Run, tmp_path: Path, encoder_state: tuple[Path, Encoder]) -> None:
    path, _ = encoder_state
    out = tmp_path / "reports" / "audit.md"
    result = run("audit", path, *FAST, "--format", "markdown", "--output", out)
    assert result.exit_code == 0
    assert result.stdout == ""
    text = out.read_text()
    assert f"| {path}:encoder.rnn | forward | vanishing |" in text
    assert f"| {path}:encoder.rnn | backward | vanishing |" in text


def test_junit_one_testcase_per_checkpoint_probe_and_gate(run: Run, tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    torch.save(reference.LinearRecurrence(3, 0.9).state_dict(), good)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"")
    result = run("audit", good, bad, *LINEAR, "--format", "junit", "--min-horizon", "45", "--fail-on", "exploding")
    assert result.exit_code == 2  # an input failed: that outranks the failed gate
    root = ET.fromstring(result.stdout)
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    cases = {c.get("name"): c for c in suites[str(good)].iter("testcase")}
    assert set(cases) == {"audit", "probe lag_profile", "gate verdict (forward)", "gate min_horizon (forward)"}
    assert cases["gate min_horizon (forward)"].find("failure") is not None
    assert cases["gate verdict (forward)"].find("failure") is None
    assert suites[str(bad)].find("testcase/error") is not None
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("5", "1", "1")


def test_github_annotations_and_step_summary(run: Run, tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    torch.save(reference.LinearRecurrence(3, 0.9).state_dict(), good)
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    result = run(
        "audit", good, *LINEAR, "--format", "github", "--min-horizon", "45", env={"GITHUB_STEP_SUMMARY": str(summary)}
    )
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"::error file={good},title=gradhealth gate failed")
    assert "horizon 44 < min 45 steps" in lines[0]
    text = summary.read_text()
    assert text.startswith("earlier step\n")
    assert f"| {good} | forward | vanishing | 44 \\[44, 44\\] |" in text
    plain = run("audit", good, *LINEAR, "--format", "github", env={"GITHUB_STEP_SUMMARY": ""})
    assert plain.exit_code == 0
    assert plain.stdout.startswith("::warning file=")
    assert "GH001" in plain.stdout


def test_table_lists_every_direction(run: Run, encoder_state: tuple[Path, Encoder]) -> None:
    path, _ = encoder_state
    result = run("audit", path, *FAST)
    assert result.exit_code == 0
    assert result.stdout.count("vanishing") >= 2
    assert "backward" in result.stdout
    reports = read_reports(run("audit", path, path, *FAST, "--format", "json").stdout)
    assert len(reports) == 1  # the same input twice is audited once

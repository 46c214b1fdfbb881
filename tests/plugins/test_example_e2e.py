"""The installed example plugin end to end: discovered, listed by ``gradhealth plugins``, used by ``gradhealth audit``
and by ``gradhealth.audit`` inside a pytest run.

Skipped when gradhealth-example-plugin is not installed; fails instead when GRADHEALTH_REQUIRE_EXAMPLE_PLUGIN=1 (CI).
Ground truth: a DiagonalSSM with decay a on every channel has g(k) = a^k exactly, horizon@1e-2 = 44 for a = 0.9.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from gradhealth import plugins
from gradhealth.cli import build_app

pytestmark = pytest.mark.usefixtures("example_plugin")


def save_ssm(path: Path, decays: list[float]) -> float:
    from gradhealth_example_plugin import DiagonalSSM

    model = DiagonalSSM(len(decays), decays)
    torch.save(model.state_dict(), path)
    return float(model.decay.detach().double().max())


def test_discovered_through_its_entry_point_and_listed() -> None:
    result = CliRunner().invoke(build_app(), ["plugins", "--json", "--check"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)["plugins"]}
    example = rows["example"]
    assert (example["source"], example["status"], example["distribution"], example["version"]) == (
        "entry point",
        "active",
        "gradhealth-example-plugin",
        "0.1.0",
    )
    assert example["module"] == "gradhealth_example_plugin.plugin"
    assert example["provides"] == {"probes": ["ssm_decay"]}


def test_disabled_by_distribution_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(plugins.DISABLE_ENV, "gradhealth_example_plugin")  # normalised like pip names
    assert {i.name: i.status for i in plugins.plugin_infos()}["example"] == "disabled"
    assert "ssm_decay" not in plugins.probe_classes()
    result = CliRunner().invoke(build_app(), ["plugins", "--json"])
    assert json.loads(result.stdout)["unknown_disabled"] == []


def test_gradhealth_audit_command_uses_its_builder_adapter_and_probe(tmp_path: Path) -> None:
    a = save_ssm(tmp_path / "ssm.pt", [0.9, 0.9, 0.9])
    args = ["audit", str(tmp_path / "ssm.pt"), "--seq-len", "48", "--batch-size", "4", "--dtype", "float64"]
    result = CliRunner().invoke(build_app(), [*args, "--probes", "lag_profile,ssm_decay", "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    report = report.get("report", report)
    assert report["model"]["adapter"] == "example.DiagonalSSM"
    assert report["probes"]["ssm_decay"]["horizon"] == 44.0
    assert report["metrics"]["horizon"] == 44.0
    assert max(abs(g - a**k) for k, g in enumerate(report["profile"]["g"])) < 1e-12


def test_used_by_gradhealth_audit_in_a_pytest_run(tmp_path: Path) -> None:
    test_file = tmp_path / "test_ssm_memory.py"
    test_file.write_text(
        textwrap.dedent(
            """
            import gradhealth
            from gradhealth_example_plugin import DiagonalSSM

            def test_ssm_remembers_44_steps():
                model = DiagonalSSM(2, 0.9)
                report = gradhealth.audit(model, seq_len=48, batch_size=4, probes=["ssm_decay"])
                assert report.model["adapter"] == "example.DiagonalSSM"
                assert report.probes["ssm_decay"]["horizon"] == report.metrics.horizon == 44.0
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADHEALTH_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", str(test_file)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout

"""A trained model audited with its own validation data gives identical numbers through the API, pytest and the CLI.

The model is a small LSTM trained in the test for a few dozen steps on the adding task; its validation batch is
saved as ``val.npy`` and passed as a tensor (API), through the ``gradhealth_inputs`` fixture or a marker (pytest),
and as ``--inputs val.npy`` (CLI). Every face must derive the same lag window from T, use the same sequences (same
content hash) and so produce the same profile, bit for bit.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

# Imported before any in-process pytester run (see tests/pytest_plugin/test_plugin.py).
import gradhealth
import gradhealth.engine
import gradhealth.testing._assertions
from gradhealth.cli import app
from gradhealth.report import Report, decode_floats
from gradhealth.tasks import AddingTask

pytest_plugins = ["pytester"]


def _trained_lstm() -> tuple[nn.LSTM, np.ndarray]:
    torch.manual_seed(0)
    lstm, head = nn.LSTM(2, 8, batch_first=True), nn.Linear(8, 1)
    optimizer = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=1e-2)
    for step in range(40):
        batch = AddingTask().generate(16, 21, 2, generator=torch.Generator().manual_seed(step))
        out = head(lstm(batch.inputs)[0][:, -1])
        loss = (out - batch.targets[:, -1]).pow(2).mean()  # type: ignore[index]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    val = AddingTask().generate(8, 21, 2, generator=torch.Generator().manual_seed(999)).inputs
    return lstm, val.numpy()


CONFTEST = """
import numpy as np
import pytest
import torch

@pytest.fixture
def lstm():
    model = torch.nn.LSTM(2, 8, batch_first=True)
    model.load_state_dict(torch.load("lstm.pt", weights_only=True))
    return model

@pytest.fixture
def gradhealth_inputs():
    return np.load("val.npy")

@pytest.fixture
def val():
    return torch.from_numpy(np.load("val.npy"))
"""

SUITE = """
import pytest
import gradhealth.testing as ght

def test_fixture(gradhealth, lstm):
    gradhealth.audit(lstm)

@pytest.mark.gradhealth(inputs="val")
def test_marker(gradhealth, lstm):
    gradhealth.audit(lstm)

def test_helper(lstm, val):
    ght.assert_finite_gradients(lstm, inputs=val)
"""


def test_api_pytest_and_cli_give_identical_numbers(pytester: pytest.Pytester) -> None:
    lstm, val = _trained_lstm()
    torch.save(lstm.state_dict(), pytester.path / "lstm.pt")
    np.save(pytester.path / "val.npy", val)

    api = gradhealth.audit(lstm, inputs=torch.from_numpy(val), probes="quick")
    assert api.config["seq_len"] == 10 and api.config["burn_in"] == 10 and api.config["batch_size"] == 8

    cli = CliRunner().invoke(
        app, ["audit", str(pytester.path / "lstm.pt"), "--inputs", str(pytester.path / "val.npy"), "--format", "json"]
    )
    assert cli.exit_code == 0, cli.stderr
    from_cli = Report.from_json(cli.stdout)

    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(SUITE)
    pytester.runpytest("--gradhealth-report=audits.json").assert_outcomes(passed=3)
    entries = json.loads((pytester.path / "audits.json").read_text())
    from_pytest = [Report.from_dict(decode_floats(e["report"])) for e in entries]
    assert len(from_pytest) == 3

    assert api.inputs is not None
    for report in (from_cli, *from_pytest):
        assert report.inputs is not None and report.inputs.sha256 == api.inputs.sha256
        assert report.inputs.shape == [8, 21, 2]
        assert {k: report.config[k] for k in ("seq_len", "burn_in", "batch_size", "task")} == {
            k: api.config[k] for k in ("seq_len", "burn_in", "batch_size", "task")
        }
        assert report.metrics == api.metrics
        assert report.profile.g == api.profile.g


def test_a_min_horizon_gate_beyond_the_datas_k_is_refused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest, torch

        @pytest.mark.gradhealth(min_horizon=30, inputs=torch.zeros(2, 21, 3))
        def test_gate(gradhealth):
            gradhealth.check(torch.nn.GRU(3, 4, batch_first=True))
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*invalid min_horizon 30*beyond seq_len 10 (from the inputs' length)*"])


def test_a_marker_naming_a_missing_fixture_fails_clearly(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest, torch
        import gradhealth.testing as ght

        @pytest.mark.gradhealth(inputs="nowhere")
        def test_missing():
            ght.assert_finite_gradients(torch.nn.GRU(3, 4, batch_first=True))
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*invalid inputs 'nowhere' from marker on test_missing: no such fixture*"])

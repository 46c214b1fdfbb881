"""Checkpoints as people save them: Lightning checkpoints, whole pickled modules, wrapper objects, ReLU RNN
state_dicts, time-major models declared on the command line, threads per job and baselines matched on a stable key.

Profiles are checked against plain autograd written here (same seeded inputs and seed vectors as the probe, the
loss at one step) or against the analytic profile, in float64.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from tests.cli.conftest import FAST as _FAST
from tests.probes.conftest import probe_context
from torch import nn
from typer.testing import Result

import gradhealth
from gradhealth.cli import _threads
from gradhealth.cli._threads import SMALL_MODEL_PARAMETERS, threads_for_model, threads_per_job, torch_threads
from gradhealth.render.json import read_reports
from gradhealth.report import Report

Run = Callable[..., Result]
SEQ_LEN, BATCH = 16, 4
HERE = "tests.cli.test_checkpoint_patterns"

#: the references below are float64 autograd: the audits are asked for float64 explicitly (auto follows the model)
FAST = [*_FAST, "--dtype", "float64"]


class GRUNet(nn.Module):
    """A network as a LightningModule holds it (``self.model``): a GRU and a head, ``[B, T, D] -> [B, T, O]``."""

    def __init__(self, input_size: int, hidden: int) -> None:
        super().__init__()
        self.input_size = input_size
        self.rnn = nn.GRU(input_size, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0])


class TimeMajorLinear(nn.Module):
    """``h_t = ρQ h_{t-1} + x_t`` taking and returning time-major ``[T, B, D]``, with no ``batch_first``
    attribute: g(k) = ρ^k exactly."""

    def __init__(self, size: int = 3, rho: float = 0.5) -> None:
        super().__init__()
        self.inner = gradhealth.reference.LinearRecurrence(size, rho)
        self.input_size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.transpose(0, 1)).transpose(0, 1)


class BatchFirstGRU(GRUNet):
    """A custom module that says it is batch-first."""

    batch_first = True


def time_major_with_layout(size: int = 3, rho: float = 0.5) -> tuple[nn.Module, gradhealth.Layout]:
    """A factory returning the model with its layout."""
    return TimeMajorLinear(size, rho), gradhealth.Layout(batch_first=False)


class Forecaster:
    """A forecasting library's model object: not an nn.Module, but holding some."""

    def __init__(self) -> None:
        self.horizon = 4
        self.model = nn.GRU(3, 4, batch_first=True)
        self.models = [nn.LSTM(3, 4, batch_first=True)]


def reference_profile(model: nn.Module) -> list[float]:
    """G(k) of a batch-first float-input model by plain autograd (float64)."""
    twin = copy.deepcopy(model).to(torch.float64).eval()
    ctx = probe_context(twin, seq_len=SEQ_LEN, batch_size=BATCH)
    leaf = ctx.make_batch("lag_profile").inputs.detach().clone().requires_grad_(True)
    value = twin(leaf)
    y = value[0] if isinstance(value, tuple) else value
    total = y.shape[1]
    y_t = y[:, total - 1]
    v = ctx.randn("lag_profile/forward", tuple(y_t.shape), like=y_t)
    (grad,) = torch.autograd.grad((y_t * v).sum(), leaf)
    norms = torch.stack([grad[:, total - 1 - k].norm(dim=-1) for k in range(SEQ_LEN + 1)], dim=1)
    return norms.pow(2).mean(0).sqrt().tolist()


def _json(result: Result) -> Report:
    assert result.exit_code == 0, result.stderr
    return Report.from_json(result.stdout)


# -- Lightning ---------------------------------------------------------------------------------------------------------
def test_lightning_checkpoint_built_from_its_hyper_parameters(run: Run, tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = GRUNet(3, 7)
    path = tmp_path / "epoch=3-step=40.ckpt"
    torch.save(
        {
            "epoch": 3,
            "global_step": 40,
            "pytorch-lightning_version": "2.4.0",
            "state_dict": {f"model.{k}": v for k, v in net.state_dict().items()},
            "hyper_parameters": {"input_size": 3, "hidden": 7, "lr": 0.01},
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.01}]}],
        },
        path,
    )
    report = _json(run("audit", path, *FAST, "--model", f"{HERE}:GRUNet", "--format", "json"))
    assert report.profile.grad_norm == pytest.approx(reference_profile(net), rel=1e-10, abs=0)
    assert report.model["hyper_parameters"] == ["hidden", "input_size", "lr"]
    api = gradhealth.audit(net, seq_len=SEQ_LEN, batch_size=BATCH, probes="quick", dtype="float64")
    assert api.profile.grad_norm == pytest.approx(report.profile.grad_norm, rel=1e-10, abs=0)
    # --model-kwargs wins over the saved hyperparameters: a hidden size that does not fit the weights is refused
    bad = run("audit", path, *FAST, "--model", f"{HERE}:GRUNet", "--model-kwargs", '{"hidden": 5}')
    assert bad.exit_code == 2
    assert "mis-shaped" in bad.stderr


# -- whole modules and wrappers ----------------------------------------------------------------------------------------
def test_pickled_whole_module_is_the_model(run: Run, tmp_path: Path) -> None:
    torch.manual_seed(1)
    net = GRUNet(3, 5)
    path = tmp_path / "whole.pt"
    torch.save(net, path)
    refused = run("audit", path, *FAST)
    assert refused.exit_code == 2
    assert f"--allow-global {HERE}.GRUNet" in refused.stderr
    allowed = re.findall(r"--allow-global (\S+)", refused.stderr)
    assert len(allowed) >= 3  # the module, its GRU and its Linear
    expected = reference_profile(net)
    for flags in (["--trust"], [arg for name in allowed for arg in ("--allow-global", name)]):
        report = _json(run("audit", path, *FAST, *flags, "--format", "json"))
        assert report.model["layer"] == "GRUNet"
        assert report.model["class"] == f"{HERE}.GRUNet"
        assert report.profile.grad_norm == pytest.approx(expected, rel=1e-10, abs=0)


def test_wrapper_object_names_the_modules_it_holds(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "forecaster.pt"
    torch.save(Forecaster(), path)
    result = run("audit", path, *FAST, "--trust")
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line
    assert "holds a Forecaster, which is not an nn.Module" in line
    assert "model (GRU), models[0] (LSTM)" in line


# -- nn.RNN nonlinearity -----------------------------------------------------------------------------------------------
def test_relu_rnn_state_dict_says_what_was_assumed(run: Run, tmp_path: Path) -> None:
    torch.manual_seed(0)
    rnn = nn.RNN(3, 6, nonlinearity="relu", batch_first=True)
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(0.9 * gradhealth.reference.random_orthogonal(6, dtype=torch.float32))
    path = tmp_path / "relu.pt"
    torch.save(rnn.state_dict(), path)
    expected = reference_profile(rnn)
    live = gradhealth.audit(rnn, seq_len=SEQ_LEN, batch_size=BATCH, probes="quick", dtype="float64")

    assumed = _json(run("audit", path, *FAST, "--format", "json"))
    (finding,) = [f for f in assumed.findings if f.code == "GH903"]
    assert "nonlinearity assumed tanh" in finding.message and "--nonlinearity relu" in finding.message
    assert assumed.model["nonlinearity"] == "tanh"
    assert assumed.profile.grad_norm != pytest.approx(expected, rel=1e-3)

    told = _json(run("audit", path, *FAST, "--nonlinearity", "relu", "--format", "json"))
    assert not [f for f in told.findings if f.code == "GH903"]
    assert told.profile.grad_norm == pytest.approx(expected, rel=1e-10, abs=0)
    assert told.metrics.horizon == live.metrics.horizon

    listing = run("inspect", path, "--format", "json")
    assert listing.exit_code == 0, listing.stderr
    (layer,) = json.loads(listing.stdout)["recurrent_layers"]
    assert layer["nonlinearity"] == "tanh" and "assumed tanh" in layer["assumption"]
    confirmed = json.loads(run("inspect", path, "--nonlinearity", "relu", "--format", "json").stdout)
    assert confirmed["recurrent_layers"][0] | {"assumption": None} == confirmed["recurrent_layers"][0]
    assert confirmed["recurrent_layers"][0]["nonlinearity"] == "relu"


# -- layouts from the command line -------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["flag", "factory"])
def test_time_major_model_declared_on_the_command_line(run: Run, tmp_path: Path, how: str) -> None:
    model = TimeMajorLinear(3, 0.5)
    path = tmp_path / "linear.pt"
    torch.save(model.state_dict(), path)
    if how == "flag":
        args = ["--model", f"{HERE}:TimeMajorLinear", "--no-batch-first"]
    else:
        args = ["--model", f"{HERE}:time_major_with_layout"]
    report = _json(run("audit", path, *FAST, *args, "--format", "json"))
    g = report.profile.g
    assert g == pytest.approx([0.5**k for k in range(SEQ_LEN + 1)], rel=1e-10, abs=0)
    assert report.metrics.horizon == 7  # 0.5^6 >= 1e-2 > 0.5^7
    assert report.model["batch_first"] is False


def test_declared_layout_contradicting_the_module_is_refused(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "net.pt"
    torch.save(BatchFirstGRU(3, 4).state_dict(), path)
    kwargs = '{"input_size": 3, "hidden": 4}'
    result = run("audit", path, *FAST, "--model", f"{HERE}:BatchFirstGRU", "--model-kwargs", kwargs, "--no-batch-first")
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line
    assert "contradicts BatchFirstGRU's own batch_first=True" in line


def test_output_and_input_arg_flags(run: Run, tmp_path: Path) -> None:
    """``--model-output 0`` picks the sequence out of the GRU's (output, h_n) tuple in a bare state_dict's layer."""
    torch.manual_seed(2)
    gru = nn.GRU(3, 4, batch_first=True)
    path = tmp_path / "gru.pt"
    torch.save({"rnn." + k: v for k, v in gru.state_dict().items()}, path)
    report = _json(run("audit", path, *FAST, "--model-output", "0", "--input-arg", "0", "--format", "json"))
    assert report.model["layout"]["output"] == 0
    assert report.profile.grad_norm == pytest.approx(reference_profile(gru), rel=1e-10, abs=0)


# -- threads -----------------------------------------------------------------------------------------------------------
def test_threads_per_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(_threads, "available_cpus", lambda: 8)
    assert threads_per_job(None, 1) == 8
    assert threads_per_job(None, 3) == 2
    assert threads_per_job(None, 16) == 1
    assert threads_per_job(2, 4) == 2
    assert threads_for_model(4, SMALL_MODEL_PARAMETERS - 1, is_explicit=False) == 1
    assert threads_for_model(4, SMALL_MODEL_PARAMETERS, is_explicit=False) == 4
    assert threads_for_model(3, 10, is_explicit=True) == 3
    assert threads_for_model(None, SMALL_MODEL_PARAMETERS, is_explicit=False) is None
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads_per_job(None, 2) is None  # torch already reads it
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


# -- baselines ---------------------------------------------------------------------------------------------------------
def _gru_state(path: Path, seed: int, scale: float = 1.0) -> None:
    torch.manual_seed(seed)
    gru = nn.GRU(3, 5, batch_first=True)
    with torch.no_grad():
        gru.weight_hh_l0.mul_(scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"rnn." + k: v for k, v in gru.state_dict().items()}, path)


def test_baseline_matched_on_the_project_relative_path(run: Run, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    runs = tmp_path / "runs"
    _gru_state(runs / "a.pt", 0)
    _gru_state(runs / "b.pt", 1, scale=0.1)  # a much shorter horizon: matching a with b would fail the gate
    baseline = tmp_path / "baseline.json"
    made = run("audit", "runs/a.pt", "runs/b.pt", *FAST, "--format", "json", "--output", baseline, cwd=tmp_path)
    assert made.exit_code == 0, made.stderr
    horizons = {e.path: e.report.metrics.horizon for e in read_reports(baseline.read_text()) if e.report}
    assert horizons["runs/a.pt"] != horizons["runs/b.pt"]

    _gru_state(runs / "c.pt", 2)  # added in a pull request
    result = run("audit", "a.pt", "c.pt", *FAST, "--baseline", baseline, "--max-horizon-drop", "0", "-f", "json",
                 cwd=runs)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    entries = {e.path: e for e in read_reports(result.stdout)}
    (gate_a,) = [g for g in entries["a.pt"].gates if g.gate == "max_horizon_drop"]
    assert gate_a.passed and gate_a.threshold == horizons["runs/a.pt"]
    (gate_c,) = [g for g in entries["c.pt"].gates if g.gate == "max_horizon_drop"]
    assert gate_c.passed and gate_c.message.startswith("new: the baseline has no entry for c.pt:rnn")
    assert "missing from this run, in the baseline: runs/b.pt:rnn" in result.stderr

"""``gradhealth audit``: every loader path, the reconstruction against the live module, outputs and exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tests.cli.conftest import FAST, Encoder
from torch import nn
from typer.testing import Result

import gradhealth
from gradhealth.render.json import read_reports
from gradhealth.report import Report

Run = Callable[..., Result]


def test_bare_state_dict_matches_live_module(run: Run, encoder_state: tuple[Path, Encoder]) -> None:
    path, model = encoder_state
    result = run("audit", path, *FAST, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    from_file = Report.from_json(result.stdout)
    live = gradhealth.audit(model.encoder.rnn, seq_len=16, batch_size=4, probes="quick")
    assert [d.name for d in from_file.directions] == ["forward", "backward"]
    assert json.loads(Report.to_json(from_file))["directions"] == json.loads(live.to_json())["directions"]
    assert from_file.metrics == live.metrics
    assert from_file.model["layer"] == "encoder.rnn"
    assert from_file.model["num_layers"] == 2
    assert from_file.model["hidden_size"] == 8


def _lightning(tmp_path: Path, model: nn.Module) -> Path:
    path = tmp_path / "epoch=3.ckpt"
    torch.save(
        {"epoch": 3, "global_step": 10, "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path
    )
    return path


@pytest.mark.parametrize(
    "layout",
    [
        "zip",
        "legacy",
        "lightning",
        "model_key",
        "safetensors",
        "hf_folder",
        "hf_folder_bin",
        "torchscript",
        "export",
        "pickled_module",
    ],
)
def test_every_format_gives_the_same_numbers(run: Run, tmp_path: Path, layout: str) -> None:
    torch.manual_seed(1)
    gru = nn.GRU(3, 6, batch_first=True)
    live = gradhealth.audit(gru, seq_len=16, batch_size=4, probes="quick")
    state = {f"rnn.{k}": v for k, v in gru.state_dict().items()}
    trust: list[str] = []
    if layout == "zip":
        path = tmp_path / "w.bin"
        torch.save(state, path)
    elif layout == "legacy":
        path = tmp_path / "w.pt"
        torch.save(state, path, _use_new_zipfile_serialization=False)
    elif layout == "lightning":
        holder = nn.Module()
        holder.rnn = gru
        path = _lightning(tmp_path, holder)
    elif layout == "model_key":
        path = tmp_path / "w.pth"
        torch.save({"model": state, "optimizer": {"lr": 0.1}}, path)
    elif layout == "safetensors":
        path = tmp_path / "weights.data"  # no telling extension: detection is by content
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    elif layout in {"hf_folder", "hf_folder_bin"}:
        path = tmp_path / "hf"
        path.mkdir()
        (path / "config.json").write_text('{"model_type": "gru"}')
        if layout == "hf_folder":
            save_file({k: v.contiguous() for k, v in state.items()}, path / "model.safetensors")
        else:
            torch.save(state, path / "pytorch_model.bin")
    elif layout == "torchscript":
        path = tmp_path / "scripted.pt"
        torch.jit.save(torch.jit.script(gru), path)
        trust = ["--trust"]
    elif layout == "export":
        path = tmp_path / "program.pt2"
        torch.export.save(torch.export.export(gru, (torch.randn(2, 5, 3),)), path)
        trust = ["--trust"]
    else:
        path = tmp_path / "whole.pt"
        torch.save(gru, path)
        trust = ["--trust"]
    result = run("audit", path, *FAST, *trust, "--format", "json")
    assert result.exit_code == 0, result.stderr
    report = Report.from_json(result.stdout)
    assert report.metrics == live.metrics
    assert report.profile.g == live.profile.g


@pytest.mark.parametrize("filename", ["scripted.pt", "program.pt2", "whole.pt"])
def test_code_formats_need_trust(run: Run, tmp_path: Path, filename: str) -> None:
    gru = nn.GRU(3, 4, batch_first=True)
    path = tmp_path / filename
    if filename == "scripted.pt":
        torch.jit.save(torch.jit.script(gru), path)
    elif filename == "program.pt2":
        torch.export.save(torch.export.export(gru, (torch.randn(2, 5, 3),)), path)
    else:
        torch.save(gru, path)
    result = run("audit", path, *FAST)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    line = result.stderr.strip()
    assert "\n" not in line
    assert "--trust" in line
    if filename == "whole.pt":
        assert "torch.nn.modules.rnn.GRU" in line


def test_layers_named_and_families_found(run: Run, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Module()
    model.enc = nn.RNN(3, 4, nonlinearity="tanh", bias=False, batch_first=True)
    model.dec = nn.LSTM(4, 6, proj_size=2, batch_first=True)
    model.cell = nn.GRUCell(2, 5)
    path = tmp_path / "multi.pt"
    torch.save(model.state_dict(), path)
    result = run("audit", path, *FAST, "--format", "json")
    assert result.exit_code == 0, result.stderr
    entries = {e.layer: e for e in read_reports(result.stdout)}
    assert set(entries) == {"enc", "dec", "cell"}
    for name, module in (("enc", model.enc), ("dec", model.dec), ("cell", model.cell)):
        live = gradhealth.audit(module, seq_len=16, batch_size=4, probes="quick")
        report = entries[name].report
        assert report is not None
        assert entries[name].name == f"{path}:{name}"
        assert report.metrics == live.metrics


def test_relu_nonlinearity_option(run: Run, tmp_path: Path) -> None:
    torch.manual_seed(0)
    rnn = nn.RNN(3, 5, nonlinearity="relu", batch_first=True)
    path = tmp_path / "relu.pt"
    torch.save(rnn.state_dict(), path)
    live = gradhealth.audit(rnn, seq_len=16, batch_size=4, probes="quick")
    relu = Report.from_json(run("audit", path, *FAST, "--nonlinearity", "relu", "--format", "json").stdout)
    tanh = Report.from_json(run("audit", path, *FAST, "--format", "json").stdout)
    assert relu.metrics == live.metrics
    assert tanh.metrics != live.metrics
    assert relu.model["nonlinearity"] == "relu"


def test_model_factory_strict_load(run: Run, encoder_state: tuple[Path, Encoder], tmp_path: Path) -> None:
    path, model = encoder_state
    sub = tmp_path / "rnn_only.pt"
    torch.save(model.encoder.rnn.state_dict(), sub)
    result = run("audit", sub, *FAST, "--model", "tests.cli.conftest:make_encoder", "--format", "json")
    assert result.exit_code == 0, result.stderr
    live = gradhealth.audit(model.encoder.rnn, seq_len=16, batch_size=4, probes="quick")
    assert Report.from_json(result.stdout).metrics == live.metrics
    bad = run("audit", sub, *FAST, "--model", "tests.cli.conftest:make_encoder", "--model-kwargs", '{"hidden": 5}')
    assert bad.exit_code == 2
    assert "mis-shaped" in bad.stderr
    assert "weight_hh_l0 (32, 8) vs model (20, 5)" in bad.stderr
    extra = run("audit", path, *FAST, "--model", "tests.cli.conftest:make_encoder")
    assert extra.exit_code == 2
    assert "unexpected 2: encoder.head.weight, encoder.head.bias" in extra.stderr or "unexpected" in extra.stderr
    for spec, fragment in (("nope", "package.module:factory"), ("tests.cli.nothere:f", "cannot import")):
        res = run("audit", sub, *FAST, "--model", spec)
        assert res.exit_code == 2
        assert fragment in res.stderr
        assert res.stderr.count("\n") == 1


def test_nan_weights_are_non_finite_not_a_crash(run: Run, tmp_path: Path) -> None:
    gru = nn.GRU(3, 4, batch_first=True)
    with torch.no_grad():
        gru.weight_hh_l0[0, 0] = float("nan")
    path = tmp_path / "nan.pt"
    torch.save(gru.state_dict(), path)
    ok = run("audit", path, *FAST, "--format", "json")
    assert ok.exit_code == 0, ok.stderr
    assert Report.from_json(ok.stdout).verdict == "non_finite"
    gated = run("audit", path, *FAST, "--fail-on", "non_finite")
    assert gated.exit_code == 1


def test_no_recurrent_layer_is_exit_2(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "linear.pt"
    torch.save(nn.Linear(3, 4).state_dict(), path)
    result = run("audit", path, *FAST)
    assert result.exit_code == 2
    assert "no standard RNN/LSTM/GRU layer" in result.stderr
    assert "--model" in result.stderr


def test_many_checkpoints_one_bad_does_not_stop_the_rest(run: Run, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    for i in range(2):
        torch.manual_seed(i)
        torch.save(nn.GRU(3, 4, batch_first=True).state_dict(), runs / f"ckpt{i}.pt")
    (runs / "broken.pt").write_bytes(b"\x00garbage")
    result = run("audit", runs, *FAST, "--format", "json")
    assert result.exit_code == 2
    entries = read_reports(result.stdout)
    assert [e.status for e in entries] == ["error", "pass", "pass"]
    assert entries[0].error is not None and "broken.pt" in entries[0].error
    assert result.stderr.count("\n") == 1
    glob_result = run("audit", str(runs / "ckpt*.pt"), *FAST, "--format", "json")
    assert glob_result.exit_code == 0
    assert len(read_reports(glob_result.stdout)) == 2


def test_parallel_jobs_match_serial(run: Run, tmp_path: Path) -> None:
    paths = []
    for i in range(2):
        torch.manual_seed(i)
        paths.append(tmp_path / f"c{i}.pt")
        torch.save(nn.RNN(3, 4, batch_first=True).state_dict(), paths[-1])
    serial = read_reports(run("audit", *paths, *FAST, "--format", "json").stdout)
    parallel_result = run("audit", *paths, *FAST, "--format", "json", "--jobs", "2")
    assert parallel_result.exit_code == 0, parallel_result.stderr
    parallel = read_reports(parallel_result.stdout)
    assert [e.name for e in parallel] == [e.name for e in serial]
    assert [e.report.metrics for e in parallel if e.report] == [e.report.metrics for e in serial if e.report]


def test_plain_pickle_needs_trust(run: Run, tmp_path: Path) -> None:
    import pickle

    torch.manual_seed(0)
    gru = nn.GRU(3, 4, batch_first=True)
    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps({"rnn": gru}))
    refused = run("audit", path, *FAST)
    assert refused.exit_code == 2
    assert "is a pickle" in refused.stderr
    trusted = run("audit", path, *FAST, "--trust", "--format", "json")
    assert trusted.exit_code == 0, trusted.stderr
    live = gradhealth.audit(gru, seq_len=16, batch_size=4, probes="quick")
    assert Report.from_json(trusted.stdout).metrics == live.metrics


def test_progress_bar_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gradhealth.cli.audit import AuditJob, _run_all
    from gradhealth.config import AuditConfig

    paths = []
    for i in range(2):
        paths.append(str(tmp_path / f"p{i}.pt"))
        torch.save(nn.RNN(2, 3).state_dict(), paths[-1])
    config = AuditConfig(seq_len=8, batch_size=2, probes="quick").to_dict()
    entries = _run_all([*paths, str(tmp_path / "absent.pt")], AuditJob(config, {}), jobs=1, progress=True)
    assert [e.status for e in entries] == ["pass", "pass", "error"]
    assert capsys.readouterr().out == ""

"""Options made from the settings table: ``--help`` defaults, usage errors validated once before any input is read,
``--verbose``, format names shared by every command, and internal errors that exit 2, never 1."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from tests.cli.conftest import FAST
from torch import nn
from typer.testing import Result

from gradhealth import settings as table
from gradhealth.cli._options import is_two_way_flag

Run = Callable[..., Result]


@pytest.fixture
def two_checkpoints(tmp_path: Path) -> list[Path]:
    paths = []
    for i in range(2):
        torch.manual_seed(i)
        paths.append(tmp_path / f"c{i}.pt")
        torch.save(nn.GRU(3, 4, batch_first=True).state_dict(), paths[-1])
    return paths


def _help_text(run: Run, command: str) -> str:
    result = run(command, "--help", env={"COLUMNS": "250", "TERMINAL_WIDTH": "250"})
    assert result.exit_code == 0
    return re.sub(r"[│╭╮╰╯─]", " ", result.stdout)


def test_audit_help_lists_every_cli_setting_with_its_default(run: Run) -> None:
    text = " ".join(_help_text(run, "audit").split())
    for setting in table.carried_by(table.CLI):
        assert setting.flag in text, setting.flag
        if setting.is_flag or setting.is_repeatable:
            continue
        default = setting.default_for(table.CLI)
        if default is not None:
            assert f"[default: {table.display(default)}]" in text, setting.name
        elif setting.default_text is not None:
            assert f"[default: ({setting.default_text})]" in text, setting.name
    assert "--no-progress" in text
    assert "-f" in text and "-o" in text and "-j" in text


@pytest.mark.parametrize(
    ("extra", "line"),
    [
        (
            ["--probes", "quik"],
            "gradhealth: error: invalid probes 'quik' from --probes: unknown preset or probe; did you mean quick?",
        ),
        (["--task", "copyy"], "gradhealth: error: invalid task 'copyy' from --task: unknown task; did you mean copy?"),
        (
            ["--format", "jsno"],
            "gradhealth: error: invalid format 'jsno' from --format: unknown format; did you mean json?",
        ),
        (
            ["--model", "tests.cli.nothere:f"],
            "gradhealth: error: invalid model 'tests.cli.nothere:f' from --model: cannot import it",
        ),
        (["--model", "nope"], "gradhealth: error: invalid model 'nope' from --model: use package.module:factory"),
        (["--seq-len", "1e3"], "gradhealth: error: invalid seq_len '1e3' from --seq-len: must be an integer >= 1"),
        (["--dtype", "float8"], "gradhealth: error: invalid dtype 'float8' from --dtype: use one of float64"),
        (["--device", "nodevice"], "gradhealth: error: invalid device 'nodevice' from --device:"),
        (["--min-horizon", "256"], "gradhealth: error: invalid min_horizon 256 from --min-horizon: beyond seq_len 16"),
    ],
)
def test_a_usage_error_is_printed_once_before_any_input_is_read(
    run: Run, two_checkpoints: list[Path], extra: list[str], line: str
) -> None:
    result = run("audit", *two_checkpoints, *FAST, *extra)
    assert result.exit_code == 2
    assert result.stdout == ""  # no table
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(line), result.stderr


def test_min_horizon_beyond_the_default_seq_len_names_the_default(run: Run, two_checkpoints: list[Path]) -> None:
    result = run("audit", two_checkpoints[0], "--min-horizon", "256")
    assert result.exit_code == 2
    assert result.stderr == (
        "gradhealth: error: invalid min_horizon 256 from --min-horizon: beyond seq_len 100 (from default): the gate "
        "would be decided by extrapolation; set seq_len >= 256\n"
    )


def test_a_single_missing_input_is_one_line_and_no_table(run: Run, tmp_path: Path) -> None:
    result = run("audit", tmp_path / "absent.pt", *FAST)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"gradhealth: error: {tmp_path / 'absent.pt'}: no such file or folder\n"


def test_only_broken_inputs_print_no_table(run: Run, tmp_path: Path) -> None:
    (tmp_path / "a.pt").write_bytes(b"")
    (tmp_path / "b.pt").write_bytes(b"x")
    result = run("audit", tmp_path / "a.pt", tmp_path / "b.pt", *FAST)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 2  # one line per input


def test_verbose_prints_every_setting_and_its_source(run: Run, two_checkpoints: list[Path], tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.gradhealth]\nbatch-size = 4\n")
    result = run("audit", two_checkpoints[0], "--seq-len", "16", "--probes", "quick", "--verbose")
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "gradhealth: settings in effect:"
    assert "  seq_len = 16  (--seq-len)" in lines
    assert f"  batch_size = 4  ({tmp_path / 'pyproject.toml'} [tool.gradhealth])" in lines
    assert "  seed = 0  (default)" in lines
    assert "  verbose = true  (--verbose)" in lines
    assert len(lines) == 1 + len(table.carried_by(table.CLI))
    assert "vanishing" in result.stdout  # the report still goes to stdout


def test_flags_reach_the_settings(run: Run, two_checkpoints: list[Path]) -> None:
    result = run("audit", two_checkpoints[0], *FAST, "--no-progress", "--verbose")
    assert "  progress = false  (--no-progress)" in result.stderr.splitlines()
    two_way = {s.name for s in table.carried_by(table.CLI) if is_two_way_flag(s)}
    assert two_way == {"progress", "batch_first", "step_per_call"}
    result = run("audit", two_checkpoints[0], *FAST, "--no-batch-first", "--verbose")
    assert "  batch_first = false  (--no-batch-first)" in result.stderr.splitlines()
    result = run("audit", two_checkpoints[0], *FAST, "--no-step-per-call", "--verbose")
    assert "  step_per_call = false  (--no-step-per-call)" in result.stderr.splitlines()


@pytest.mark.parametrize(
    ("command", "supported"),
    [("audit", table.FORMATS), ("compare", ("table", "json", "markdown")), ("inspect", ("table", "json"))],
)
def test_format_names_are_the_same_in_every_command(
    run: Run, two_checkpoints: list[Path], tmp_path: Path, command: str, supported: tuple[str, ...]
) -> None:
    report = tmp_path / "r.json"
    assert run("audit", two_checkpoints[0], *FAST, "--format", "json", "--output", report).exit_code == 0
    inputs = {"audit": [two_checkpoints[0], *FAST], "compare": [report, report], "inspect": [two_checkpoints[0]]}
    assert set(supported) <= set(table.FORMATS)
    for fmt in table.FORMATS:
        result = run(command, *inputs[command], "--format", fmt, "--output", tmp_path / f"out.{fmt}")
        if fmt in supported:
            assert result.exit_code == 0, (fmt, result.stderr)
        else:
            assert result.exit_code == 2
            assert result.stderr.startswith(
                f"gradhealth: error: invalid format '{fmt}' from --format: {command} writes"
            )


def test_an_unexpected_exception_exits_2_not_1(
    run: Run, two_checkpoints: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import gradhealth.cli.audit

    def broken(*args: object, **kwargs: object) -> None:
        raise AttributeError("'NoneType' object has no attribute 'state_dict'")

    monkeypatch.setattr(gradhealth.cli.audit, "_audit_all", broken)
    result = run("audit", two_checkpoints[0], *FAST)
    assert result.exit_code == 2
    assert result.stderr == (
        "gradhealth: internal error: AttributeError: 'NoneType' object has no attribute 'state_dict' "
        "(run with --debug for the traceback)\n"
    )
    debug = run("audit", two_checkpoints[0], *FAST, "--debug")
    assert debug.exit_code == 2
    assert "Traceback" in debug.stderr


@pytest.mark.parametrize("command", ["inspect", "compare", "demo", "plugins"])
def test_every_command_guards_internal_errors(run: Run, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    import gradhealth.cli.compare
    import gradhealth.cli.inspect
    import gradhealth.demo
    import gradhealth.plugins

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("boom")

    targets = {
        "inspect": (gradhealth.cli.inspect, "inspect_checkpoint"),
        "compare": (gradhealth.cli.compare, "_read"),
        "demo": (gradhealth.demo, "run_demo"),
        "plugins": (gradhealth.plugins, "contributions"),
    }
    monkeypatch.setattr(*targets[command], broken)
    args = {"inspect": ["x.pt"], "compare": ["a.json", "b.json"], "demo": [], "plugins": []}[command]
    result = run(command, *args)
    assert result.exit_code == 2
    # inspect lists every input it can read: an unexpected failure on one input is that input's line
    prefix = "gradhealth: error: x.pt: internal error" if command == "inspect" else "gradhealth: internal error"
    assert result.stderr.startswith(f"{prefix}: KeyError: 'boom'"), result.stderr
    assert result.stderr.count("\n") == 1

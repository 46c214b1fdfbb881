"""One malformed state_dict never sinks a run: its failure is its own line, the other inputs are audited as if it
were not there, and the exit code is 2 (serially, with ``--jobs``, and in ``inspect``)."""

from __future__ import annotations

import importlib
import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import Result

from gradhealth.cli._common import one_line
from gradhealth.errors import CheckpointError
from gradhealth.loaders.load import extract_state_dict
from gradhealth.loaders.reconstruct import reconstruct_layers

from .conftest import FAST

Run = Callable[..., Result]


def _gru_state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return dict(nn.GRU(3, 4, batch_first=True).state_dict())


def _malformed() -> dict[str, dict[object, torch.Tensor]]:
    """Each family of malformed state_dict, named; each used to raise out of reconstruction."""
    lstm = dict(nn.LSTM(3, 4, proj_size=2).state_dict())
    return {
        "hidden_zero": {"weight_ih_l0": torch.zeros(0, 3), "weight_hh_l0": torch.zeros(0, 0)},
        "projection_1d": {**lstm, "weight_hr_l0": torch.zeros(2)},
        "non_string_key": {**_gru_state(0), 3: torch.zeros(2)},
        "huge_layer_index": {**_gru_state(0), "weight_hh_l999999": torch.zeros(12, 4)},
        "billion_layer_index": {**_gru_state(0), "weight_hh_l1000000000": torch.zeros(12, 4)},
        "absurd_layer_index": {**_gru_state(0), "weight_hh_l" + "9" * 5000: torch.zeros(12, 4)},
        "cell_hidden_zero": {"weight_ih": torch.zeros(0, 3), "weight_hh": torch.zeros(0, 0)},
        "proj_not_below_hidden": {**lstm, "weight_hr_l0": torch.zeros(4, 4)},
    }


#: the reason each family's one line must name.
REASONS = {
    "hidden_zero": "an empty side",
    "projection_1d": "weight_hr_l0 has shape (2,), not a matrix",
    "non_string_key": "under the int key '3'",
    "huge_layer_index": "layers [0, 999999] are not numbered 0..999999",
    "billion_layer_index": "layer index 1000000000 is not a plausible layer number",
    "absurd_layer_index": "is not a plausible layer number",
    "cell_hidden_zero": "an empty side",
    "proj_not_below_hidden": "cannot build LSTM(3, 4, proj_size=4)",
}


@pytest.mark.parametrize("family", sorted(REASONS))
def test_each_malformed_state_dict_is_one_checkpoint_error(family: str, tmp_path: Path) -> None:
    def rebuild() -> None:
        state, _, _ = extract_state_dict(_malformed()[family], tmp_path / "x.pt")
        reconstruct_layers(state)

    with pytest.raises(CheckpointError) as caught:
        rebuild()
    assert REASONS[family] in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[list[Path], list[Path]]:
    good = []
    for seed in range(2):
        good.append(tmp_path / f"good{seed}.pt")
        torch.save(_gru_state(seed), good[-1])
    bad = []
    for family, state in _malformed().items():
        bad.append(tmp_path / f"bad_{family}.pt")
        torch.save(state, bad[-1])
    return good, bad


def _good_entries(stdout: str) -> list[str]:
    """The JSON text of every audited entry, as the listing document holds it."""
    document = json.loads(stdout)
    return [json.dumps(e, sort_keys=True) for e in document["reports"] if e["status"] != "error"]


def test_bad_inputs_leave_good_ones_byte_identical(run: Run, inputs: tuple[list[Path], list[Path]]) -> None:
    good, bad = inputs
    alone = run("audit", *good, *FAST, "--format", "json")
    assert alone.exit_code == 0, alone.stderr
    assert len(_good_entries(alone.stdout)) == len(good)
    mixed_inputs = [bad[0], good[0], *bad[1:4], good[1], *bad[4:]]
    for jobs in ("1", "2"):
        mixed = run("audit", *mixed_inputs, *FAST, "--format", "json", "--jobs", jobs)
        assert mixed.exit_code == 2
        assert _good_entries(mixed.stdout) == _good_entries(alone.stdout), jobs
        lines = mixed.stderr.strip().splitlines()
        assert len(lines) == len(bad), mixed.stderr
        for line, path in zip(lines, bad, strict=True):
            family = path.stem.removeprefix("bad_")
            assert line.startswith("gradhealth: error: ") and str(path) in line and REASONS[family] in line, line


def test_unexpected_error_in_one_input_is_its_own_line(
    run: Run, inputs: tuple[list[Path], list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gradhealth import engine

    good, _ = inputs
    real = engine.run_audit
    calls = []

    def flaky(model: object, *args: object, **kwargs: object) -> object:
        calls.append(model)
        if len(calls) == 1:
            raise ZeroDivisionError("integer division or modulo by zero")
        return real(model, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "run_audit", flaky)
    result = run("audit", *good, *FAST, "--format", "json")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"gradhealth: error: {good[0]}: internal error: ZeroDivisionError: integer division or modulo by zero "
        "(run with --debug for the traceback)"
    ]
    assert len(_good_entries(result.stdout)) == 1


def test_a_worker_that_dies_is_that_inputs_line(
    run: Run, inputs: tuple[list[Path], list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gradhealth.cli.audit

    helpers = tmp_path / "helpers"
    helpers.mkdir()
    (helpers / "gh_dying_worker.py").write_text(
        textwrap.dedent(
            """
            import os
            from gradhealth.cli.audit import audit_checkpoint

            def audit_or_die(path, job):
                if os.path.basename(path).startswith("dies"):
                    os._exit(9)  # as a worker killed for memory would
                return audit_checkpoint(path, job)
            """
        )
    )
    monkeypatch.syspath_prepend(str(helpers))  # spawned workers get the parent's sys.path
    dying = importlib.import_module("gh_dying_worker")
    monkeypatch.setattr(gradhealth.cli.audit, "audit_checkpoint", dying.audit_or_die)
    good, _ = inputs
    dies = tmp_path / "dies.pt"
    torch.save(_gru_state(5), dies)
    result = run("audit", dies, good[0], *FAST, "--format", "json", "--jobs", "2")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"gradhealth: error: {dies}: the worker process auditing it died (killed, for example for memory, or "
        "crashed in native code); audit this input alone to see why"
    ]
    statuses = [(e["name"], e["status"]) for e in json.loads(result.stdout)["reports"]]
    assert statuses == [(str(dies), "error"), (f"{good[0]}:rnn", "pass")]


def test_inspect_continues_past_a_bad_input(run: Run, inputs: tuple[list[Path], list[Path]]) -> None:
    good, bad = inputs
    alone = run("inspect", *good, "--format", "json")
    mixed = run("inspect", bad[0], good[0], bad[2], good[1], "--format", "json")
    assert alone.exit_code == 0, alone.stderr
    assert mixed.exit_code == 2
    assert mixed.stdout == alone.stdout
    lines = mixed.stderr.strip().splitlines()
    assert [line.split(": ", 2)[2].startswith(str(p)) for line, p in zip(lines, [bad[0], bad[2]], strict=True)] == [
        True,
        True,
    ]


def test_one_line_of_a_multiline_message() -> None:
    assert one_line(ValueError("first\nsecond")) == "first"

"""``gradhealth trainability``: the search on a model named on the command line, with progress on stderr."""

from __future__ import annotations

from typer.testing import CliRunner

from gradhealth.cli import app


def test_a_delay_line_from_a_factory() -> None:
    args = ["trainability", "--model", "gradhealth.reference:DelayLine", "--model-kwargs", '{"size": 4, "length": 3}']
    result = CliRunner().invoke(app, [*args, "--max-delay", "8", "--seeds", "1", "--max-steps", "150"])
    assert result.exit_code == 0, result.output
    assert "copy: largest delay learned 3, not 4" in result.stdout
    assert "gradient horizon of the same weights 3 steps" in result.stdout
    progress = [line.split()[1] for line in result.stderr.splitlines() if line.startswith("delay")]
    assert progress == ["1", "2", "4", "3"]


def test_exactly_one_model_source() -> None:
    for args in ([], ["--demo", "LSTM", "--model", "x:y"]):
        result = CliRunner().invoke(app, ["trainability", *args])
        assert result.exit_code == 2
        assert "exactly one of --model" in result.stderr


def test_unknown_demo_model_and_bad_task() -> None:
    result = CliRunner().invoke(app, ["trainability", "--demo", "transformer"])
    assert result.exit_code == 2 and "choose one of tanh RNN" in result.stderr
    result = CliRunner().invoke(app, ["trainability", "--demo", "LSTM", "--task", "parity"])
    assert result.exit_code == 2 and "trainability tasks: copy" in result.stderr

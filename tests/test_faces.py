"""Every setting of the table round-trips through every face that carries it, and the faces agree by default.

The cases are generated from the settings table: each (setting, face) pair gives a sample value on that face (an
API keyword, a CLI flag, a ``[tool.gradhealth]`` key, a pytest option, an environment variable, an ini key, a marker
argument, a ``gradhealth.testing`` call argument) and checks the typed value that reaches its consumer (the
engine's AuditConfig, the gates, the loader options, the resolved settings) and its recorded source. A setting
added to the table without a sample here fails :func:`test_every_setting_has_a_sample`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path, PosixPath
from typing import Any

import numpy as np
import pytest
import torch
import typer
from torch import nn
from typer.testing import CliRunner

# Imported before any in-process pytester run (see tests/pytest_plugin/test_plugin.py).
import gradhealth
import gradhealth.engine
import gradhealth.testing._assertions
from gradhealth import reference
from gradhealth import settings as table
from gradhealth.cli import app
from gradhealth.config import AuditConfig
from gradhealth.gates import HorizonDrop
from gradhealth.loaders.layout import LAYOUT_SETTINGS
from gradhealth.report import Report, decode_floats

pytest_plugins = ["pytester"]


@dataclasses.dataclass(frozen=True)
class Sample:
    """A non-default value of one setting: as typed on a command line, as a typed value, and as a TOML literal."""

    text: str
    value: Any
    toml: str | None = None


BASELINE = "baseline.json"
SAMPLES: dict[str, Sample] = {
    "seq_len": Sample("12", 12, "12"),
    "input_size": Sample("2", 2, "2"),
    "batch_size": Sample("3", 3, "3"),
    "task": Sample("impulse", "impulse"),
    "input_scale": Sample("0.5", 0.5, "0.5"),
    "burn_in": Sample("4", 4, "4"),
    "eps": Sample("0.05", 0.05, "0.05"),
    "seed": Sample("7", 7, "7"),
    "dtype": Sample("float32", "float32"),
    "device": Sample("cpu", "cpu"),
    "probes": Sample("lag_profile", ("lag_profile",), '["lag_profile"]'),
    "length_scan_lengths": Sample("8,16", (8, 16), "[8, 16]"),
    "lyapunov_top_k": Sample("2", 2, "2"),
    "gradient_splits": Sample("2", 2, "2"),
    "summary": Sample("median", "median"),
    "probe_vectors": Sample("2", 2, "2"),
    "probe_mode": Sample("exact", "exact"),
    "interval_level": Sample("0.8", 0.8, "0.8"),
    "bootstrap_samples": Sample("50", 50, "50"),
    "target_horizon_precision": Sample("0.05", 0.05, "0.05"),
    "max_probe_batches": Sample("3", 3, "3"),
    "checkpoint_chunks": Sample("4", 4, "4"),
    "gate_decision": Sample("conservative", "conservative"),
    "fail_on": Sample("exploding", frozenset({"exploding"}), '["exploding"]'),
    "min_horizon": Sample("3", 3.0, "3"),
    "max_horizon": Sample("50", 50.0, "50.0"),
    "max_decay_rate": Sample("5", 5.0, "5"),
    "baseline": Sample(BASELINE, Path(BASELINE)),
    "max_horizon_drop": Sample("20%", HorizonDrop(20.0, True)),
    "model": Sample("gradhealth.reference:LinearRecurrence", "gradhealth.reference:LinearRecurrence"),
    "model_kwargs": Sample('{"size": 3}', {"size": 3}),
    "trust": Sample("true", True),
    "allow_global": Sample("pathlib.PosixPath", ("pathlib.PosixPath",)),
    "inputs": Sample("inputs.npy", "inputs.npy"),
    "nonlinearity": Sample("relu", "relu"),
    "batch_first": Sample("false", False, "false"),
    "input_arg": Sample("inputs", "inputs"),
    "model_output": Sample("logits", "logits"),
    "embedding": Sample("encoder.embed", "encoder.embed"),
    "forecast_step": Sample("-2", -2, "-2"),
    "step_per_call": Sample("true", True, "true"),
    "memory_limit": Sample("512MiB", 512 * 2**20, '"512MiB"'),
    "load_timeout": Sample("30", 30.0, "30"),
    "format": Sample("json", "json"),
    "output": Sample("out.json", Path("out.json")),
    "plot": Sample("plots", Path("plots")),
    "jobs": Sample("2", 2, "2"),
    "threads": Sample("3", 3, "3"),
    "progress": Sample("false", False, "false"),
    "verbose": Sample("true", True),
    "debug": Sample("true", True),
    "report": Sample("out/audits.json", Path("out/audits.json")),
    "skip": Sample("yes", True),
}
#: Settings that need another one to be valid.
COMPANIONS: dict[str, dict[str, str]] = {"max_horizon_drop": {"baseline": BASELINE}}


def cases(*faces: str) -> list[Any]:
    return [pytest.param(s.name, id=s.name) for s in table.TABLE if set(faces) & s.faces]


def test_every_setting_has_a_sample() -> None:
    assert set(SAMPLES) == set(table.SETTINGS)
    for name, sample in SAMPLES.items():
        setting = table.SETTINGS[name]
        assert setting.parse(sample.text, source="x") == sample.value, name
        for face in setting.faces:
            assert sample.value != setting.default_for(face), f"{name}: the sample must differ from the default"


# --- Python API -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", cases(table.API))
def test_api_keyword_reaches_the_engine(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[AuditConfig] = []
    limits: list[int | None] = []

    def run_audit(model: Any, config: AuditConfig, layout: Any = None, **kwargs: Any) -> None:
        seen.append(config)
        limits.append(kwargs["memory_limit"])

    monkeypatch.setattr(gradhealth.engine, "run_audit", run_audit)
    gradhealth.audit(reference.LinearRecurrence(2), **{name: SAMPLES[name].value})
    (config,) = seen
    if name == "memory_limit":  # a guard of the engine, not a number of the report: not an AuditConfig field
        assert limits == [SAMPLES[name].value]
    else:
        assert getattr(config, name) == SAMPLES[name].value
        assert limits == [table.SETTINGS["memory_limit"].default]
    assert config.source == "argument"


def test_probe_options_reach_their_probes() -> None:
    report = gradhealth.audit(
        nn.GRU(2, 3, batch_first=True),
        seq_len=8,
        batch_size=4,
        probes="thorough",
        length_scan_lengths=[8, 16],
        lyapunov_top_k=2,
        gradient_splits=2,
    )
    assert [p["length"] for p in report.probes["length_scan"]["points"]] == [8, 16]
    assert report.probes["lyapunov"]["top_k"] == 2
    assert len(report.probes["parameter_gradients"]["clip"]["split_norms"]) == 2
    assert report.config["length_scan_lengths"] == [8, 16]


# --- gradhealth.testing call arguments (the marker's names) ---------------------------------------------------


@pytest.mark.parametrize("name", cases(table.MARKER))
def test_call_argument_reaches_the_settings(name: str) -> None:
    auditor = gradhealth.testing.Auditor().with_settings(**{name: SAMPLES[name].value})
    assert auditor.settings.values[name] == SAMPLES[name].value
    assert auditor.settings.source(name) == "argument to with_settings()"


# --- CLI and [tool.gradhealth] ---------------------------------------------------------------------------------


def _reached(plan: Any, name: str) -> Any:
    """The value as its consumer sees it: the engine's AuditConfig, the gates, the loader, or the settings."""
    group = table.SETTINGS[name].group
    if group in (table.AUDIT, table.PROBE):
        return getattr(AuditConfig.from_dict(plan.job.config), name)
    if group == table.GATE and name != "baseline":
        return getattr(plan.gates, name)
    if name in ("trust", "allow_global"):
        return plan.job.load_options["trust" if name == "trust" else "allow_globals"]
    if name in ("memory_limit", "load_timeout"):
        return plan.job.load_options[name]
    if name in ("model", "model_kwargs", "nonlinearity"):
        return plan.job.model_options[name]
    if name in LAYOUT_SETTINGS:
        return plan.job.model_options["layout"][LAYOUT_SETTINGS[name]]
    if name == "threads":
        return plan.job.threads
    if name == "debug":
        return plan.job.debug
    return plan.settings.values[name]


@pytest.fixture
def plan_of(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Any]:
    """Run ``gradhealth audit`` in ``tmp_path`` and return its plan, stopping before any input is read."""
    import gradhealth.cli.audit as audit_module

    monkeypatch.chdir(tmp_path)
    torch.save(reference.LinearRecurrence(3).state_dict(), tmp_path / "ckpt.pt")
    np.save(tmp_path / "inputs.npy", np.zeros((2, 9, 3), dtype=np.float32))
    (tmp_path / BASELINE).write_text(gradhealth.audit(reference.LinearRecurrence(3), seq_len=8, batch_size=2).to_json())
    real = audit_module.plan_audit
    plans: list[Any] = []

    def capture(settings: table.Resolved) -> Any:
        plans.append(real(settings))
        raise typer.Exit(0)

    monkeypatch.setattr(audit_module, "plan_audit", capture)

    def run(*args: str) -> Any:
        result = CliRunner().invoke(app, ["audit", "ckpt.pt", *args])
        assert result.exit_code == 0, result.output
        return plans[-1]

    return run


def _flag_args(name: str, text: str) -> list[str]:
    setting = table.SETTINGS[name]
    if setting.is_flag:
        return [setting.flag if setting.parse(text, source="x") else "--no-" + setting.flag[2:]]
    return [setting.flag, text]


@pytest.mark.parametrize("name", cases(table.CLI))
def test_cli_flag_reaches_its_consumer(name: str, plan_of: Callable[..., Any]) -> None:
    extra = [arg for other, text in COMPANIONS.get(name, {}).items() for arg in _flag_args(other, text)]
    plan = plan_of(*_flag_args(name, SAMPLES[name].text), *extra)
    expected = SAMPLES[name].value
    assert plan.settings.values[name] == expected
    assert plan.settings.source(name) == _flag_args(name, SAMPLES[name].text)[0]
    assert _reached(plan, name) == expected


@pytest.mark.parametrize("name", cases(table.PYPROJECT))
def test_pyproject_key_reaches_its_consumer(name: str, plan_of: Callable[..., Any], tmp_path: Path) -> None:
    lines = [f"{name.replace('_', '-')} = {SAMPLES[name].toml or json.dumps(SAMPLES[name].text)}"]
    lines += [f"{other} = {json.dumps(text)}" for other, text in COMPANIONS.get(name, {}).items()]
    (tmp_path / "pyproject.toml").write_text("[tool.gradhealth]\n" + "\n".join(lines) + "\n")
    plan = plan_of()
    assert plan.settings.values[name] == SAMPLES[name].value
    assert plan.settings.source(name) == f"{tmp_path / 'pyproject.toml'} [tool.gradhealth]"
    assert _reached(plan, name) == SAMPLES[name].value


# --- pytest: options, environment variables, ini keys, markers -------------------------------------------------

INNER = """
import pytest
from pathlib import PosixPath
import gradhealth
from gradhealth import reference
from gradhealth.config import AuditConfig
from gradhealth.gates import HorizonDrop
from gradhealth.loaders.layout import LAYOUT_SETTINGS
from gradhealth.pytest_plugin import item_settings

{marker}
def test_round_trip(request):
    settings = item_settings(request.node)
    assert settings.values[{name!r}] == {expected!r}
    assert settings.source({name!r}) == {source!r}
    if {reaches_engine}:
        report = gradhealth.audit(reference.LinearRecurrence(2), **settings.audit_kwargs())
        assert getattr(AuditConfig.from_dict(report.config), {name!r}) == {expected!r}
"""


def _inner_suite(pytester: pytest.Pytester, name: str, source: str, marker: str = "") -> None:
    assert PosixPath and HorizonDrop  # the names the generated test evaluates
    reaches_engine = table.SETTINGS[name].group in (table.AUDIT, table.PROBE)
    pytester.makepyfile(
        INNER.format(
            name=name, expected=SAMPLES[name].value, source=source, marker=marker, reaches_engine=reaches_engine
        )
    )


@pytest.mark.parametrize("where", ["option", "env", "ini"])
@pytest.mark.parametrize("name", cases(table.PYTEST))
def test_pytest_option_env_and_ini_reach_the_settings(
    name: str, where: str, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    setting, text = table.SETTINGS[name], SAMPLES[name].text
    args: list[str] = []
    if where == "option":
        source = f"option {setting.pytest_option}"
        args = [setting.pytest_option] if setting.is_flag else [f"{setting.pytest_option}={text}"]
    elif where == "env":
        source = f"environment variable {setting.env_var}"
        monkeypatch.setenv(setting.env_var, text)
    else:
        source = f"ini key {setting.ini_key} in tox.ini"
        pytester.makeini(f"[pytest]\n{setting.ini_key} = {text}\n")
    _inner_suite(pytester, name, source)
    pytester.runpytest(*args).assert_outcomes(passed=1)


@pytest.mark.parametrize("name", cases(table.MARKER))
def test_marker_argument_reaches_the_settings(name: str, pytester: pytest.Pytester) -> None:
    marker = f"@pytest.mark.gradhealth({name}={SAMPLES[name].value!r})"
    _inner_suite(pytester, name, "marker on test_round_trip", marker)
    pytester.runpytest().assert_outcomes(passed=1)


# --- one default for every face -------------------------------------------------------------------------------

CONFTEST = """
import pytest
import torch

@pytest.fixture
def gru():
    torch.manual_seed(0)
    return torch.nn.GRU(3, 4, batch_first=True)
"""


def test_the_same_model_gets_the_same_numbers_by_default_on_every_face(pytester: pytest.Pytester) -> None:
    torch.manual_seed(0)
    gru = nn.GRU(3, 4, batch_first=True)
    api = gradhealth.audit(gru)

    checkpoint = pytester.path / "gru.pt"  # pytester runs in its own folder: no pyproject.toml there
    torch.save(gru.state_dict(), checkpoint)
    cli = CliRunner().invoke(app, ["audit", str(checkpoint), "--format", "json"])
    assert cli.exit_code == 0, cli.stderr
    from_cli = Report.from_json(cli.stdout)

    pytester.makeconftest(CONFTEST)
    pytester.makepyfile("def test_default(gradhealth, gru):\n    gradhealth.audit(gru)\n")
    pytester.runpytest("--gradhealth-report=audits.json").assert_outcomes(passed=1)
    (entry,) = json.loads((pytester.path / "audits.json").read_text())
    from_pytest = Report.from_dict(decode_floats(entry["report"]))

    assert from_cli.config == api.config
    overridden = {s.name: s.default_for(table.PYTEST) for s in table.TABLE if s.face_defaults}
    assert from_pytest.config == api.config | overridden
    assert api.config["seq_len"] == table.SETTINGS["seq_len"].default == 100
    assert from_cli.metrics == api.metrics == from_pytest.metrics
    assert from_cli.profile.g == api.profile.g == from_pytest.profile.g

"""The settings table: strict parsers, layers, precedence, and the AuditConfig made from it."""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import subprocess
import sys
from pathlib import Path

import pytest

from gradhealth import settings as table
from gradhealth.config import AuditConfig
from gradhealth.errors import ConfigError
from gradhealth.gates import HorizonDrop
from gradhealth.settings import SETTINGS


def parse(name: str, raw: object) -> object:
    return SETTINGS[name].parse(raw, source="here")


def test_text_and_typed_values_are_typed() -> None:
    assert parse("seq_len", " 32 ") == 32
    assert parse("seq_len", 32) == 32
    assert parse("eps", "1e-3") == 1e-3
    assert parse("input_scale", 2) == 2.0
    assert isinstance(parse("input_scale", 2), float)
    assert parse("probes", "quick") == "quick"
    assert parse("probes", "lag_profile, spectrum") == ("lag_profile", "spectrum")
    assert parse("probes", "lag_profile") == ("lag_profile",)
    assert parse("probes", ["lag_profile"]) == ("lag_profile",)
    assert parse("fail_on", "exploding,non_finite") == frozenset({"exploding", "non_finite"})
    assert parse("fail_on", ["vanishing"]) == frozenset({"vanishing"})
    assert parse("dtype", "auto") is None
    assert parse("dtype", "float32") == "float32"
    assert parse("min_horizon", "12.5") == 12.5
    assert parse("length_scan_lengths", "8, 16,32") == (8, 16, 32)
    assert parse("length_scan_lengths", [8, 16]) == (8, 16)
    assert parse("max_horizon_drop", "20%") == HorizonDrop(20.0, True)
    assert parse("max_horizon_drop", 15) == HorizonDrop(15.0, False)
    assert parse("model_kwargs", '{"hidden": 4}') == {"hidden": 4}
    assert parse("allow_global", ["a.B", "c.D"]) == ("a.B", "c.D")
    assert parse("report", "out/r.json") == Path("out/r.json")
    assert parse("input_size", "none") is None


@pytest.mark.parametrize("word", ["true", "TRUE", "1", "yes", "On", True])
def test_booleans_accept_true_words(word: object) -> None:
    assert parse("skip", word) is True


@pytest.mark.parametrize("word", ["false", "False", "0", "no", "OFF", False])
def test_booleans_accept_false_words(word: object) -> None:
    assert parse("skip", word) is False


@pytest.mark.parametrize("word", ["", "nah", "2", "truee", 1, 0, None, "none"])
def test_booleans_refuse_anything_else(word: object) -> None:
    with pytest.raises(ConfigError, match=r"must be true or false \(or 1/0, yes/no, on/off\)"):
        parse("progress", word)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("seq_len", "abc", "invalid seq_len 'abc' from here: must be an integer >= 1"),
        ("seq_len", 2.5, "invalid seq_len 2.5 from here: must be an integer >= 1"),
        ("seq_len", "2.0", "invalid seq_len '2.0' from here: must be an integer >= 1"),
        ("seq_len", 2.0, "invalid seq_len 2.0 from here: must be an integer >= 1"),
        ("seq_len", True, "invalid seq_len True from here: must be an integer >= 1"),
        ("seed", -1, "invalid seed -1 from here: must be an integer >= 0"),
        ("eps", "2", "invalid eps '2' from here: must be a finite number in (0, 1)"),
        ("eps", "nan", "invalid eps 'nan' from here: must be a finite number in (0, 1)"),
        ("input_scale", math.inf, "invalid input_scale inf from here: must be a finite number > 0"),
        (
            "dtype",
            "float8",
            "invalid dtype 'float8' from here: use one of float64, float32, bfloat16, float16 or auto;*",
        ),
        ("dtype", "flaot32", "*; did you mean float32?"),
        ("min_horizon", "-1", "invalid min_horizon '-1' from here: must be a number of steps >= 0"),
        ("min_horizon", "abc", "invalid min_horizon 'abc' from here: must be a number of steps >= 0"),
        ("min_horizon", "inf", "invalid min_horizon 'inf' from here: must be a number of steps >= 0"),
        ("max_decay_rate", "fast", "invalid max_decay_rate 'fast' from here: must be a rate per step, e.g. 0.05"),
        ("fail_on", "bad", "invalid fail_on 'bad' from here: verdicts are *"),
        ("probes", "", "invalid probes '' from here: use a preset*"),
        ("probes", 3, "invalid probes 3 from here: use a preset*"),
        (
            "length_scan_lengths",
            "8,x",
            "invalid length_scan_lengths '8,x' from here: must be comma-separated*",
        ),
        ("length_scan_lengths", [], "invalid length_scan_lengths [] from here: must be comma-separated integers*"),
        ("lyapunov_top_k", 0, "invalid lyapunov_top_k 0 from here: must be an integer >= 1"),
        ("max_horizon_drop", "lots", "invalid max_horizon_drop 'lots' from here: use a percentage like '20%'*"),
        ("model", "nope", "invalid model 'nope' from here: use package.module:factory*"),
        ("model_kwargs", "1", "invalid model_kwargs '1' from here: must be a JSON object*"),
        ("model_kwargs", "{", "invalid model_kwargs '{' from here: not valid JSON*"),
        ("nonlinearity", "sigmoid", "invalid nonlinearity 'sigmoid' from here: use one of tanh, relu"),
        ("task", "", "invalid task '' from here: must be a non-empty string"),
    ],
)
def test_bad_values_name_setting_value_and_source(name: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(name, value)
    assert fnmatch.fnmatchcase(str(info.value), message), str(info.value)


def test_the_api_check_does_not_convert_text() -> None:
    assert SETTINGS["seq_len"].check(5, source="argument") == 5
    with pytest.raises(ConfigError, match="invalid seq_len '5' from argument"):
        SETTINGS["seq_len"].check("5", source="argument")


def test_every_setting_is_complete() -> None:
    for setting in table.TABLE:
        assert setting.faces <= set(table.FACES), setting.name
        assert setting.faces, setting.name
        assert setting.help and not setting.help.endswith("."), setting.name
        assert "[" not in setting.help, f"{setting.name}: rich markup in Typer help would eat brackets"
        default = setting.default
        if default is not None and not setting.is_flag:
            assert setting.type.check(default) == default, setting.name  # defaults satisfy their own parser
        for override in setting.face_defaults:
            assert override.face in setting.faces and override.reason


def test_code_running_settings_are_command_line_only() -> None:
    runs_code = {s.name for s in table.TABLE if s.runs_code}
    assert runs_code == {"trust", "allow_global", "model", "model_kwargs"}
    assert all(SETTINGS[name].faces == {table.CLI} for name in runs_code)


def test_audit_config_fields_are_the_table_audit_settings_with_the_same_defaults() -> None:
    audit = [s for s in table.TABLE if s.group in (table.AUDIT, table.PROBE)]
    fields = {f.name: f for f in dataclasses.fields(AuditConfig)}
    for setting in audit:
        assert setting.name in fields, setting.name
        assert fields[setting.name].default == setting.default, setting.name
        assert setting.faces == set(table.FACES), f"{setting.name} shapes the numbers: every face carries it"
    assert AuditConfig().to_dict()["seq_len"] == SETTINGS["seq_len"].default


def test_face_default_overrides_change_no_number() -> None:
    overrides = {(s.name, d.face): d.value for s in table.TABLE for d in s.face_defaults}
    assert overrides == {("probes", table.PYTEST): "quick"}
    # quick is a subset of standard: the lag profile, which decides every gate, is computed either way.
    assert set(table.PRESETS["quick"]) <= set(table.PRESETS["standard"])


def test_face_names() -> None:
    setting = SETTINGS["max_horizon_drop"]
    assert (setting.flag, setting.pytest_option) == ("--max-horizon-drop", "--gradhealth-max-horizon-drop")
    assert (setting.env_var, setting.ini_key) == ("GRADHEALTH_MAX_HORIZON_DROP", "gradhealth_max_horizon_drop")
    assert SETTINGS["format"].short_flags == ("-f",)


def test_layers_unknown_names_have_a_did_you_mean() -> None:
    with pytest.raises(ConfigError) as info:
        table.parse_layer({"min_horizn": 3}, face=table.PYPROJECT, source="f.toml [tool.gradhealth]")
    assert str(info.value) == (
        "invalid setting 'min_horizn' from f.toml [tool.gradhealth]: unknown gradhealth setting; did you mean "
        "min_horizon?"
    )
    with pytest.raises(ConfigError, match="unknown gradhealth setting; known settings: seq_len, "):
        table.parse_layer({"zzz": 3}, face=table.MARKER, source="marker on test_x")


def test_layers_refuse_names_the_face_does_not_carry() -> None:
    with pytest.raises(ConfigError, match="skip cannot be set from a marker or a gradhealth.testing call"):
        table.parse_layer({"skip": True}, face=table.MARKER, source="marker on test_x")
    with pytest.raises(ConfigError, match="output cannot be set from a config file"):
        table.parse_layer({"output": "x"}, face=table.PYPROJECT, source="f")


@pytest.mark.parametrize("key", ["trust", "allow-global", "model", "model_kwargs"])
def test_config_files_never_set_code_running_settings(key: str) -> None:
    with pytest.raises(ConfigError) as info:
        table.parse_layer({key: "false"}, face=table.PYPROJECT, source="/p/pyproject.toml [tool.gradhealth]")
    flag = SETTINGS[key.replace("-", "_")].flag
    assert f"lets a file run code, so it is never read from a config file; pass {flag} on the command line" in str(
        info.value
    )
    assert "/p/pyproject.toml [tool.gradhealth]" in str(info.value)


def test_config_file_keys_with_dashes_and_twice() -> None:
    layer = table.parse_layer({"seq-len": 8, "fail-on": "exploding"}, face=table.PYPROJECT, source="f")
    assert layer == {"seq_len": (8, "f"), "fail_on": (frozenset({"exploding"}), "f")}
    with pytest.raises(ConfigError, match="seq_len is given twice"):
        table.parse_layer({"seq-len": 8, "seq_len": 9}, face=table.PYPROJECT, source="f")


def test_resolve_takes_the_last_layer_and_keeps_sources() -> None:
    ini = table.parse_layer({"seq_len": "10", "seed": "1"}, face=table.PYTEST, source="ini")
    env = table.parse_layer({"seq_len": "20"}, face=table.PYTEST, source="env")
    marker = table.parse_layer({"batch_size": 4}, face=table.MARKER, source="marker")
    resolved = table.resolve(table.PYTEST, [ini, env, marker])
    assert resolved.values["seq_len"] == 20
    assert resolved.source("seq_len") == "env"
    assert resolved.source("seed") == "ini"
    assert resolved.source("task") == "default"
    assert resolved.source("probes") == "pytest default"
    assert resolved.values["probes"] == "quick"
    assert resolved.audit_kwargs()["batch_size"] == 4
    assert set(resolved.gate_values()) == {"fail_on", "min_horizon", "max_horizon", "max_decay_rate", "gate_decision"}
    assert resolved.explicit() == {"seq_len": (20, "env"), "seed": (1, "ini"), "batch_size": (4, "marker")}
    assert resolved.lines(explicit_only=True) == ["seq_len = 20  (env)", "batch_size = 4  (marker)", "seed = 1  (ini)"]
    again = resolved.with_layers({"seed": (2, "call")})
    assert (again.values["seed"], again.source("seed"), again.values["seq_len"]) == (2, "call", 20)


def test_the_cli_face_has_one_default_with_the_api() -> None:
    cli = table.resolve(table.CLI)
    api = AuditConfig()
    assert {name: getattr(api, name) for name in cli.audit_kwargs()} == cli.audit_kwargs()


def test_min_horizon_beyond_seq_len_is_refused() -> None:
    ok = table.resolve(table.CLI, [{"min_horizon": (100.0, "--min-horizon")}])
    table.check_horizon_within_reach(ok)
    beyond = table.resolve(table.PYTEST, [{"min_horizon": (256.0, "marker on test_x")}])
    with pytest.raises(ConfigError) as info:
        table.check_horizon_within_reach(beyond)
    assert str(info.value) == (
        "invalid min_horizon 256 from marker on test_x: beyond seq_len 100 (from default): the gate would be "
        "decided by extrapolation; set seq_len >= 256"
    )


def test_display() -> None:
    assert table.display(None) == "none"
    assert table.display((16, 32)) == "16,32"
    assert table.display(frozenset({"vanishing", "exploding"})) == "exploding,vanishing"
    assert table.display(0.01) == "0.01"
    assert table.display(True) == "true"


def test_importing_the_table_loads_neither_torch_nor_numpy() -> None:
    code = (
        "import sys, gradhealth.settings as s; s.SETTINGS['fail_on'].parse('vanishing', source='x'); "
        "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

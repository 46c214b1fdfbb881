"""Parsing and precedence of the pytest face's settings."""

from __future__ import annotations

import fnmatch

import pytest

from gradhealth.errors import ConfigError
from gradhealth.testing._settings import DEFAULTS, merge, parse_layer, parse_value


def test_strings_are_typed() -> None:
    assert parse_value("seq_len", " 32 ", "x") == 32
    assert parse_value("eps", "1e-3", "x") == 1e-3
    assert parse_value("probes", "quick", "x") == "quick"
    assert parse_value("probes", "lag_profile, spectrum", "x") == ("lag_profile", "spectrum")
    assert parse_value("fail_on", "exploding,non_finite", "x") == frozenset({"exploding", "non_finite"})
    assert parse_value("dtype", "auto", "x") is None
    assert parse_value("min_horizon", "12.5", "x") == 12.5


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("seq_len", "abc", "invalid seq_len 'abc' from here: must be an integer >= 1"),
        ("seq_len", 2.5, "invalid seq_len 2.5 from here: must be an integer >= 1"),
        ("seed", -1, "invalid seed -1 from here: must be an integer >= 0"),
        ("eps", "2", "invalid eps 2.0 from here: must be a finite number in (0, 1)"),
        ("dtype", "float8", "invalid dtype 'float8' from here: use one of float64, *"),
        ("min_horizon", "-1", "invalid min_horizon '-1' from here: must be a number of steps >= 0"),
        ("fail_on", "bad", "invalid fail_on 'bad' from here: verdicts are *"),
        ("probes", "", "invalid probes '' from here: use a preset*"),
        ("nope", 1, "invalid setting 'nope' from here: unknown gradhealth setting*"),
    ],
)
def test_bad_values_name_setting_value_and_source(name: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_value(name, value, "here")
    assert fnmatch.fnmatchcase(str(info.value), message), str(info.value)


def test_merge_takes_the_last_layer_and_keeps_sources() -> None:
    ini = parse_layer({"seq_len": "10", "seed": "1"}, lambda n: "ini")
    env = parse_layer({"seq_len": "20"}, lambda n: "env")
    marker = parse_layer({"batch_size": 4}, lambda n: "marker")
    settings = merge([ini, env, marker])
    assert settings.values["seq_len"] == 20
    assert settings.source("seq_len") == "env"
    assert settings.source("seed") == "ini"
    assert settings.source("task") == "default"
    assert settings.values["task"] == DEFAULTS["task"]
    assert settings.audit_kwargs()["batch_size"] == 4

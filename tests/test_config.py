"""Settings validation: every bad value is named, with where it came from."""

from __future__ import annotations

import pytest

import gradhealth
from gradhealth.config import AuditConfig
from gradhealth.errors import ConfigError


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seq_len": 0}, "invalid seq_len 0 from argument: must be an integer >= 1"),
        ({"seq_len": "abc"}, "invalid seq_len 'abc' from argument"),
        ({"seq_len": 5, "batch_size": 0}, "invalid batch_size 0"),
        ({"seq_len": 5, "eps": 1.5}, "invalid eps 1.5 from argument: must be a finite number in (0, 1)"),
        ({"seq_len": 5, "input_scale": float("nan")}, "invalid input_scale nan"),
        ({"seq_len": 5, "dtype": "float8"}, "invalid dtype 'float8' from argument: use one of float64"),
        ({"seq_len": 5, "probes": "everything"}, "invalid probes 'everything' from argument: use a preset"),
        ({"seq_len": 5, "burn_in": -1}, "invalid burn_in -1"),
        ({"seq_len": True}, "invalid seq_len True"),
    ],
)
def test_bad_values_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        AuditConfig(**kwargs)  # type: ignore[arg-type]
    assert str(info.value).startswith(message)


def test_source_is_reported() -> None:
    with pytest.raises(ConfigError, match="from marker on test_lstm"):
        AuditConfig(seq_len=-3, source="marker on test_lstm")


def test_lengths_and_presets() -> None:
    cfg = AuditConfig(seq_len=10)
    assert cfg.total_len == 21
    assert cfg.effective_burn_in == 10
    assert AuditConfig(seq_len=10, burn_in=0).total_len == 11
    assert cfg.probe_names[0] == "lag_profile"
    assert AuditConfig.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()


def test_unknown_probe_name_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"invalid probes 'lag_profil' from argument: unknown probe; known probes: "):
        gradhealth.audit(gradhealth.reference.LinearRecurrence(2), seq_len=4, probes=["lag_profil"])


def test_single_probe_name_is_accepted() -> None:
    report = gradhealth.audit(gradhealth.reference.LinearRecurrence(2), seq_len=4, batch_size=2, probes="lag_profile")
    assert report.config["probes"] == ["lag_profile"]

"""The Report: versioned JSON, round trip, non-finite values, forward compatibility, text summary."""

from __future__ import annotations

import json
import math

import pytest
from torch import nn

import gradhealth
from gradhealth import reference
from gradhealth.report import SCHEMA_VERSION, Report

REQUIRED_METRICS = {
    "horizon",
    "horizon_reached",
    "horizon_1e3",
    "decay_rate",
    "decay_rate_tail",
    "timescale",
    "half_life",
    "peak_lag",
    "peak_gain",
    "first_explode_lag",
    "fit_r2",
}


@pytest.fixture(scope="module")
def report() -> Report:
    return gradhealth.audit(nn.LSTM(3, 5, bidirectional=True), seq_len=16, batch_size=3, probes="quick")


def test_json_has_the_documented_keys(report: Report) -> None:
    data = json.loads(report.to_json())
    assert data["schema_version"] == SCHEMA_VERSION == 2
    assert list(data)[:2] == ["schema_version", "verdict"]
    assert set(data["metrics"]) >= REQUIRED_METRICS
    assert {"lags", "g"} <= set(data["profile"])
    assert data["profile"]["lags"] == list(range(17))
    assert [d["name"] for d in data["directions"]] == ["forward", "backward"]
    for key in ("tags", "findings", "config", "model"):
        assert key in data
    config = data["config"]
    for key in ("seq_len", "batch_size", "task", "input_scale", "burn_in", "eps", "seed", "dtype", "device"):
        assert key in config
    assert config["burn_in"] == 16
    assert data["model"]["class"] == "torch.nn.modules.rnn.LSTM"
    assert data["model"]["parameters"] == sum(p.numel() for p in nn.LSTM(3, 5, bidirectional=True).parameters())


def test_round_trip_is_lossless(report: Report) -> None:
    again = Report.from_json(report.to_json())
    assert again == report
    assert again.to_json() == report.to_json()


def test_non_finite_values_round_trip_as_strings() -> None:
    nan_report = gradhealth.audit(reference.LinearRecurrence(2, 1.0), seq_len=10, batch_size=2, probes="quick")
    assert math.isinf(nan_report.metrics.horizon)  # no decay at all: infinite horizon
    text = nan_report.to_json()
    assert '"horizon": "inf"' in text
    json.loads(text)  # strict JSON: no bare Infinity/NaN
    assert math.isinf(Report.from_json(text).metrics.horizon)


def test_from_json_rejects_other_schemas_and_garbage(report: Report) -> None:
    data = json.loads(report.to_json())
    data["schema_version"] = 99
    with pytest.raises(ValueError, match="schema_version 99 is not supported"):
        Report.from_json(json.dumps(data))
    with pytest.raises(ValueError, match="invalid JSON"):
        Report.from_json("{nope")
    with pytest.raises(ValueError, match="not a gradhealth report"):
        Report.from_json("[1, 2]")


def test_from_json_ignores_keys_added_later(report: Report) -> None:
    data = json.loads(report.to_json())
    data["metrics"]["a_future_metric"] = 1.0
    data["directions"][0]["profile"]["future"] = [1]
    assert Report.from_json(json.dumps(data)).metrics == report.metrics


def test_text_summary_names_verdict_numbers_and_settings(report: Report) -> None:
    text = str(report)
    assert text.startswith(f"gradhealth {report.gradhealth_version} report: LSTM (")  # the model, not the adapter
    assert "[forward] verdict:" in text
    assert "[backward] verdict:" in text
    assert "horizon@0.01:" in text
    assert "settings: seq_len=16 batch_size=3 task=noise" in text


def test_direction_lookup(report: Report) -> None:
    assert report.direction("backward").name == "backward"
    with pytest.raises(KeyError, match="no direction 'sideways'"):
        report.direction("sideways")

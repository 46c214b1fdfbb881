"""Gates on reports: thresholds per direction, verdict lists, baselines."""

from __future__ import annotations

import math

import pytest

import gradhealth
from gradhealth import reference
from gradhealth.errors import ConfigError
from gradhealth.gates import Thresholds, evaluate_gates, failed, parse_drop, parse_verdicts


@pytest.fixture(scope="module")
def rho09() -> gradhealth.Report:
    return gradhealth.audit(reference.LinearRecurrence(4, 0.9), seq_len=60, batch_size=2, probes="quick")


@pytest.fixture(scope="module")
def rho08() -> gradhealth.Report:
    return gradhealth.audit(reference.LinearRecurrence(4, 0.8), seq_len=60, batch_size=2, probes="quick")


def test_empty_gates_pass(rho09: gradhealth.Report) -> None:
    assert Thresholds().is_empty
    assert evaluate_gates(rho09, Thresholds()) == []


def test_horizon_thresholds(rho09: gradhealth.Report) -> None:
    assert not failed(evaluate_gates(rho09, Thresholds(min_horizon=44)))
    [result] = failed(evaluate_gates(rho09, Thresholds(min_horizon=45)))
    assert result.message == "horizon 44 < min 45 steps"
    assert result.measured == 44
    [result] = failed(evaluate_gates(rho09, Thresholds(max_horizon=40)))
    assert result.message == "horizon 44 > max 40 steps"


def test_verdict_gate(rho09: gradhealth.Report) -> None:
    [result] = failed(evaluate_gates(rho09, Thresholds(fail_on=parse_verdicts("vanishing,exploding"))))
    assert result.message == "verdict vanishing is in fail-on (exploding, vanishing)"
    assert not failed(evaluate_gates(rho09, Thresholds(fail_on=parse_verdicts(["exploding"]))))


def test_decay_rate_gate(rho09: gradhealth.Report) -> None:
    assert not failed(evaluate_gates(rho09, Thresholds(max_decay_rate=0.11)))  # ln 0.9 = -0.105
    assert failed(evaluate_gates(rho09, Thresholds(max_decay_rate=0.1)))
    assert failed(evaluate_gates(rho09, Thresholds(max_decay_rate=-0.1)))  # sign does not matter


def test_baseline_drop_percent_and_steps(rho09: gradhealth.Report, rho08: gradhealth.Report) -> None:
    # rho 0.9 -> 44 steps, rho 0.8 -> 21 steps: a drop of 23 steps (52.3%)
    assert rho08.metrics.horizon == 21
    [result] = evaluate_gates(rho08, Thresholds(baseline=rho09, max_horizon_drop=parse_drop("50%")))
    assert not result.passed
    assert "dropped 23 steps (52.3%), allowed 50%" in result.message
    assert evaluate_gates(rho08, Thresholds(baseline=rho09, max_horizon_drop=parse_drop("53%")))[0].passed
    assert evaluate_gates(rho08, Thresholds(baseline=rho09, max_horizon_drop=parse_drop("23")))[0].passed
    assert not evaluate_gates(rho08, Thresholds(baseline=rho09, max_horizon_drop=parse_drop("22")))[0].passed
    assert evaluate_gates(rho09, Thresholds(baseline=rho08, max_horizon_drop=parse_drop("0")))[0].passed  # improvement


def test_bidirectional_gates_check_each_direction() -> None:
    report = gradhealth.audit(
        gradhealth.reference.chrono_lstm(2, 4, 50, bidirectional=True), seq_len=8, batch_size=2, probes="quick"
    )
    results = evaluate_gates(report, Thresholds(min_horizon=1))
    assert [r.direction for r in results] == ["forward", "backward"]


@pytest.mark.parametrize("text", ["abc", "-5", "%", "nan"])
def test_bad_drop_values(text: str) -> None:
    with pytest.raises(ConfigError, match="invalid max_horizon_drop"):
        parse_drop(text)


def test_bad_verdicts() -> None:
    with pytest.raises(ConfigError, match="invalid fail_on 'vanished' from argument: verdicts are healthy"):
        parse_verdicts("vanishing,vanished")


def test_infinite_baseline_horizon() -> None:
    flat = gradhealth.audit(reference.LinearRecurrence(2, 1.0), seq_len=10, batch_size=2, probes="quick")
    assert math.isinf(flat.metrics.horizon)
    assert evaluate_gates(flat, Thresholds(baseline=flat, max_horizon_drop=parse_drop("10%")))[0].passed

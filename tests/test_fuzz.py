"""Fuzzing ``gradhealth.audit`` over model options, dtypes and devices (hypothesis): it returns a Report or raises
one of gradhealth's own errors, never a raw torch exception, and leaves the caller's process as it found it: every
torch thread's denormal mode, Python's ``random``, torch's RNG, grad mode, anomaly mode, the default dtype and the
thread count, also when the caller had changed them."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import gradhealth
from gradhealth._denormals import is_flushing_denormals, measure_flushed_fraction
from gradhealth.errors import GradhealthError
from gradhealth.report import Report

FAMILIES = {"RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}
VALID_DTYPES = ["float64", "float32", "float16", "bfloat16", torch.float32, None]
INVALID_DTYPES = ["int8", "float", "torch.float32", "", "complex64"]
VALID_DEVICES = ["cpu", "cpu:0", None]
INVALID_DEVICES = ["meta", "cuda", "cuda:7", "garbage", "cpu:-1"]

models = st.fixed_dictionaries(
    {
        "family": st.sampled_from(sorted(FAMILIES)),
        "input_size": st.integers(1, 4),
        "hidden_size": st.integers(1, 5),
        "num_layers": st.integers(1, 2),
        "bidirectional": st.booleans(),
        "batch_first": st.booleans(),
        "poison": st.sampled_from([None, None, math.nan, math.inf]),
    }
)
valid_options = st.fixed_dictionaries(
    {
        "dtype": st.sampled_from(VALID_DTYPES),
        "device": st.sampled_from(VALID_DEVICES),
        "probes": st.sampled_from(["quick", "standard"]),
        "seq_len": st.integers(1, 6),
        "batch_size": st.integers(1, 3),
    }
)
any_options = st.fixed_dictionaries(
    {
        "dtype": st.sampled_from(VALID_DTYPES + INVALID_DTYPES) | st.text(max_size=6),
        "device": st.sampled_from(VALID_DEVICES + INVALID_DEVICES) | st.text(max_size=6),
        "probes": st.just("quick"),
        "seq_len": st.integers(1, 4),
        "batch_size": st.integers(1, 2),
    }
)
caller = st.fixed_dictionaries(
    {
        "grad": st.booleans(),
        "anomaly": st.booleans(),
        "default_dtype": st.sampled_from([torch.float32, torch.float64]),
        "flush_main_thread": st.booleans(),
    }
)


@pytest.fixture(scope="module")
def two_threads() -> Iterator[None]:
    """Two intra-op threads, so that a worker thread's denormal mode can differ from the caller's."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(threads)


def _process_state() -> dict[str, Any]:
    return {
        "flushing": is_flushing_denormals(),
        "flushed_fraction": measure_flushed_fraction(),
        "random": random.getstate(),
        "torch_rng": torch.get_rng_state(),
        "grad": torch.is_grad_enabled(),
        "anomaly": torch.is_anomaly_enabled(),
        "default_dtype": torch.get_default_dtype(),
        "threads": torch.get_num_threads(),
    }


def _same(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert torch.equal(before.pop("torch_rng"), after.pop("torch_rng"))
    assert before == after


def _build(spec: dict[str, Any]) -> nn.Module:
    torch.manual_seed(0)
    model = FAMILIES[spec["family"]](
        spec["input_size"],
        spec["hidden_size"],
        num_layers=spec["num_layers"],
        bidirectional=spec["bidirectional"],
        batch_first=spec["batch_first"],
    )
    if spec["poison"] is not None:
        with torch.no_grad():
            model.weight_hh_l0[0, 0] = spec["poison"]
    return model


def _audit_in_callers_state(model: nn.Module, opts: dict[str, Any], outside: dict[str, Any]) -> Report | None:
    """Audit with the caller's state set as ``outside`` says; check the state is unchanged; ``None`` if it raised
    one of gradhealth's errors (any other exception fails the test)."""
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(outside["default_dtype"])
    torch.set_flush_denormal(outside["flush_main_thread"])
    try:
        with torch.set_grad_enabled(outside["grad"]), torch.autograd.set_detect_anomaly(outside["anomaly"]):
            before = _process_state()
            error: GradhealthError | None = None
            report: Report | None = None
            try:
                report = gradhealth.audit(model, **opts)
            except GradhealthError as exc:
                error = exc
            _same(before, _process_state())
    finally:
        torch.set_flush_denormal(False)
        torch.set_default_dtype(default_dtype)
    if error is not None:
        assert str(error) and "\n" not in str(error)
    return report


FUZZ = settings(
    max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(spec=models, opts=valid_options, outside=caller)
def test_valid_options_always_give_a_report(
    two_threads: None, spec: dict[str, Any], opts: dict[str, Any], outside: dict[str, Any]
) -> None:
    report = _audit_in_callers_state(_build(spec), opts, outside)
    assert isinstance(report, Report)
    if spec["poison"] is not None:
        assert report.verdict == "non_finite"


@FUZZ
@given(spec=models, opts=any_options, outside=caller)
def test_any_options_give_a_report_or_our_error(
    two_threads: None, spec: dict[str, Any], opts: dict[str, Any], outside: dict[str, Any]
) -> None:
    report = _audit_in_callers_state(_build(spec), opts, outside)
    if opts["dtype"] in INVALID_DTYPES or opts["device"] in INVALID_DEVICES:
        assert report is None, opts
    elif opts["dtype"] in VALID_DTYPES and opts["device"] in VALID_DEVICES:
        assert report is not None, opts

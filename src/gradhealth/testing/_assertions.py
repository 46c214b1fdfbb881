"""Assertion helpers: audit a model (or take a Report) and fail with an explanation.

Each helper returns the Report when it passes, so a test can go on inspecting it. Settings not given as keyword
arguments come from the running test (``@pytest.mark.gradhealth`` > ``--gradhealth-*`` > ``GRADHEALTH_*`` >
``gradhealth_*`` ini keys) or the defaults; thresholds come from the helper's own arguments.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from gradhealth import settings as table
from gradhealth.formatting import model_label
from gradhealth.testing._auditor import (
    ambient_settings,
    audit_with_settings,
    call_layer,
    gates_from,
    skip_if_switched_off,
    verify,
)

if TYPE_CHECKING:
    from gradhealth.adapters import Layout
    from gradhealth.gates import HorizonDrop
    from gradhealth.report import Report

__all__ = [
    "assert_finite_gradients",
    "assert_healthy",
    "assert_memory_horizon",
    "assert_no_exploding",
    "assert_no_vanishing",
    "assert_report",
]


def _audit(
    model: Any, helper: str, settings: dict[str, Any], name: str | None, layout: Layout | None, inputs: Any
) -> Any:
    __tracebackhide__ = True
    layer = call_layer(settings, lambda n: f"argument {n}= to {helper}()")
    resolved = table.resolve(table.PYTEST, [_inherited(), layer])
    return audit_with_settings(model, resolved, name=name, layout=layout, inputs=inputs)


def _inherited() -> table.Layer:
    # The running test's audit settings apply; its thresholds belong to check(), not to these helpers.
    return ambient_settings().explicit(table.AUDIT, table.PROBE)


def _over(over: int, helper: str) -> dict[str, Any]:
    return {"seq_len": table.SETTINGS["seq_len"].parse(over, source=f"argument over= to {helper}()")}


def assert_healthy(
    model: Any, *, name: str | None = None, layout: Layout | None = None, inputs: Any = None, **settings: Any
) -> Report:
    """Assert the verdict is ``healthy``: no vanishing within seq_len, no exploding, finite gradients.

    Args:
        model: anything :func:`gradhealth.audit` accepts.
        name: the model's label in messages and the session report.
        layout: how to call the model, where gradhealth cannot tell.
        inputs: probe with these sequences (see :func:`gradhealth.audit`; default: the marker's ``inputs=``).
        settings: audit settings (``seq_len``, ``batch_size``, ``seed``, ``dtype``, ``task``, ``probes``, ``eps``...).

    Returns:
        The report.

    Raises:
        AssertionError: the verdict is not healthy, with the explanation.
    """
    __tracebackhide__ = True
    report, label = _audit(model, "assert_healthy", settings, name, layout, inputs)
    verify(report, gates_from({}), check="assert_healthy()", label=label)
    return report


def assert_no_vanishing(
    model: Any,
    *,
    over: int,
    name: str | None = None,
    layout: Layout | None = None,
    inputs: Any = None,
    **settings: Any,
) -> Report:
    """Assert the gradient does not vanish over a dependency of ``over`` steps (the horizon exceeds it).

    Raises:
        AssertionError: the verdict at K = ``over`` is vanishing (or inconclusive, or non-finite).
    """
    __tracebackhide__ = True
    report, label = _audit(
        model, "assert_no_vanishing", {**settings, **_over(over, "assert_no_vanishing")}, name, layout, inputs
    )
    gates = gates_from({"fail_on": {"inconclusive", "finite_memory", "vanishing", "non_finite"}})
    verify(report, gates, check=f"assert_no_vanishing(over={over})", label=label)
    return report


def assert_no_exploding(
    model: Any,
    *,
    over: int,
    name: str | None = None,
    layout: Layout | None = None,
    inputs: Any = None,
    **settings: Any,
) -> Report:
    """Assert the gradient does not explode (g(k) stays below 100) within ``over`` steps.

    Raises:
        AssertionError: the verdict at K = ``over`` is exploding (or non-finite).
    """
    __tracebackhide__ = True
    report, label = _audit(
        model, "assert_no_exploding", {**settings, **_over(over, "assert_no_exploding")}, name, layout, inputs
    )
    gates = gates_from({"fail_on": {"exploding", "non_finite"}})
    verify(report, gates, check=f"assert_no_exploding(over={over})", label=label)
    return report


def assert_memory_horizon(
    model: Any,
    *,
    at_least: float | None = None,
    at_most: float | None = None,
    name: str | None = None,
    layout: Layout | None = None,
    inputs: Any = None,
    **settings: Any,
) -> Report:
    """Assert the memory horizon (steps until g(k) falls below ε) lies within bounds.

    ``at_least`` may not exceed ``seq_len``: the lower bound is decided by the measured profile, never by an
    extrapolation beyond K.

    Raises:
        AssertionError: the horizon is out of bounds, or a gradient is non-finite or explodes.
        ConfigError: ``at_least`` is beyond ``seq_len``, or another setting is invalid.
        ValueError: neither bound given.
    """
    __tracebackhide__ = True
    if at_least is None and at_most is None:
        raise ValueError("assert_memory_horizon needs at_least=, at_most= or both")
    bounds = {k: v for k, v in (("min_horizon", at_least), ("max_horizon", at_most)) if v is not None}
    layer = call_layer(bounds, lambda n: f"argument {'at_least' if n == 'min_horizon' else 'at_most'}=")
    values = {n: v for n, (v, _) in layer.items()}
    call = call_layer(settings, lambda n: f"argument {n}= to assert_memory_horizon()")
    resolved = table.resolve(table.PYTEST, [_inherited(), layer, call])
    report, label = audit_with_settings(model, resolved, name=name, layout=layout, gated=True, inputs=inputs)
    shown = ", ".join(f"{k}={v:g}" for k, v in (("at_least", at_least), ("at_most", at_most)) if v is not None)
    verify(report, gates_from(values), check=f"assert_memory_horizon({shown})", label=label)
    return report


def assert_finite_gradients(
    model: Any, *, name: str | None = None, layout: Layout | None = None, inputs: Any = None, **settings: Any
) -> Report:
    """Assert every probed gradient is finite (no NaN or Inf at any lag).

    Raises:
        AssertionError: the verdict is non_finite.
    """
    __tracebackhide__ = True
    report, label = _audit(model, "assert_finite_gradients", settings, name, layout, inputs)
    verify(report, gates_from({"fail_on": {"non_finite"}}), check="assert_finite_gradients()", label=label)
    return report


def assert_report(
    report: Report,
    *,
    fail_on: str | Iterable[str] | None = None,
    min_horizon: float | None = None,
    max_horizon: float | None = None,
    max_decay_rate: float | None = None,
    baseline: Report | None = None,
    max_horizon_drop: str | HorizonDrop | None = None,
    name: str | None = None,
) -> None:
    """Assert thresholds on an existing Report (e.g. one read back with ``Report.from_json``).

    With no threshold at all, asserts the verdict is healthy. ``fail_on`` defaults as in ``check()``.

    Args:
        report: the report to gate.
        fail_on: verdicts that fail (comma-separated or an iterable).
        min_horizon: fewest steps of memory allowed.
        max_horizon: most steps of memory allowed.
        max_decay_rate: fastest decay allowed, per step.
        baseline: a previous report; with ``max_horizon_drop`` the horizon may not fall further than that.
        max_horizon_drop: ``"20%"`` of the baseline horizon or a number of steps.
        name: the model's label in the message (default: the report's adapter).

    Raises:
        AssertionError: a gate failed, with the explanation.
        ConfigError: an invalid threshold.
    """
    __tracebackhide__ = True
    import dataclasses

    from gradhealth.gates import parse_drop

    skip_if_switched_off()
    given = {"fail_on": fail_on, "min_horizon": min_horizon, "max_horizon": max_horizon}
    given["max_decay_rate"] = max_decay_rate
    layer = call_layer({k: v for k, v in given.items() if v is not None}, lambda n: f"argument {n}= to assert_report()")
    gates = gates_from({n: v for n, (v, _) in layer.items()})
    if baseline is not None and max_horizon_drop is not None:
        drop = (
            parse_drop(max_horizon_drop, source="argument max_horizon_drop=")
            if isinstance(max_horizon_drop, str)
            else max_horizon_drop
        )
        gates = dataclasses.replace(gates, baseline=baseline, max_horizon_drop=drop)
    label = name or model_label(report.model)
    shown = ", ".join(f"{k}={v}" for k, v in given.items() if v is not None)
    verify(report, gates, check=f"assert_report({shown})", label=label)

"""The auditor behind the ``gradhealth`` fixture and the assertions: settings in, Report out, gates applied.

When the gradhealth pytest plugin is running a test, audits take that test's settings (marker > options >
environment > ini) as defaults and are recorded for the session report, and ``--gradhealth-skip`` skips them;
outside pytest, the defaults of the settings table (:mod:`gradhealth.settings`, pytest face) apply and nothing is
recorded.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gradhealth import settings as table

if TYPE_CHECKING:
    from gradhealth.adapters import Layout
    from gradhealth.gates import Thresholds
    from gradhealth.report import Report

__all__ = [
    "Auditor",
    "ambient_inputs",
    "ambient_settings",
    "audit_kwargs",
    "audit_with_settings",
    "call_layer",
    "gates_from",
    "skip_if_switched_off",
    "verify",
]

_UNHEALTHY = frozenset({"inconclusive", "finite_memory", "vanishing", "exploding", "non_finite"})
_UNBOUNDED = frozenset({"exploding", "non_finite"})


def _plugin() -> Any:
    # The plugin module is only looked up, never imported here: outside pytest it is simply absent.
    return sys.modules.get("gradhealth.pytest_plugin")


def ambient_settings() -> table.Resolved:
    """The running test's settings when the plugin is active, else the defaults."""
    plugin = _plugin()
    item = plugin.active_item() if plugin is not None else None
    return plugin.item_settings(item) if item is not None else table.resolve(table.PYTEST)


def ambient_inputs() -> Any:
    """The running test's probe inputs (its marker's ``inputs=``, or the ``gradhealth_inputs`` fixture it uses),
    else ``None``."""
    plugin = _plugin()
    item = plugin.active_item() if plugin is not None else None
    return plugin.item_inputs(item) if item is not None else None


def audit_kwargs(settings: table.Resolved, inputs: Any) -> dict[str, Any]:
    """Keyword arguments of :func:`gradhealth.audit`. With probe inputs, the lag window, the task and the
    batch size left at their defaults are left out, so they come from the data as in ``audit(model, inputs=...)``
    (the batch size default still caps the sequences used)."""
    kwargs = settings.audit_kwargs()
    limit = settings.values["memory_limit"]
    kwargs["memory_limit"] = "none" if limit is None else limit  # None is the API's "the default"
    if inputs is not None:
        for name in ("seq_len", "burn_in", "task"):
            if name not in settings.sources:
                kwargs.pop(name)
    return kwargs


def call_layer(values: Mapping[str, Any], source: Any) -> table.Layer:
    """Parse a call's keyword settings (the marker's names); ``source`` is a string or a function of the name.

    Raises:
        ConfigError: an unknown name or an invalid value, naming the argument.
    """
    return table.parse_layer(values, face=table.MARKER, source=source)


def skip_if_switched_off() -> None:
    """``pytest.skip`` the running test when ``--gradhealth-skip`` (or its variable or ini key) is on."""
    __tracebackhide__ = True
    plugin = _plugin()
    item = plugin.active_item() if plugin is not None else None
    if item is None:
        return
    settings = plugin.session_settings(item.config)
    if settings.values["skip"]:
        import pytest

        pytest.skip(f"gradient-health tests skipped ({settings.source('skip')})")


def _record(report: Report, label: str) -> None:
    plugin = _plugin()
    item = plugin.active_item() if plugin is not None else None
    if item is not None:
        plugin.record_audit(item, report, label)


def gates_from(values: Mapping[str, Any]) -> Thresholds:
    """Build :class:`~gradhealth.gates.Thresholds` from threshold settings, applying the ``fail_on`` default.

    ``fail_on`` unset means every unhealthy verdict, except when a horizon gate is set: then the horizon gate
    decides about memory and only ``exploding``/``non_finite`` fail on the verdict (a vanishing verdict depends on
    seq_len, the horizon gate does not).
    """
    from gradhealth.gates import Thresholds

    has_horizon_gate = values.get("min_horizon") is not None or values.get("max_horizon") is not None
    fail_on = values.get("fail_on")
    if fail_on is None:
        fail_on = _UNBOUNDED if has_horizon_gate else _UNHEALTHY
    return Thresholds(
        fail_on=frozenset(fail_on),
        min_horizon=values.get("min_horizon"),
        max_horizon=values.get("max_horizon"),
        max_decay_rate=values.get("max_decay_rate"),
        gate_decision=values.get("gate_decision") or "point",
    )


def audit_with_settings(
    model: Any,
    settings: table.Resolved,
    *,
    name: str | None = None,
    layout: Layout | None = None,
    gated: bool = False,
    inputs: Any = None,
) -> tuple[Report, str]:
    """Audit with resolved settings and record the result for the session report.

    Args:
        model: the model.
        settings: the resolved settings.
        name: the model's label.
        layout: how to call the model.
        gated: the settings' thresholds will be applied: a ``min_horizon`` beyond ``seq_len`` is refused.
        inputs: probe inputs (see :func:`gradhealth.audit`); ``None``: the running test's, if any.

    Returns:
        The report and the model's label.

    Raises:
        ConfigError: an invalid setting, or a ``min_horizon`` gate beyond the probed lags.
    """
    __tracebackhide__ = True
    skip_if_switched_off()
    inputs = ambient_inputs() if inputs is None else inputs
    if gated and inputs is None:
        table.check_horizon_within_reach(settings)
    from gradhealth.engine import audit

    report = audit(model, **audit_kwargs(settings, inputs), layout=layout, inputs=inputs)
    if gated and inputs is not None:  # K came from the data's length
        seq_len = report.config["seq_len"]
        table.check_horizon_within_reach(settings.with_layers({"seq_len": (seq_len, "the inputs' length")}))
    label = name or type(model).__name__
    _record(report, label)
    return report, label


def verify(report: Report, gates: Thresholds, *, check: str, label: str) -> None:
    """Evaluate the gates on the report and raise the explained AssertionError when any fails.

    Raises:
        AssertionError: a gate failed; the message is :func:`gradhealth.testing._message.failure_message`.
    """
    __tracebackhide__ = True
    from gradhealth.gates import evaluate_gates, failed

    failures = failed(evaluate_gates(report, gates))
    if failures:
        from gradhealth.testing._message import failure_message

        raise AssertionError(failure_message(report, failures, check=check, label=label))


class Auditor:
    """Audits models with one test's settings; what the ``gradhealth`` fixture gives.

    Args:
        settings: the resolved settings (default: the running test's, or the defaults outside pytest).
        test: the test's name, used in error sources.
        inputs: probe inputs for every audit (see :func:`gradhealth.audit`; default: the running test's marker
            ``inputs=``, if any).

    Example:
        >>> import torch
        >>> from gradhealth.testing import Auditor
        >>> auditor = Auditor().with_settings(seq_len=16, batch_size=4)
        >>> auditor.audit(torch.nn.GRU(2, 4, batch_first=True)).verdict
        'vanishing'
    """

    def __init__(self, settings: table.Resolved | None = None, *, test: str | None = None, inputs: Any = None) -> None:
        self._settings = settings if settings is not None else ambient_settings()
        self._test = test
        self._inputs = inputs

    @property
    def inputs(self) -> Any:
        """The probe inputs of every audit (``None``: the synthetic task)."""
        return self._inputs

    def with_inputs(self, inputs: Any) -> Auditor:
        """A new auditor that probes with ``inputs``."""
        return Auditor(self._settings, test=self._test, inputs=inputs)

    @property
    def settings(self) -> table.Resolved:
        """The resolved settings and their sources."""
        return self._settings

    def with_settings(self, **overrides: Any) -> Auditor:
        """A new auditor with some settings overridden (highest precedence).

        Raises:
            ConfigError: an unknown setting or an invalid value.
        """
        return Auditor(self._merged(overrides, "with_settings"), test=self._test, inputs=self._inputs)

    def _merged(self, overrides: Mapping[str, Any], verb: str) -> table.Resolved:
        if not overrides:
            return self._settings
        where = f" in {self._test}" if self._test else ""
        return self._settings.with_layers(call_layer(overrides, f"argument to {verb}(){where}"))

    def audit(
        self,
        model: Any,
        *,
        name: str | None = None,
        layout: Layout | None = None,
        inputs: Any = None,
        **overrides: Any,
    ) -> Report:
        """Audit the model and record the report for the session report.

        Args:
            model: anything :func:`gradhealth.audit` accepts.
            name: the model's label in messages and the session report (default: its class name).
            layout: how to call the model, where gradhealth cannot tell.
            inputs: probe inputs for this call (default: the auditor's).
            overrides: settings for this call only (``seq_len=...``, ``seed=...``...).

        Returns:
            The :class:`~gradhealth.report.Report`.

        Raises:
            ConfigError: an invalid setting, naming where it came from.
        """
        __tracebackhide__ = True
        settings = self._merged(overrides, "audit")
        return audit_with_settings(model, settings, name=name, layout=layout, inputs=self._inputs_for(inputs))[0]

    def _inputs_for(self, inputs: Any) -> Any:
        return self._inputs if inputs is None else inputs

    def check(
        self,
        model: Any,
        *,
        name: str | None = None,
        layout: Layout | None = None,
        inputs: Any = None,
        **overrides: Any,
    ) -> Report:
        """Audit the model and assert the thresholds of the settings (fail_on, min/max_horizon, max_decay_rate).

        Returns:
            The report, when every gate passed.

        Raises:
            AssertionError: a gate failed, with the explanation.
            ConfigError: an invalid setting, naming where it came from.
        """
        __tracebackhide__ = True
        settings = self._merged(overrides, "check")
        report, label = audit_with_settings(
            model, settings, name=name, layout=layout, gated=True, inputs=self._inputs_for(inputs)
        )
        gates = gates_from(settings.gate_values())
        verify(report, gates, check=f"check({_describe_gates(gates)})", label=label)
        return report


def _describe_gates(gates: Thresholds) -> str:
    parts = [f"fail_on={','.join(sorted(gates.fail_on))}"] if gates.fail_on else []
    for name in ("min_horizon", "max_horizon", "max_decay_rate"):
        value = getattr(gates, name)
        if value is not None:
            parts.append(f"{name}={value:g}")
    return ", ".join(parts)

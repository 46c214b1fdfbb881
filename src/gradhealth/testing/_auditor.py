"""The auditor behind the ``gradhealth`` fixture and the assertions: settings in, Report out, gates applied.

When the gradhealth pytest plugin is running a test, audits take that test's settings (marker > options >
environment > ini) as defaults and are recorded for the session report; outside pytest, the defaults of
:data:`gradhealth.testing._settings.DEFAULTS` apply and nothing is recorded.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gradhealth.testing._settings import Settings, merge, parse_layer

if TYPE_CHECKING:
    from gradhealth.adapters import Layout
    from gradhealth.gates import Gates
    from gradhealth.report import Report

__all__ = ["Auditor", "ambient_settings", "gates_from", "run_audit", "verify"]

_UNHEALTHY = frozenset({"vanishing", "exploding", "non_finite"})
_UNBOUNDED = frozenset({"exploding", "non_finite"})


def _plugin() -> Any:
    # The plugin module is only looked up, never imported here: outside pytest it is simply absent.
    return sys.modules.get("gradhealth.pytest_plugin")


def ambient_settings() -> Settings:
    """The running test's settings when the plugin is active, else the defaults."""
    plugin = _plugin()
    item = plugin.active_item() if plugin is not None else None
    return plugin.item_settings(item) if item is not None else Settings()


def _record(report: Report, label: str) -> None:
    plugin = _plugin()
    item = plugin.active_item() if plugin is not None else None
    if item is not None:
        plugin.record_audit(item, report, label)


def gates_from(values: Mapping[str, Any]) -> Gates:
    """Build :class:`~gradhealth.gates.Gates` from threshold settings, applying the ``fail_on`` default.

    ``fail_on`` unset means every unhealthy verdict, except when a horizon gate is set: then the horizon gate
    decides about memory and only ``exploding``/``non_finite`` fail on the verdict (a vanishing verdict depends on
    seq_len, the horizon gate does not).
    """
    from gradhealth.gates import Gates

    has_horizon_gate = values.get("min_horizon") is not None or values.get("max_horizon") is not None
    fail_on = values.get("fail_on")
    if fail_on is None:
        fail_on = _UNBOUNDED if has_horizon_gate else _UNHEALTHY
    return Gates(
        fail_on=frozenset(fail_on),
        min_horizon=values.get("min_horizon"),
        max_horizon=values.get("max_horizon"),
        max_decay_rate=values.get("max_decay_rate"),
    )


def _seq_len_for(settings: Settings) -> int:
    # A horizon gate longer than the default K would otherwise be judged on an extrapolation.
    seq_len: int = settings.values["seq_len"]
    if settings.source("seq_len") != "default":
        return seq_len
    wanted = settings.values.get("min_horizon")
    return max(seq_len, math.ceil(wanted)) if wanted is not None and math.isfinite(wanted) else seq_len


def run_audit(
    model: Any, settings: Settings, *, name: str | None = None, layout: Layout | None = None
) -> tuple[Report, str]:
    """Audit with resolved settings and record the result for the session report.

    Returns:
        The report and the model's label.
    """
    __tracebackhide__ = True
    from gradhealth.engine import audit

    kwargs = settings.audit_kwargs()
    kwargs["seq_len"] = _seq_len_for(settings)
    report = audit(model, **kwargs, layout=layout)
    label = name or type(model).__name__
    _record(report, label)
    return report, label


def verify(report: Report, gates: Gates, *, check: str, label: str) -> None:
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

    Example:
        >>> import torch
        >>> from gradhealth.testing import Auditor
        >>> auditor = Auditor().with_settings(seq_len=16, batch_size=4)
        >>> auditor.audit(torch.nn.GRU(2, 4, batch_first=True)).verdict
        'vanishing'
    """

    def __init__(self, settings: Settings | None = None, *, test: str | None = None) -> None:
        self._settings = settings if settings is not None else ambient_settings()
        self._test = test

    @property
    def settings(self) -> Settings:
        """The resolved settings and their sources."""
        return self._settings

    def with_settings(self, **overrides: Any) -> Auditor:
        """A new auditor with some settings overridden (highest precedence).

        Raises:
            ConfigError: an unknown setting or an invalid value.
        """
        return Auditor(self._merged(overrides, "with_settings"), test=self._test)

    def _merged(self, overrides: Mapping[str, Any], verb: str) -> Settings:
        if not overrides:
            return self._settings
        where = f" in {self._test}" if self._test else ""
        layer = parse_layer(overrides, lambda name: f"argument to {verb}(){where}")
        base = {n: (self._settings.values[n], self._settings.source(n)) for n in self._settings.sources}
        return merge([base, layer])

    def audit(self, model: Any, *, name: str | None = None, layout: Layout | None = None, **overrides: Any) -> Report:
        """Audit the model and record the report for the session report.

        Args:
            model: anything :func:`gradhealth.audit` accepts.
            name: the model's label in messages and the session report (default: its class name).
            layout: how to call the model, where gradhealth cannot tell.
            overrides: settings for this call only (``seq_len=...``, ``seed=...``...).

        Returns:
            The :class:`~gradhealth.report.Report`.

        Raises:
            ConfigError: an invalid setting, naming where it came from.
        """
        __tracebackhide__ = True
        return run_audit(model, self._merged(overrides, "audit"), name=name, layout=layout)[0]

    def check(self, model: Any, *, name: str | None = None, layout: Layout | None = None, **overrides: Any) -> Report:
        """Audit the model and assert the thresholds of the settings (fail_on, min/max_horizon, max_decay_rate).

        Returns:
            The report, when every gate passed.

        Raises:
            AssertionError: a gate failed, with the explanation.
            ConfigError: an invalid setting, naming where it came from.
        """
        __tracebackhide__ = True
        settings = self._merged(overrides, "check")
        report, label = run_audit(model, settings, name=name, layout=layout)
        gates = gates_from(settings.gate_values())
        verify(report, gates, check=f"check({_describe_gates(gates)})", label=label)
        return report


def _describe_gates(gates: Gates) -> str:
    parts = [f"fail_on={','.join(sorted(gates.fail_on))}"] if gates.fail_on else []
    for name in ("min_horizon", "max_horizon", "max_decay_rate"):
        value = getattr(gates, name)
        if value is not None:
            parts.append(f"{name}={value:g}")
    return ", ".join(parts)

"""The settings of the pytest face: one table of names, help texts and parsers, and their precedence.

Standard library only (the pytest plugin reads the help texts at start-up). Each setting has one name, used as
``@pytest.mark.gradhealth(name=...)``, ``--gradhealth-name``, ``GRADHEALTH_NAME`` and the ini key ``gradhealth_name``.
Layers are merged with the highest first: call arguments > marker > command-line options > environment variables >
ini keys > defaults. Every parsed value remembers where it came from, so an error can say so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AUDIT_SETTINGS",
    "DEFAULTS",
    "GATE_SETTINGS",
    "HELP",
    "MARKER_HELP",
    "REPORT_HELP",
    "SETTINGS",
    "Settings",
    "env_name",
    "ini_name",
    "merge",
    "option_name",
    "parse_layer",
    "parse_value",
]

#: Settings passed to the engine (the keyword arguments of ``gradhealth.audit`` the plugin can set).
AUDIT_SETTINGS = (
    "seq_len",
    "batch_size",
    "seed",
    "dtype",
    "task",
    "probes",
    "eps",
    "input_scale",
    "burn_in",
    "input_size",
    "device",
)
#: Thresholds applied by ``auditor.check`` (see :class:`gradhealth.gates.Gates`).
GATE_SETTINGS = ("fail_on", "min_horizon", "max_horizon", "max_decay_rate")
SETTINGS = AUDIT_SETTINGS + GATE_SETTINGS

#: Defaults of the pytest face. ``probes`` is ``quick`` because gates read the lag profile only; ``fail_on`` of
#: ``None`` means every unhealthy verdict, or only ``exploding,non_finite`` when a horizon gate is set.
DEFAULTS: dict[str, Any] = {
    "seq_len": 64,
    "batch_size": 32,
    "seed": 0,
    "dtype": None,
    "task": "noise",
    "probes": "quick",
    "eps": 1e-2,
    "input_scale": 1.0,
    "burn_in": None,
    "input_size": None,
    "device": None,
    "fail_on": None,
    "min_horizon": None,
    "max_horizon": None,
    "max_decay_rate": None,
}

#: Help texts, shared by the command-line option and the ini key of each setting.
HELP: dict[str, str] = {
    "seq_len": "dependency length K: lags 0..K are probed (default 64).",
    "batch_size": "number of probe sequences; the spread of the horizon shrinks as 1/sqrt(batch_size) (default 32).",
    "seed": "seed of every random draw of the probes: same seed, same numbers (default 0).",
    "dtype": "probe dtype: float64, float32, bfloat16, float16 or auto (default auto: float64 on CPU).",
    "task": "synthetic input task: noise, impulse, copy, adding, delayed_recall (default noise).",
    "probes": "probe preset (quick, standard, thorough) or comma-separated probe names (default quick).",
    "eps": "horizon threshold on the normalised profile g(k) (default 0.01).",
    "input_scale": "standard deviation of the probe inputs (default 1.0).",
    "burn_in": "steps run before the probed window (default: seq_len, so lags are measured in steady state).",
    "input_size": "features per step, where the model does not tell (default: inferred).",
    "device": "probe device, e.g. cpu or cuda (default: the model's own).",
    "fail_on": "comma-separated verdicts that fail check() (default: vanishing,exploding,non_finite; "
    "exploding,non_finite when a horizon gate is set).",
    "min_horizon": "check() fails when the memory horizon is shorter than this many steps.",
    "max_horizon": "check() fails when the memory horizon is longer than this many steps.",
    "max_decay_rate": "check() fails when the gradient decays faster than this rate per step (natural log).",
}
REPORT_HELP = "write every gradhealth audit of the session to this JSON file (with the test node ids)."
MARKER_HELP = (
    "gradhealth(**settings): gradient-health audit settings for this test, e.g. seq_len=512, min_horizon=256, "
    f"fail_on='exploding'. Settings: {', '.join(SETTINGS)}. They override --gradhealth-* options, GRADHEALTH_* "
    "environment variables and gradhealth_* ini keys; the `gradhealth` fixture and gradhealth.testing use them."
)

_INTS = {"seq_len": 1, "batch_size": 1, "seed": 0, "burn_in": 0, "input_size": 1}
_FLOATS = ("eps", "input_scale")
_OPTIONAL = ("dtype", "burn_in", "input_size", "device", "fail_on", "min_horizon", "max_horizon", "max_decay_rate")


def option_name(name: str) -> str:
    """``seq_len`` -> ``--gradhealth-seq-len``."""
    return "--gradhealth-" + name.replace("_", "-")


def env_name(name: str) -> str:
    """``seq_len`` -> ``GRADHEALTH_SEQ_LEN``."""
    return "GRADHEALTH_" + name.upper()


def ini_name(name: str) -> str:
    """``seq_len`` -> ``gradhealth_seq_len``."""
    return "gradhealth_" + name


def _error(name: str, value: object, problem: str, source: str) -> Exception:
    from gradhealth.errors import ConfigError

    return ConfigError(name, value, problem, source=source)


def _is_none(value: object) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in {"", "none", "auto"})


def _to_int(name: str, value: object, source: str) -> int:
    minimum = _INTS[name]
    number: object = value
    if isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, int) or number < minimum:
        raise _error(name, value, f"must be an integer >= {minimum}", source)
    return number


def _to_float(name: str, value: object, source: str, *, problem: str) -> float:
    try:
        number = float(value.strip() if isinstance(value, str) else value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or math.isnan(number):
        raise _error(name, value, problem, source)
    return number


def _to_probes(value: object, source: str) -> str | tuple[str, ...]:
    from gradhealth.config import PRESETS

    if isinstance(value, str):
        items = tuple(p.strip() for p in value.split(",") if p.strip())
        if len(items) == 1 and items[0] in PRESETS:
            return items[0]
    elif isinstance(value, (list, tuple)) and all(isinstance(p, str) for p in value):
        items = tuple(value)
    else:
        items = ()
    if not items:
        raise _error("probes", value, f"use a preset ({', '.join(PRESETS)}) or comma-separated probe names", source)
    return items


def _check_with_audit_config(name: str, value: object, source: str) -> None:
    # AuditConfig owns the range rules of the engine's settings; validate one field against it.
    from gradhealth.config import AuditConfig

    kwargs: dict[str, Any] = {"seq_len": 1, name: value}
    AuditConfig(**kwargs, source=source)


def parse_value(name: str, value: object, source: str) -> Any:
    """Convert a raw value (a string from an option, env var or ini key, or a Python value from a marker).

    Args:
        name: the setting name (one of :data:`SETTINGS`).
        value: the raw value.
        source: where it came from, e.g. ``"marker on test_lstm"``.

    Returns:
        The typed value (``None`` for "auto" where the setting allows it).

    Raises:
        ConfigError: unknown setting or invalid value; the message names the setting, the value and the source.
    """
    if name not in SETTINGS:
        raise _error("setting", name, f"unknown gradhealth setting; known settings: {', '.join(SETTINGS)}", source)
    if name in _OPTIONAL and _is_none(value):
        return None
    if name in _INTS:
        typed: Any = _to_int(name, value, source)
    elif name in _FLOATS:
        typed = _to_float(name, value, source, problem="must be a number")
    elif name in ("min_horizon", "max_horizon"):
        typed = _to_float(name, value, source, problem="must be a number of steps >= 0")
        if typed < 0:
            raise _error(name, value, "must be a number of steps >= 0", source)
        return typed
    elif name == "max_decay_rate":
        return _to_float(name, value, source, problem="must be a rate per step, e.g. 0.05")
    elif name == "fail_on":
        from gradhealth.gates import parse_verdicts

        return parse_verdicts(value if isinstance(value, str) else list(value), source=source)  # type: ignore[call-overload]
    elif name == "probes":
        return _to_probes(value, source)
    else:
        if not isinstance(value, str):
            raise _error(name, value, "must be a string", source)
        typed = value.strip()
    if name != "device":
        _check_with_audit_config(name, typed, source)
    return typed


def parse_layer(raw: Mapping[str, object], source_of: Any) -> dict[str, tuple[Any, str]]:
    """Parse one layer of raw values; ``source_of(name)`` says where each came from.

    Returns:
        ``{name: (typed value, source)}``.

    Raises:
        ConfigError: a name or value is invalid.
    """
    return {name: (parse_value(name, value, source_of(name)), source_of(name)) for name, value in raw.items()}


@dataclass(frozen=True)
class Settings:
    """Resolved settings of one test: typed values and where each came from."""

    values: dict[str, Any] = field(default_factory=lambda: dict(DEFAULTS))
    sources: dict[str, str] = field(default_factory=dict)

    def audit_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`gradhealth.audit`."""
        return {name: self.values[name] for name in AUDIT_SETTINGS}

    def gate_values(self) -> dict[str, Any]:
        """The threshold settings (see :data:`GATE_SETTINGS`)."""
        return {name: self.values[name] for name in GATE_SETTINGS}

    def source(self, name: str) -> str:
        """Where a setting's value came from (``"default"`` when nobody set it)."""
        return self.sources.get(name, "default")

    def describe(self) -> str:
        """A one-line account of the non-default settings and their sources."""
        return ", ".join(f"{n}={self.values[n]!r} ({s})" for n, s in self.sources.items()) or "all defaults"


def merge(layers: Iterable[Mapping[str, tuple[Any, str]]]) -> Settings:
    """Merge parsed layers given lowest first (ini, env, options, marker, arguments)."""
    values = dict(DEFAULTS)
    sources: dict[str, str] = {}
    for layer in layers:
        for name, (value, source) in layer.items():
            values[name] = value
            sources[name] = source
    return Settings(values, sources)

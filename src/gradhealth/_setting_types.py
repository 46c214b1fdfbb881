"""Value types of the settings table: each turns a raw value into a typed one, strictly, or says what is wrong.

A raw value is text (a command-line flag, an environment variable, an ini key) or a typed value (a TOML value, a
marker argument, a Python argument). :meth:`ValueType.parse` accepts both; :meth:`ValueType.check` accepts typed
values only, which is what the Python API gets. Problems are raised as :class:`InvalidValueError` with the rule that was
broken ("must be an integer >= 1"); :class:`gradhealth.settings.Setting` adds the name, the value and the source.

Standard library only, and plain classes rather than dataclasses: the pytest plugin reads the settings table at
start-up, where every millisecond counts (a frozen dataclass costs about 2 ms to define).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

__all__ = [
    "Boolean",
    "ByteSize",
    "Choice",
    "DataFileSpec",
    "FactorySpec",
    "FilePath",
    "HorizonDropText",
    "IntList",
    "Integer",
    "InvalidValueError",
    "JsonObject",
    "NameList",
    "Number",
    "ProbeSet",
    "Text",
    "ValueType",
    "Verdicts",
    "did_you_mean",
]

#: Text that means "not set" for an optional setting (``auto`` reads naturally for dtype and device).
NONE_WORDS = frozenset({"", "none", "auto"})
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})


class InvalidValueError(Exception):
    """A raw value does not fit its type; the message is the broken rule."""


def did_you_mean(word: str, candidates: Sequence[str]) -> str:
    """``"; did you mean seq_len?"`` when a candidate is close to ``word``, else ``""``."""
    import difflib

    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


class ValueType:
    """The base of every value type: text is converted by :meth:`from_text`, then every value is validated.

    Value types are immutable by convention; two compare equal when their class and parameters are equal.

    Attributes:
        optional: ``None`` (or the text ``none``/``auto``/empty) means "not set".
    """

    __slots__ = ("optional",)
    metavar: ClassVar[str] = "TEXT"

    def __init__(self, *, optional: bool = False) -> None:
        self.optional = optional

    def _parameters(self) -> tuple[tuple[str, Any], ...]:
        names = [n for cls in reversed(type(self).__mro__) for n in getattr(cls, "__slots__", ())]
        return tuple((n, getattr(self, n)) for n in names)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{n}={v!r}' for n, v in self._parameters())})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._parameters() == other._parameters()

    def __hash__(self) -> int:
        return hash((type(self), self._parameters()))

    @property
    def choices(self) -> tuple[str, ...] | None:
        """The allowed values, where they are a fixed list."""
        return None

    def parse(self, raw: object) -> Any:
        """Convert text or a typed value.

        Raises:
            InvalidValueError: the value does not fit.
        """
        if isinstance(raw, str):
            text = raw.strip()
            if self.optional and text.lower() in NONE_WORDS:
                return None
            return self.check(self.from_text(text))
        return self.check(raw)

    def check(self, value: object) -> Any:
        """Validate a typed value (no text conversion), returning it in its canonical form.

        Raises:
            InvalidValueError: the value does not fit.
        """
        if value is None and self.optional:
            return None
        return self.validate(value)

    def from_text(self, text: str) -> object:
        return text

    def validate(self, value: object) -> Any:
        raise NotImplementedError


class Integer(ValueType):
    """A whole number ``>= minimum`` (any whole number when ``minimum`` is ``None``); floats and booleans are
    refused, also ``2.0``."""

    __slots__ = ("minimum",)
    metavar: ClassVar[str] = "N"

    def __init__(self, *, minimum: int | None = 0, optional: bool = False) -> None:
        super().__init__(optional=optional)
        self.minimum = minimum

    @property
    def problem(self) -> str:
        return "must be an integer" if self.minimum is None else f"must be an integer >= {self.minimum}"

    def from_text(self, text: str) -> object:
        try:
            return int(text)
        except ValueError:
            raise InvalidValueError(self.problem) from None

    def validate(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidValueError(self.problem)
        if self.minimum is not None and value < self.minimum:
            raise InvalidValueError(self.problem)
        return value


class Number(ValueType):
    """A real number within bounds (open or closed); NaN is always refused, infinity unless ``allow_infinite``.

    ``rule`` replaces the generated problem text ("must be a number of steps >= 0").
    """

    __slots__ = ("allow_infinite", "high", "high_open", "low", "low_open", "rule")
    metavar: ClassVar[str] = "X"

    def __init__(
        self,
        *,
        low: float = -math.inf,
        high: float = math.inf,
        low_open: bool = False,
        high_open: bool = False,
        allow_infinite: bool = False,
        rule: str | None = None,
        optional: bool = False,
    ) -> None:
        super().__init__(optional=optional)
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open
        self.allow_infinite, self.rule = allow_infinite, rule

    @property
    def problem(self) -> str:
        if self.rule is not None:
            return self.rule
        if math.isfinite(self.low) and math.isfinite(self.high):
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"must be a finite number in {left}{self.low:g}, {self.high:g}{right}"
        if math.isfinite(self.low):
            return f"must be a finite number {'>' if self.low_open else '>='} {self.low:g}"
        return "must be a finite number"

    def from_text(self, text: str) -> object:
        try:
            return float(text)
        except ValueError:
            raise InvalidValueError(self.problem) from None

    def validate(self, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidValueError(self.problem)
        number = float(value)
        if math.isnan(number) or (math.isinf(number) and not self.allow_infinite):
            raise InvalidValueError(self.problem)
        too_low = number <= self.low if self.low_open else number < self.low
        too_high = number >= self.high if self.high_open else number > self.high
        if too_low or too_high:
            raise InvalidValueError(self.problem)
        return number


_BYTE_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "kib": 2**10,
    "m": 10**6,
    "mb": 10**6,
    "mib": 2**20,
    "g": 10**9,
    "gb": 10**9,
    "gib": 2**30,
    "t": 10**12,
    "tb": 10**12,
    "tib": 2**40,
}


class ByteSize(ValueType):
    """A memory size in bytes: an integer, or text such as ``4GiB``, ``512MB``, ``1.5GiB`` (``none``: no limit)."""

    __slots__ = ()
    metavar: ClassVar[str] = "SIZE"
    problem = "must be a size such as 4GiB, 512MB or a number of bytes >= 1 (or none)"

    def from_text(self, text: str) -> object:
        number = text.rstrip("BbIiKkMmGgTt ")
        unit = text[len(number) :].strip().lower()
        if unit not in _BYTE_UNITS:
            raise InvalidValueError(self.problem)
        try:
            value = float(number) * _BYTE_UNITS[unit]
        except ValueError:
            raise InvalidValueError(self.problem) from None
        if not math.isfinite(value):
            raise InvalidValueError(self.problem)
        return int(value)

    def validate(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidValueError(self.problem)
        return value


class Boolean(ValueType):
    """``true``/``false`` (also ``1/0``, ``yes/no``, ``on/off``, any case) or a real bool; nothing else."""

    __slots__ = ()
    metavar: ClassVar[str] = "BOOL"

    @property
    def choices(self) -> tuple[str, ...]:
        return ("true", "false")

    def from_text(self, text: str) -> object:
        word = text.lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise InvalidValueError("must be true or false (or 1/0, yes/no, on/off)")

    def validate(self, value: object) -> bool:
        if not isinstance(value, bool):
            raise InvalidValueError("must be true or false (or 1/0, yes/no, on/off)")
        return value


class Choice(ValueType):
    """One of a fixed list of names (``auto`` stands for "not set" when optional)."""

    __slots__ = ("names",)
    metavar: ClassVar[str] = "NAME"

    def __init__(self, *, names: tuple[str, ...], optional: bool = False) -> None:
        super().__init__(optional=optional)
        self.names = names

    @property
    def choices(self) -> tuple[str, ...]:
        return self.names

    def validate(self, value: object) -> str:
        if not isinstance(value, str) or value not in self.names:
            allowed = ", ".join(self.names) + (" or auto" if self.optional else "")
            hint = did_you_mean(value, self.names) if isinstance(value, str) else ""
            raise InvalidValueError(f"use one of {allowed}{hint}")
        return value


class Text(ValueType):
    """A non-empty string (a name checked later against a registry: a task, a device, a format)."""

    __slots__ = ()

    def validate(self, value: object) -> str:
        if not isinstance(value, str) or not value.strip():
            raise InvalidValueError("must be a non-empty string")
        return value.strip()


class DataFileSpec(Text):
    """A data file, optionally with the name of one array in it: ``FILE[:KEY]`` (not opened here)."""

    __slots__ = ()
    metavar: ClassVar[str] = "FILE[:KEY]"


class FilePath(ValueType):
    """A file or folder path (not opened here)."""

    __slots__ = ()
    metavar: ClassVar[str] = "PATH"

    def from_text(self, text: str) -> object:
        return Path(text) if text else text

    def validate(self, value: object) -> Path:
        if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
            raise InvalidValueError("must be a path")
        return Path(value)


def _items(value: object) -> list[Any] | None:
    """Comma-separated text, or a list/tuple as is; None for anything else."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    return None


class NameList(ValueType):
    """Names, comma-separated or a list (for a repeatable flag)."""

    __slots__ = ()
    metavar: ClassVar[str] = "NAME"

    def parse(self, raw: object) -> Any:
        return self.check(raw)

    def validate(self, value: object) -> tuple[str, ...]:
        items = _items(value)
        if items is None or not all(isinstance(item, str) and item.strip() for item in items):
            raise InvalidValueError("must be names, comma-separated or a list")
        return tuple(item.strip() for item in items)


class IntList(ValueType):
    """Integers ``>= minimum``, comma-separated or a list; at least one."""

    __slots__ = ("minimum",)
    metavar: ClassVar[str] = "N,N,..."

    def __init__(self, *, minimum: int = 1, optional: bool = False) -> None:
        super().__init__(optional=optional)
        self.minimum = minimum

    @property
    def problem(self) -> str:
        return f"must be comma-separated integers >= {self.minimum}, e.g. 16,64,256"

    def from_text(self, text: str) -> object:
        try:
            return [int(part) for part in _items(text) or []]
        except ValueError:
            raise InvalidValueError(self.problem) from None

    def validate(self, value: object) -> tuple[int, ...]:
        items = _items(value) if not isinstance(value, str) else None
        ok = items is not None and len(items) > 0
        ok = ok and all(not isinstance(i, bool) and isinstance(i, int) and i >= self.minimum for i in items or [])
        if not ok:
            raise InvalidValueError(self.problem)
        return tuple(items or ())


class ProbeSet(ValueType):
    """A preset name, or probe names (comma-separated or a list; checked against the registry when run)."""

    __slots__ = ("presets",)
    metavar: ClassVar[str] = "PRESET|NAMES"

    def __init__(self, *, presets: tuple[str, ...], optional: bool = False) -> None:
        super().__init__(optional=optional)
        self.presets = presets

    @property
    def problem(self) -> str:
        return f"use a preset ({', '.join(self.presets)}) or comma-separated probe names"

    def from_text(self, text: str) -> object:
        items = _items(text) or []
        if len(items) == 1 and items[0] in self.presets:
            return items[0]
        return tuple(items)

    def validate(self, value: object) -> str | tuple[str, ...]:
        if isinstance(value, str):
            if value not in self.presets:
                raise InvalidValueError(f"{self.problem}{did_you_mean(value, self.presets)}")
            return value
        items = _items(value)
        if not items or not all(isinstance(item, str) and item for item in items):
            raise InvalidValueError(self.problem)
        return tuple(items)


class Verdicts(ValueType):
    """Verdict names, comma-separated or a list (``fail_on``)."""

    __slots__ = ()
    metavar: ClassVar[str] = "VERDICTS"

    @property
    def choices(self) -> tuple[str, ...]:
        from gradhealth.report import VERDICTS

        return tuple(VERDICTS)

    def validate(self, value: object) -> frozenset[str]:
        items = _items(value) if not isinstance(value, (set, frozenset)) else list(value)
        known = self.choices
        if items is None or not all(isinstance(item, str) for item in items):
            raise InvalidValueError(f"verdicts are {', '.join(known)}")
        names = [item.strip() for item in items if item.strip()]
        if any(name not in known for name in names):
            raise InvalidValueError(f"verdicts are {', '.join(known)}")
        return frozenset(names)


@dataclass(frozen=True)
class HorizonDrop:
    """An allowed drop of the horizon against a baseline: ``amount`` percent or steps."""

    amount: float
    is_percent: bool

    def __str__(self) -> str:
        return f"{self.amount:g}%" if self.is_percent else f"{self.amount:g} steps"


def parse_drop(text: str, *, source: str = "argument") -> HorizonDrop:
    """Parse ``"20%"`` (percent of the baseline horizon) or ``"15"`` (steps).

    Raises:
        ConfigError: not a non-negative number with an optional ``%``.
    """
    from gradhealth.errors import ConfigError

    raw = str(text).strip()
    is_percent = raw.endswith("%")
    try:
        amount = float(raw.rstrip("%").strip())
    except ValueError:
        amount = math.nan
    if not math.isfinite(amount) or amount < 0:
        raise ConfigError("max_horizon_drop", text, "use a percentage like '20%' or a number of steps", source=source)
    return HorizonDrop(amount, is_percent)


class HorizonDropText(ValueType):
    """``"20%"`` of the baseline horizon or a number of steps; parsed to a :class:`HorizonDrop`."""

    __slots__ = ()
    metavar: ClassVar[str] = "PCT|STEPS"

    def validate(self, value: object) -> Any:
        from gradhealth.errors import ConfigError

        if isinstance(value, HorizonDrop):
            return value
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise InvalidValueError("use a percentage like '20%' or a number of steps")
        try:
            return parse_drop(str(value))
        except ConfigError as exc:
            raise InvalidValueError(exc.problem) from None


class JsonObject(ValueType):
    """A JSON object (text) or a dict."""

    __slots__ = ()
    metavar: ClassVar[str] = "JSON"

    def from_text(self, text: str) -> object:
        import json

        try:
            return json.loads(text)
        except ValueError as exc:
            raise InvalidValueError(f"not valid JSON ({exc})") from None

    def validate(self, value: object) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise InvalidValueError("must be a JSON object such as '{\"hidden\": 16}'")
        return value


class FactorySpec(ValueType):
    """``package.module:factory``: the shape only; importing it is the CLI's job, just before it is used."""

    __slots__ = ()
    metavar: ClassVar[str] = "MODULE:FACTORY"

    def validate(self, value: object) -> str:
        text = value.strip() if isinstance(value, str) else ""
        module, sep, attr = text.partition(":")
        if not sep or not module or not attr:
            raise InvalidValueError("use package.module:factory (a callable returning an nn.Module)")
        return text

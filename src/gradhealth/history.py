"""A training history: one JSON line per audit, written by :class:`gradhealth.monitor.Monitor` and read back by
``gradhealth history``.

Each line is a self-contained JSON object (the :class:`HistoryRecord` fields, non-finite floats written as
``"inf"``/``"-inf"``/``"nan"`` as in the report schema), so a run that is killed mid-write loses at most its last
line, and two runs can be compared with ordinary tools. The file is untrusted input when read back: it is parsed
as JSON only, every field is type-checked, and a bad line is reported by its number.

Standard library only.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "run.jsonl"
    >>> record = HistoryRecord(step=100, verdict="vanishing", horizon=9.0, horizon_reached=True,
    ...                        decay_rate=-0.52, seq_len=50, eps=0.01, lags=[0, 1], g=[1.0, 0.6])
    >>> append_record(path, record)
    >>> read_history(path) == [record]
    True
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradhealth.errors import GradhealthError
from gradhealth.report import VERDICTS, decode_floats, encode_floats

if TYPE_CHECKING:
    from gradhealth.report import Report

__all__ = ["HISTORY_FORMAT", "HistoryError", "HistoryRecord", "append_record", "read_history", "record_from_report"]

#: The value of every line's ``format`` key; a reader refuses lines of another format.
HISTORY_FORMAT = "gradhealth-history/1"


class HistoryError(GradhealthError, ValueError):
    """A history file cannot be read: the message names the file, the line and what is wrong."""

    def __init__(self, message: str, *, path: object = None) -> None:
        self.path = path
        super().__init__(message)


@dataclass
class HistoryRecord:
    """One audit of a training run.

    Attributes:
        step: the training step the audit saw (after that many optimiser steps).
        verdict: ``healthy``, ``vanishing``, ``exploding`` or ``non_finite``.
        horizon: the gradient horizon at ε in steps (extrapolated or ``inf`` when not reached within K).
        horizon_reached: whether g fell below ε within K.
        decay_rate: least-squares slope of ln g(k) per step (``None``: too few resolved lags).
        seq_len: the dependency length K of the audit.
        eps: the horizon threshold ε.
        lags: the profile's lags 0..K.
        g: the normalised profile g(k).
        horizon_censored: the resolution floor hid the crossing (``horizon`` is a lower bound).
        horizon_interval: ``[low, high]`` of the horizon where the report has one.
        interval_level: the level of ``horizon_interval``.
        decay_rate_tail: the slope over the second half of the resolved lags.
    """

    step: int
    verdict: str
    horizon: float
    horizon_reached: bool
    decay_rate: float | None
    seq_len: int
    eps: float
    lags: list[int] = field(default_factory=list)
    g: list[float] = field(default_factory=list)
    horizon_censored: bool = False
    horizon_interval: list[float] | None = None
    interval_level: float | None = None
    decay_rate_tail: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as one JSON-ready object, with its ``format`` key first."""
        return {"format": HISTORY_FORMAT, **encode_floats(asdict(self))}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HistoryRecord:
        """Build a record from a parsed line, checking every field.

        Raises:
            ValueError: naming the field that is missing or of the wrong type.
        """
        if data.get("format") != HISTORY_FORMAT:
            raise ValueError(f"format is {data.get('format')!r}, expected {HISTORY_FORMAT!r}")
        values = decode_floats({f.name: data[f.name] for f in fields(cls) if f.name in data})
        for name in ("step", "verdict", "horizon", "horizon_reached", "decay_rate", "seq_len", "eps"):
            if name not in values:
                raise ValueError(f"missing field {name!r}")
        record = cls(**values)
        record._check()
        return record

    def _check(self) -> None:
        _expect(isinstance(self.step, int) and not isinstance(self.step, bool) and self.step >= 0, "step", self.step)
        _expect(self.verdict in VERDICTS, "verdict", self.verdict)
        _expect(_is_number(self.horizon), "horizon", self.horizon)
        _expect(isinstance(self.horizon_reached, bool), "horizon_reached", self.horizon_reached)
        _expect(isinstance(self.horizon_censored, bool), "horizon_censored", self.horizon_censored)
        for name in ("decay_rate", "decay_rate_tail", "interval_level"):
            value = getattr(self, name)
            _expect(value is None or _is_number(value), name, value)
        _expect(isinstance(self.seq_len, int) and not isinstance(self.seq_len, bool), "seq_len", self.seq_len)
        _expect(_is_number(self.eps), "eps", self.eps)
        _expect(isinstance(self.lags, list) and all(isinstance(k, int) for k in self.lags), "lags", "…")
        _expect(isinstance(self.g, list) and all(_is_number(v) for v in self.g), "g", "…")
        _expect(len(self.lags) == len(self.g), "g", f"{len(self.g)} values for {len(self.lags)} lags")
        interval = self.horizon_interval
        _expect(
            interval is None or (isinstance(interval, list) and len(interval) == 2 and all(map(_is_number, interval))),
            "horizon_interval",
            interval,
        )


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _expect(ok: bool, name: str, value: object) -> None:
    if not ok:
        raise ValueError(f"invalid {name}: {value!r}"[:200])


def record_from_report(report: Report, *, step: int) -> HistoryRecord:
    """The history record of one audit (its deciding direction)."""
    m = report.metrics
    interval = m.horizon_ci
    return HistoryRecord(
        step=int(step),
        verdict=report.verdict,
        horizon=float(m.horizon),
        horizon_reached=bool(m.horizon_reached),
        decay_rate=m.decay_rate,
        seq_len=int(report.config.get("seq_len", m.max_lag)),
        eps=float(report.config.get("eps", 1e-2)),
        lags=[int(k) for k in report.profile.lags],
        g=[float(v) for v in report.profile.g],
        horizon_censored=bool(m.horizon_censored),
        horizon_interval=[float(interval[0]), float(interval[1])] if interval is not None else None,
        interval_level=m.interval_level if interval is not None else None,
        decay_rate_tail=m.decay_rate_tail,
    )


def append_record(path: str | Path, record: HistoryRecord) -> None:
    """Append one record as one line (the file is created if missing)."""
    line = json.dumps(record.to_dict(), allow_nan=False, separators=(",", ":"))
    with Path(path).open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def read_history(path: str | Path) -> list[HistoryRecord]:
    """Read every record of a history file, in file order.

    Raises:
        HistoryError: the file cannot be read, or a line is not a history record (the message names the line).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HistoryError(f"cannot read history {path}: {exc}", path=path) from None
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line, parse_constant=_refuse_constant)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            records.append(HistoryRecord.from_dict(data))
        except (ValueError, TypeError) as exc:
            raise HistoryError(
                f"{path}:{number}: not a gradhealth history record ({exc}); write histories with "
                "gradhealth.monitor.Monitor",
                path=path,
            ) from None
    if not records:
        raise HistoryError(f"{path}: no history records; is it the file a gradhealth Monitor wrote?", path=path)
    return records


def _refuse_constant(name: str) -> float:
    # Histories write non-finite floats as strings; a bare NaN/Infinity is not ours.
    raise ValueError(f"bare {name} is not valid JSON")

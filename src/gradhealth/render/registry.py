"""What a renderer is: a callable over :class:`NamedReport` entries (renderers are registered through the
``gradhealth_register_renderers`` hook and looked up by format name with :func:`gradhealth.plugins.get_renderer`).

A renderer is a callable ``render(reports: Sequence[NamedReport], **options) -> str``. ``reports`` holds one entry
per audited model (a checkpoint, or one recurrent layer of it), with its gate results or the error that stopped
it; ``options`` are keyword-only extras a renderer may use or ignore (``color: bool`` for terminal colours,
``title: str``). Built-in formats: ``table``, ``json``, ``markdown``, ``junit``, ``github``. A plugin adds one::

    from gradhealth.hookspecs import hookimpl

    @hookimpl
    def gradhealth_register_renderers():
        return {"csv": lambda reports, **options: "\\n".join(r.name for r in reports)}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gradhealth.gates import GateResult, failed
from gradhealth.report import Report

__all__ = ["NamedReport", "Renderer"]


@dataclass
class NamedReport:
    """One audited model, as renderers see it.

    Attributes:
        name: a display name: the input path, plus ``:layer`` when a checkpoint holds several layers.
        path: the input as given.
        layer: the recurrent layer's name inside the checkpoint (``"encoder.rnn"``), if any.
        report: the audit's Report, or ``None`` when the input could not be audited.
        gates: the gate results (passed and failed).
        error: the one-line reason the input could not be audited.
    """

    name: str
    path: str
    layer: str | None = None
    report: Report | None = None
    gates: list[GateResult] = field(default_factory=list)
    error: str | None = None

    @property
    def failed_gates(self) -> list[GateResult]:
        """The gates that failed."""
        return failed(self.gates)

    @property
    def borderline_gates(self) -> list[GateResult]:
        """The gates whose threshold lies inside the interval of the metric they decide on (passed or failed)."""
        return [g for g in self.gates if g.borderline]

    @property
    def status(self) -> str:
        """``"error"`` (not audited), ``"fail"`` (a gate failed) or ``"pass"``."""
        if self.error is not None or self.report is None:
            return "error"
        return "fail" if self.failed_gates else "pass"


class Renderer(Protocol):
    """The renderer signature."""

    def __call__(self, reports: Sequence[NamedReport], **options: Any) -> str: ...

"""JSON output: one Report (schema version 1) for one model, or a document listing several.

The listing document is ``{"schema_version": 1, "reports": [{"name", "path", "layer", "status", "error",
"gates", "report"}, ...]}``; :func:`read_reports` reads either form back.
"""

from __future__ import annotations

import dataclasses
import json as _json
from collections.abc import Sequence
from typing import Any

from gradhealth.gates import GateResult
from gradhealth.render.registry import NamedReport
from gradhealth.report import SCHEMA_VERSION, Report, decode_floats, encode_floats

__all__ = ["read_reports", "render", "to_document"]


def to_document(reports: Sequence[NamedReport]) -> dict[str, Any]:
    """The listing document as plain data (non-finite floats encoded as strings)."""
    entries = [
        {
            "name": r.name,
            "path": r.path,
            "layer": r.layer,
            "status": r.status,
            "error": r.error,
            "gates": [dataclasses.asdict(g) for g in r.gates],
            "report": r.report.to_dict() if r.report is not None else None,
        }
        for r in reports
    ]
    return encode_floats({"schema_version": SCHEMA_VERSION, "reports": entries})


def render(reports: Sequence[NamedReport], **options: Any) -> str:
    """The Report itself for one audited model without errors or gates; otherwise the listing document."""
    if len(reports) == 1 and reports[0].report is not None and not reports[0].gates:
        return reports[0].report.to_json()
    return _json.dumps(to_document(reports), indent=2, allow_nan=False)


def read_reports(text: str, *, name: str = "report") -> list[NamedReport]:
    """Read a Report or a listing document back.

    Raises:
        ValueError: the text is neither.
    """
    try:
        data = _json.loads(text)
    except _json.JSONDecodeError as exc:
        raise ValueError(f"not a gradhealth report: invalid JSON ({exc})") from exc
    if isinstance(data, dict) and isinstance(data.get("reports"), list):
        out = []
        for entry in decode_floats(data)["reports"]:
            report = Report.from_dict(entry["report"]) if entry.get("report") else None
            gates = [GateResult(**g) for g in entry.get("gates", [])]
            out.append(
                NamedReport(
                    entry["name"],
                    entry.get("path", entry["name"]),
                    entry.get("layer"),
                    report,
                    gates,
                    entry.get("error"),
                )
            )
        return out
    return [NamedReport(name, name, None, Report.from_dict(decode_floats(data)))]

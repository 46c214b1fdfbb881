"""Plain-text rendering: the readable summary behind ``print(report)`` and a log-scale sparkline.

Both live in :mod:`gradhealth.formatting` (the bottom layer, so a Report can print itself); this module keeps the
presentation-layer names.
"""

from __future__ import annotations

from gradhealth.formatting import format_number, format_report, sparkline

__all__ = ["format_number", "format_report", "sparkline"]

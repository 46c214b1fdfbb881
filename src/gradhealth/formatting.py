"""How numbers, horizons and verdicts are written, in one place for every face and renderer (standard library only).

>>> format_number(0.1234567), format_number(None), format_number(float("inf"), " steps")
('0.123', 'n/a', '∞ steps')
>>> format_horizon(44.0, reached=True), format_horizon(458.2, reached=False, compact=True)
('44 steps', '≈458 (extrapolated)')
>>> format_horizon(38.0, reached=True, censored=True)
'≥ 38 steps (censored by the resolution floor)'
"""

from __future__ import annotations

import math

__all__ = ["VERDICT_COLORS", "VERDICT_STYLES", "format_horizon", "format_number"]

#: rich styles of each verdict (and of an input that could not be audited).
VERDICT_STYLES = {
    "healthy": "green",
    "inconclusive": "magenta",
    "vanishing": "yellow",
    "exploding": "red",
    "non_finite": "bold red",
    "error": "red",
}

#: (text, background) colours of each verdict in HTML.
VERDICT_COLORS = {
    "healthy": ("#1a7f37", "#dafbe1"),
    "inconclusive": ("#6e40c9", "#fbefff"),
    "vanishing": ("#9a6700", "#fff8c5"),
    "exploding": ("#bc4c00", "#fff1e5"),
    "non_finite": ("#82071e", "#ffebe9"),
    "error": ("#82071e", "#ffebe9"),
}


def format_number(value: float | None, unit: str = "", digits: int = 3) -> str:
    """Human-readable number: ``None`` and NaN as ``n/a``, infinities as ``∞``, integers without a point."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if math.isinf(value):
        return ("∞" if value > 0 else "-∞") + unit
    if float(value).is_integer() and abs(value) < 1e9:
        return f"{int(value)}{unit}"
    return f"{value:.{digits}g}{unit}"


def format_horizon(
    horizon: float | None, *, reached: bool, censored: bool = False, compact: bool = False, digits: int = 3
) -> str:
    """A horizon with what kind of number it is.

    Args:
        horizon: the horizon in steps.
        reached: whether g fell below ε within K (else ``horizon`` is extrapolated, or ``inf``).
        censored: whether the resolution floor hid the crossing (``horizon`` is a lower bound).
        compact: the short form for table cells.
        digits: significant digits of an extrapolated value.
    """
    unit = "" if compact else " steps"
    if censored:
        return f"≥ {format_number(horizon)}" + (
            " (censored)" if compact else f"{unit} (censored by the resolution floor)"
        )
    if reached or horizon is None:
        return format_number(horizon, unit)
    if math.isinf(horizon):
        return "∞ (not reached)" if compact else "∞ (not reached within K; g does not decay)"
    value = format_number(horizon, unit, digits)
    return f"≈{value} (extrapolated)" if compact else f"≈{value} (not reached within K; extrapolated)"

"""The log-scale profile plot against hand-computed profiles."""

from __future__ import annotations

import math

from gradhealth.testing import profile_plot


def test_plot_of_a_geometric_profile() -> None:
    g = [10.0**-k for k in range(4)]  # one decade per lag
    assert profile_plot(g, eps=1e-2) == [
        "  1e+00 │█",
        "  1e-01 │██",
        "  1e-02 │███   ← ε",
        "  1e-03 │████",
        "        └────",
        "         lag 0 lag 3",
    ]


def test_plot_marks_nonfinite_and_buckets_long_profiles() -> None:
    g = [1.0] * 50 + [math.nan] + [1.0] * 49  # 100 lags -> 50 columns of 2 lags, max per bucket
    lines = profile_plot(g, eps=1e-2, width=50)
    assert lines[0] == "  1e+00 │" + "█" * 25 + "!" + "█" * 24
    assert lines[-1].endswith("lag 98")


def test_plot_of_a_growing_profile_starts_at_its_peak_decade() -> None:
    g = [1.1**k for k in range(61)]  # peak 1.1^60 = 304
    lines = profile_plot(g, eps=1e-2)
    assert lines[0] == "  1e+03 │"  # 304 < 1000: an empty row
    assert lines[1] == "  1e+02 │" + " " * 24 + "█" * 7  # lags 48..60 (buckets of 2) reach 100 from lag 49

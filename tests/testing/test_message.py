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


def test_reproduce_call_names_a_probe_option_only_when_it_is_not_the_default() -> None:
    import torch

    import gradhealth
    from gradhealth.testing._message import reproduce_call

    model = torch.nn.GRU(2, 3, batch_first=True)
    plain = gradhealth.audit(model, seq_len=8, batch_size=2, probes="quick")
    assert "lyapunov_top_k" not in reproduce_call(plain)
    tuned = gradhealth.audit(model, seq_len=8, batch_size=2, probes="quick", lyapunov_top_k=2, gradient_splits=2)
    call = reproduce_call(tuned)
    assert call.endswith("probes='quick', lyapunov_top_k=2, gradient_splits=2)")
    again = eval(call, {"gradhealth": gradhealth, "model": model})
    assert again.config == tuned.config

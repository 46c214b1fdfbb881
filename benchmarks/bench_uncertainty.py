"""Benchmark: what the intervals and the target-precision mode cost, against the audit itself.

1. Interval cost: ``gradhealth.audit(..., probes="quick")`` with the default 200 bootstrap resamples against the
   same call with ``bootstrap_samples=0`` (no intervals), on a small GRU (the cheapest audit, where the bootstrap
   weighs most) and an LSTM of a realistic size. Target: intervals under 5% of the audit.
2. Target precision: ``target_horizon_precision`` 0.1 and 0.05 against one batch, on a linear recurrence whose
   samples scatter: how many samples it took, the horizon interval reached, and the time.

    python benchmarks/bench_uncertainty.py            # a minute or two on 2 CPU cores
    python benchmarks/bench_uncertainty.py --quick    # smaller sizes, for a smoke test
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

import gradhealth
from gradhealth import reference
from gradhealth.metrics import summarize_profile
from gradhealth.probes.lag_profile import horizon_precision
from gradhealth.uncertainty import few_sample_verdict, profile_intervals


def median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interval_cost(name: str, model: nn.Module, repeats: int, **settings: Any) -> None:
    """Whole audits with and without intervals (interleaved, so drift in machine load hits both alike), and the
    uncertainty step alone on the same norms (the difference of two noisy audits can hide a millisecond)."""

    def run(samples: int) -> gradhealth.Report:
        return gradhealth.audit(model, probes="quick", bootstrap_samples=samples, **settings)

    without, with_intervals = [], []
    for _ in range(repeats):
        without.append(median_time(lambda: run(0), 1))
        with_intervals.append(median_time(lambda: run(200), 1))
    a, b = statistics.median(without), statistics.median(with_intervals)
    rng = np.random.default_rng(0)
    norms = np.exp(rng.normal(size=(settings.get("batch_size", 32), settings.get("seq_len", 100) + 1)))
    summary = summarize_profile(norms)
    m, resolved = summary.metrics, summary.profile.resolved

    def step() -> None:
        profile_intervals(norms, m, resolved)
        few_sample_verdict(norms, summary.verdict, m, resolved)

    alone = median_time(step, 50)
    print(
        f"{name}: audit {a * 1e3:.1f} ms without intervals, {b * 1e3:.1f} ms with 200 resamples ({b / a:.3f}x); "
        f"the uncertainty step alone {alone * 1e3:.2f} ms per direction = {alone / a * 100:.1f}% of the audit"
    )


def target_cost(name: str, model: nn.Module, repeats: int, **settings: Any) -> None:
    for target in (None, 0.1, 0.05):
        report = gradhealth.audit(model, probes="quick", target_horizon_precision=target, **settings)
        seconds = median_time(
            lambda target=target: gradhealth.audit(model, probes="quick", target_horizon_precision=target, **settings),
            repeats,
        )
        m = report.metrics
        print(
            f"{name}: target {target}: {m.samples} samples, horizon {m.horizon:g} {m.horizon_ci}, "
            f"±{horizon_precision(m) * 100:.1f}%, {seconds * 1e3:.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    small = nn.GRU(8, 16, batch_first=True)
    hidden = 64 if args.quick else 128
    lstm = nn.LSTM(32, hidden, batch_first=True)
    interval_cost("GRU(8, 16), K=100, B=32", small, args.repeats)
    interval_cost(f"LSTM(32, {hidden}), K=100, B=32", lstm, args.repeats)
    # a model whose samples scatter (a symmetric W with spectrum 0.5..0.95): the horizon interval has width
    u = reference.random_orthogonal(8, seed=1)
    weight = u @ torch.diag(torch.linspace(0.5, 0.95, 8, dtype=torch.float64)) @ u.T
    spread = reference.LinearRecurrence(8, weight=weight)
    target_cost("LinearRecurrence(8, spectrum 0.5..0.95), K=100, B=32", spread, max(1, args.repeats // 3))


if __name__ == "__main__":
    main()

"""Cost of the probe presets against one plain forward+backward pass, measured side by side in one run.

Model: ``nn.LSTM(32, 256, num_layers=2)``, batch 16, float32, K = 256. The audit feeds sequences of
T = burn-in + K + 1 = 513 steps, so the plain pass runs at that same length: one forward, a loss at the last
step, and one backward to every parameter. The plain pass and the quick and standard presets are timed
interleaved (median of ``--repeats``); the thorough preset once.

Run: ``python benchmarks/bench_probes.py`` (about a minute on one CPU core; ``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import gradhealth
from gradhealth._state import flush_denormals
from gradhealth.config import PRESETS


def seconds(fn: Callable[[], object]) -> float:
    """Wall time of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script runs")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the plain pass and the cheap presets")
    args = parser.parse_args()
    hidden, seq_len, batch = (32, 16, 4) if args.quick else (256, 256, 16)
    # One thread: on a shared machine, thread contention otherwise dominates the spread of the timings.
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.LSTM(32, hidden, num_layers=2, batch_first=True)
    total_len = 2 * seq_len + 1
    x = torch.randn(batch, total_len, 32)

    def plain_unflushed() -> None:
        out = model(x)[0]
        out[:, -1].sum().backward()
        model.zero_grad(set_to_none=True)

    def plain() -> None:
        # The audit flushes denormals on CPU; without it the vanishing tail of the backward pass runs on
        # denormal floats, which is ~10x slower and would flatter the ratios.
        with flush_denormals():
            plain_unflushed()

    def audit(probes: str) -> Callable[[], object]:
        return lambda: gradhealth.audit(model, seq_len=seq_len, batch_size=batch, dtype="float32", probes=probes)

    cases = {
        "plain forward+backward": plain,
        "plain, denormals not flushed": plain_unflushed,
        "preset quick": audit("quick"),
        "preset standard": audit("standard"),
    }
    for fn in cases.values():  # warm-up
        fn()
    # Interleaved, so that every case sees the same background load.
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, fn in cases.items():
            times[name].append(seconds(fn))
    rows = [(name, statistics.median(ts)) for name, ts in times.items()]
    rows.append(("preset thorough (once)", seconds(audit("thorough"))))
    base = rows[0][1]

    print(f"nn.LSTM(32, {hidden}, num_layers=2), batch {batch}, float32, K = {seq_len} (T = {total_len}), 1 thread")
    print(f"{'what':28s} {'seconds':>9s} {'x plain':>9s}")
    for name, value in rows:
        print(f"{name:28s} {value:9.3f} {value / base:9.2f}")
    standard = dict(rows)["preset standard"] / base
    print(f"standard preset: {standard:.2f}x one plain forward+backward (target <= 3x)")
    print(
        f"standard probes: {', '.join(PRESETS['standard'])}; thorough adds "
        f"{', '.join(p for p in PRESETS['thorough'] if p not in PRESETS['standard'])}"
    )


if __name__ == "__main__":
    main()

"""Benchmark: the lag-profile probe against one plain forward+backward pass of the same model.

Measured side by side in one run (issue 2): nn.LSTM 32 -> 256, 2 layers, batch 16, float32, K = 1024, so the
sequence fed to the model has T = 2K + 1 steps (burn-in K). "Plain" is one ordinary training step's compute:
forward over T steps, a loss over all outputs, backward into every parameter. "Probe" is the whole
``gradhealth.audit(..., probes="quick")`` call: copy, smoke test, forward, one backward, metrics.
Then the probe time at K = 256, 1024, 4096 to check growth is linear in K.

    python benchmarks/bench_lag_profile.py            # full run (a few minutes on 2 CPU cores)
    python benchmarks/bench_lag_profile.py --quick    # smaller sizes, for a smoke test
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import gradhealth


def median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def plain_step(model: nn.LSTM, x: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    out, _ = model(x)
    out.square().mean().backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    hidden, batch = (64, 8) if args.quick else (256, 16)
    k_main = 128 if args.quick else 1024
    ladder = (64, 128, 256) if args.quick else (256, 1024, 4096)
    model = nn.LSTM(32, hidden, num_layers=2, batch_first=True)

    def probe(k: int) -> gradhealth.Report:
        return gradhealth.audit(model, seq_len=k, batch_size=batch, dtype="float32", probes="quick")

    x = torch.randn(batch, 2 * k_main + 1, 32)
    plain = median_time(lambda: plain_step(model, x), args.repeats)
    probed = median_time(lambda: probe(k_main), args.repeats)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; nn.LSTM(32, {hidden}, 2 layers), batch {batch}"
    )
    print(f"K = {k_main} (T = {2 * k_main + 1}), float32, median of {args.repeats}:")
    print(f"  plain forward+backward: {plain * 1e3:9.1f} ms")
    print(f"  lag-profile probe:      {probed * 1e3:9.1f} ms   ratio {probed / plain:.2f}x (target <= 1.3x)")
    print("probe time by K (linear growth expected):")
    base = None
    for k in ladder:
        t = median_time(lambda k=k: probe(k), max(1, args.repeats // 2) if k == ladder[-1] else args.repeats)
        base = base or t / k
        print(
            f"  K = {k:5d}: {t * 1e3:9.1f} ms   per step {t / k * 1e6:8.1f} us   "
            f"relative per-step cost {t / k / base:.2f}"
        )


if __name__ == "__main__":
    main()

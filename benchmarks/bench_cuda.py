"""The lag profile and the standard preset on CUDA against the CPU: the same numbers, and the time each takes.

For a person with a GPU (CI has none): every case is audited on the CPU and on ``cuda`` in the same dtype
(float32, float64 and auto, whose choice the dtype column shows), and the script prints verdicts, horizons and
decay rates side by side with the wall time, then the largest relative difference of the lag profile g(k) over
resolved lags. Exits 0 with "no CUDA" where
torch sees no GPU.

Run: ``python benchmarks/bench_cuda.py`` (``--quick`` for small sizes).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

import gradhealth


def cases(quick: bool) -> dict[str, Callable[[], object]]:
    hidden = 32 if quick else 256

    def seeded(build: Callable[[], object]) -> Callable[[], object]:
        def make() -> object:
            torch.manual_seed(0)
            return build()

        return make

    return {
        f"nn.LSTM(32, {hidden}, 2 layers)": seeded(lambda: nn.LSTM(32, hidden, num_layers=2, batch_first=True)),
        f"nn.GRU(32, {hidden})": seeded(lambda: nn.GRU(32, hidden, batch_first=True)),
        f"nn.LSTM(32, {hidden}, bidirectional)": seeded(lambda: nn.LSTM(32, hidden, bidirectional=True)),
        "nn.RNNCell(32, 64)": seeded(lambda: nn.RNNCell(32, 64)),
    }


def audit(model: object, device: str, dtype: str, probes: str, k: int) -> tuple[gradhealth.Report, float]:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    chosen = None if dtype == "auto" else dtype  # auto: the model's own dtype, float64 where float32 falls short
    report = gradhealth.audit(model, seq_len=k, batch_size=16, dtype=chosen, device=device, probes=probes)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return report, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--device", default="cuda", help="the device compared with the CPU (default: cuda)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA: torch sees no GPU, nothing to compare")
        return 0
    k = 32 if args.quick else 256
    where = torch.cuda.get_device_name() if args.device == "cuda" else args.device
    print(f"torch {torch.__version__}, {where}, K = {k}, batch 16")
    head = ("model", "preset", "dtype", "device", "verdict", "horizon", "decay", "s")
    print("{:34s} {:9s} {:8s} {:6s} {:12s} {:>9s} {:>10s} {:>7s}".format(*head))
    worst = 0.0
    for name, build in cases(args.quick).items():
        for probes in ("quick", "standard"):
            for dtype in ("float32", "float64", "auto"):
                profiles = {}
                for device in ("cpu", args.device):
                    audit(build(), device, dtype, probes, 4)  # warm-up: kernels, lazy modules
                    report, seconds = audit(build(), device, dtype, probes, k)
                    m = report.metrics
                    shown = dtype if dtype != "auto" else "auto:" + report.config["dtype"].removeprefix("float")
                    print(
                        f"{name:34s} {probes:9s} {shown:8s} {device:6s} {report.verdict:12s} {m.horizon:9.4g} "
                        f"{m.decay_rate if m.decay_rate is not None else float('nan'):10.5g} {seconds:7.3f}"
                    )
                    profiles[device] = (np.asarray(report.profile.g, dtype=float), m.resolved_lags)
                (g_cpu, resolved), (g_cuda, _) = profiles["cpu"], profiles[args.device]
                upto = max(1, resolved)
                rel = np.abs(g_cuda[:upto] - g_cpu[:upto]) / np.maximum(np.abs(g_cpu[:upto]), 1e-300)
                worst = max(worst, float(np.nanmax(rel)))
    print(f"largest relative difference of g(k) over resolved lags, {args.device} vs CPU: {worst:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The lag profile in float32 and float64 side by side: verdicts, horizons and decay rates, and the time each takes.

Cases: the analytic models of :mod:`gradhealth.reference` and look-alikes of real models (``nn.RNN/LSTM/GRU`` of
common sizes, stacked and bidirectional, and the cells). Everything else is the audit's default (K = 128 here,
batch 16, seed 0). This is the measurement behind the default probe dtype (issue 16).

Run: ``python benchmarks/compare_dtypes.py`` (a few minutes on one core).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn

import gradhealth
from gradhealth import reference


def cases() -> dict[str, Callable[[], object]]:
    """Model builders by name (seeded)."""

    def seeded(build: Callable[[], object]) -> Callable[[], object]:
        def make() -> object:
            torch.manual_seed(0)
            return build()

        return make

    return {
        "LinearRecurrence(8, 0.9)": seeded(lambda: reference.LinearRecurrence(8, 0.9)),
        "LinearRecurrence(8, 0.99)": seeded(lambda: reference.LinearRecurrence(8, 0.99)),
        "DelayLine(4, 20)": seeded(lambda: reference.DelayLine(4, 20)),
        "scaled_orthogonal_rnn(16, 0.9)": seeded(lambda: reference.scaled_orthogonal_rnn(16, 0.9)),
        "constant_forget_lstm(8, 0.95)": seeded(lambda: reference.constant_forget_lstm(8, 0.95)),
        "constant_update_gru(8, 0.9)": seeded(lambda: reference.constant_update_gru(8, 0.9)),
        "chrono_lstm(8, 32, 100)": seeded(lambda: reference.chrono_lstm(8, 32, 100)),
        "nn.RNN(32, 64)": seeded(lambda: nn.RNN(32, 64, batch_first=True)),
        "nn.LSTM(32, 128)": seeded(lambda: nn.LSTM(32, 128, batch_first=True)),
        "nn.LSTM(32, 256, 2 layers)": seeded(lambda: nn.LSTM(32, 256, num_layers=2, batch_first=True)),
        "nn.GRU(32, 128)": seeded(lambda: nn.GRU(32, 128, batch_first=True)),
        "nn.LSTM(16, 64, bidirectional)": seeded(lambda: nn.LSTM(16, 64, bidirectional=True, batch_first=True)),
        "nn.RNNCell(32, 64)": seeded(lambda: nn.RNNCell(32, 64)),
        "nn.LSTMCell(32, 64)": seeded(lambda: nn.LSTMCell(32, 64)),
        "nn.GRUCell(32, 64)": seeded(lambda: nn.GRUCell(32, 64)),
    }


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def main() -> None:
    torch.set_num_threads(1)
    print(f"{'model':32s} {'dtype':8s} {'verdict':13s} {'horizon':>9s} {'decay_rate':>12s} {'tail':>12s} {'s':>6s}")
    differ = []
    for name, build in cases().items():
        rows = {}
        for dtype in ("float32", "float64"):
            start = time.perf_counter()
            report = gradhealth.audit(build(), seq_len=128, batch_size=16, dtype=dtype, probes="quick")
            seconds = time.perf_counter() - start
            for d in report.directions:
                m = d.metrics
                rows[dtype, d.name] = (d.verdict, m.horizon, m.decay_rate, m.decay_rate_tail)
                label = name if d.name == "forward" else f"{name} [backward]"
                print(
                    f"{label:32s} {dtype:8s} {d.verdict:13s} {_fmt(m.horizon):>9s} {_fmt(m.decay_rate):>12s} "
                    f"{_fmt(m.decay_rate_tail):>12s} {seconds:6.2f}"
                )
        for direction in {d for _, d in rows}:
            a, b = rows["float32", direction], rows["float64", direction]
            if a[:2] != b[:2]:
                differ.append(f"{name} {direction}: {a[:2]} vs {b[:2]}")
    print("verdict or horizon differs: " + ("; ".join(differ) if differ else "none"))


if __name__ == "__main__":
    main()

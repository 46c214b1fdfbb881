"""The lag profile in float32, float64 and auto side by side: verdicts, horizons, decay rates, and the time each takes.

Cases: the analytic models of :mod:`gradhealth.reference` and look-alikes of real models (``nn.RNN/LSTM/GRU`` of
common sizes, stacked, projected and bidirectional, a token model, the cells, a steeply vanishing and an exploding
RNN). Everything else is the audit's default (K = 128 here, batch 16, seed 0). This is the measurement behind the
default probe dtype (issue 16): auto follows the model (float32 here) and measures again in float64 where float32
leaves a lag unresolved; the last lines say how far auto's numbers are from float64's in every case.

Run: ``python benchmarks/compare_dtypes.py [--seq-len K]`` (a few minutes on one core).
"""

from __future__ import annotations

import argparse
import math
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
        "nn.LSTM(32, 128, proj_size=32)": seeded(lambda: nn.LSTM(32, 128, proj_size=32, batch_first=True)),
        "nn.GRU(32, 64, 3 layers)": seeded(lambda: nn.GRU(32, 64, num_layers=3, batch_first=True)),
        "Embedding(100, 32) + nn.LSTM(32, 64)": seeded(_token_lstm),
        "nn.RNN(32, 64), weights x0.3": seeded(lambda: _scaled(nn.RNN(32, 64, batch_first=True), 0.3)),
        "nn.RNN(32, 64, relu), W_hh x4": seeded(
            lambda: _scaled(nn.RNN(32, 64, nonlinearity="relu", batch_first=True), 4.0)
        ),
    }


class _TokenLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(100, 32)
        self.lstm = nn.LSTM(32, 64, batch_first=True)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lstm(self.embed(ids))[0]


def _token_lstm() -> nn.Module:
    return _TokenLSTM()


def _scaled(rnn: nn.RNN, factor: float) -> nn.RNN:
    with torch.no_grad():
        rnn.weight_hh_l0.mul_(factor)
    return rnn


def _rel(a: float | None, b: float | None) -> float:
    if a is None or b is None or a == b:
        return 0.0 if a == b else math.inf
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.inf
    return abs(a - b) / max(abs(b), 1e-300)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=128)
    seq_len = parser.parse_args().seq_len
    torch.set_num_threads(1)
    print(f"{'model':36s} {'dtype':8s} {'verdict':13s} {'horizon':>9s} {'decay_rate':>12s} {'tail':>12s} {'s':>6s}")
    differ, auto_far, chose = [], [], {}
    for name, build in cases().items():
        rows = {}
        for dtype in ("float32", "float64", None):
            start = time.perf_counter()
            report = gradhealth.audit(build(), seq_len=seq_len, batch_size=16, dtype=dtype, probes="quick")
            seconds = time.perf_counter() - start
            shown = dtype or f"auto:{report.config['dtype'].removeprefix('float')}"
            if dtype is None:
                chose[name] = (report.config["dtype"], report.model["probe_dtype_reason"])
            for d in report.directions:
                m = d.metrics
                rows[dtype, d.name] = (d.verdict, m.horizon, m.decay_rate, m.decay_rate_tail)
                label = name if d.name == "forward" else f"{name} [backward]"
                print(
                    f"{label:36s} {shown:8s} {d.verdict:13s} {_fmt(m.horizon):>9s} {_fmt(m.decay_rate):>12s} "
                    f"{_fmt(m.decay_rate_tail):>12s} {seconds:6.2f}"
                )
        for direction in {d for _, d in rows}:
            a, b, auto = rows["float32", direction], rows["float64", direction], rows[None, direction]
            if a[:2] != b[:2]:
                differ.append(f"{name} {direction}: {a[:2]} vs {b[:2]}")
            far = max(_rel(x, y) for x, y in zip(auto[1:], b[1:], strict=True))
            if auto[0] != b[0] or far > 1e-5:
                auto_far.append(f"{name} {direction}: {auto} vs {b}")
    print("float32 vs float64, verdict or horizon differs: " + ("; ".join(differ) if differ else "none"))
    print("auto vs float64, verdict differs or horizon/rates beyond 1e-5 relative: " + ("; ".join(auto_far) or "none"))
    in32 = [n for n, (dtype, _) in chose.items() if dtype == "float32"]
    print(f"auto chose float32 for {len(in32)} of {len(chose)} models; float64 for:")
    for name, (dtype, reason) in chose.items():
        if dtype != "float32":
            print(f"  {name}: {reason}")


if __name__ == "__main__":
    main()

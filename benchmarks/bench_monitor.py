"""Overhead of the training monitor at its default interval on the demo models.

Each demo model (tanh RNN, LSTM, GRU, chrono LSTM, attention: 8 inputs, 48 units, as in ``gradhealth demo``) with a
linear readout is trained with Adam on the adding problem (sequences of 100 steps, batch 32) for ``--steps``
steps with a :class:`gradhealth.monitor.Monitor` at its default settings (every
:data:`~gradhealth.monitor.DEFAULT_EVERY` steps, the quick preset at K = 100, 32 probe sequences), on one thread.
Every training step and every monitor call is timed on its own; the overhead is

    median audit time / (DEFAULT_EVERY x median step time),

medians because on a shared machine whole-run timings scatter by tens of percent (other processes), while the
median of hundreds of steps does not. The whole-run ratio is printed beside it for reference.

Run: ``python benchmarks/bench_monitor.py`` (a few minutes on one CPU core; ``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
from torch import nn

from gradhealth.demo import DEMO_MODELS, build_demo_models
from gradhealth.monitor import DEFAULT_EVERY, Monitor


def adding_batch(gen: torch.Generator, batch: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The adding problem (Hochreiter & Schmidhuber 1997): values and two markers; target = sum of the marked."""
    values = torch.rand(batch, length, generator=gen)
    marks = torch.zeros(batch, length)
    first = torch.randint(0, length // 2, (batch,), generator=gen)
    second = torch.randint(length // 2, length, (batch,), generator=gen)
    marks[torch.arange(batch), first] = 1.0
    marks[torch.arange(batch), second] = 1.0
    x = torch.zeros(batch, length, 8)
    x[..., 0], x[..., 1] = values, marks
    return x, (values * marks).sum(1, keepdim=True)


def train(model: nn.Module, steps: int, *, length: int) -> tuple[list[float], list[float]]:
    """Seconds of each training step, and of each monitor call that audited."""
    head = nn.Linear(model.hidden_size, 1)
    opt = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    monitor = Monitor(model)
    step_times, audit_times = [], []
    for _ in range(steps):
        start = time.perf_counter()
        x, y = adding_batch(gen, 32, length)
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out  # nn.RNN/LSTM/GRU return (output, state)
        loss = (head(out[:, -1]) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        middle = time.perf_counter()
        audited = monitor.step() is not None
        end = time.perf_counter()
        step_times.append(middle - start)
        if audited:
            audit_times.append(end - middle)
    return step_times, audit_times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps, to check the script runs")
    parser.add_argument("--steps", type=int, default=3 * DEFAULT_EVERY, help="training steps per model")
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps, length = (DEFAULT_EVERY, 20) if args.quick else (args.steps, 100)
    Monitor(build_demo_models(seq_len=100)["LSTM"]).audit(0)  # one-time start-up (plugin discovery) not counted
    print(f"{'model':<12} {'step ms':>8} {'audit ms':>9} {'audits':>7} {'overhead':>9} {'whole-run':>10}")
    overheads: list[float] = []
    for name in DEMO_MODELS:
        model: Any = build_demo_models(seq_len=100)[name]
        step_times, audit_times = train(model, steps, length=length)
        step, audit = statistics.median(step_times), statistics.median(audit_times)
        overheads.append(audit / (DEFAULT_EVERY * step))
        whole = sum(audit_times) / sum(step_times)
        print(
            f"{name:<12} {1e3 * step:8.2f} {1e3 * audit:9.1f} {len(audit_times):7d} {100 * overheads[-1]:8.2f}% "
            f"{100 * whole:9.2f}%"
        )
    print(f"every {DEFAULT_EVERY} steps: overhead at most {100 * max(overheads):.2f}% (median step and audit times)")


if __name__ == "__main__":
    main()

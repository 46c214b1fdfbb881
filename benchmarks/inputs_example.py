"""Which probe inputs for a trained model: white noise, the adding task, or the model's own data (docs/inputs.md).

Trains ``nn.LSTM(2, 32)`` with a linear head on the adding problem (sequences of ``--train-len`` steps, two marked
values in U(0, 1) whose sum is the target at the last step) for ``--seconds`` of wall time, then audits it at
K = ``--seq-len`` (burn-in K, T = 2K + 1) over probe seeds 0..4 with three kinds of input:

- ``noise``: the default probe, x ~ N(0, 1) in both channels;
- ``adding``: gradhealth's adding task (``task="adding"``);
- ``own data``: a validation batch from this script's own sampler, ``inputs=val`` (the seed then moves only
  the probe directions v_b, not the sequences);
- ``own data, 5 batches``: five different validation batches (sampler seeds 0..4) at probe seed 0: how much the
  choice of batch moves the number.

Prints the final training loss (the untrained baseline is Var(a + b) = 1/6 = 0.167), each horizon, and per kind
min / median / max and the spread (max - min) / median. Run: ``python benchmarks/inputs_example.py`` (about 25 s on
one core; the training is seeded, but how many steps fit in the time depends on the machine: ``--steps`` fixes it).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import gradhealth


def adding_batch(batch: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The adding problem: channel 0 values in U(0, 1), channel 1 marks one step in each half; target their sum."""
    values = torch.rand(batch, length, generator=generator)
    marks = torch.zeros(batch, length)
    half = length // 2
    first = torch.randint(0, half, (batch,), generator=generator)
    second = torch.randint(half, length, (batch,), generator=generator)
    rows = torch.arange(batch)
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    target = values[rows, first] + values[rows, second]
    return torch.stack([values, marks], dim=2), target


class Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(2, 32, batch_first=True)
        self.head = nn.Linear(32, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(x)[0][:, -1]).squeeze(1)


def train(seconds: float, steps: int | None, length: int) -> tuple[nn.LSTM, int, float, float]:
    torch.manual_seed(0)
    model = Model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    start, step = time.perf_counter(), 0
    while (steps is None and time.perf_counter() - start < seconds) or (steps is not None and step < steps):
        x, y = adding_batch(64, length, generator)
        loss = (model(x) - y).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
    with torch.no_grad():
        x, y = adding_batch(512, length, torch.Generator().manual_seed(12345))
        val_loss = float((model(x) - y).pow(2).mean())
    return model.lstm, step, time.perf_counter() - start, val_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="training wall time")
    parser.add_argument("--steps", type=int, default=None, help="train this many steps instead")
    parser.add_argument("--train-len", type=int, default=50, help="training sequence length")
    parser.add_argument("--seq-len", type=int, default=200, help="dependency length K of the audit")
    parser.add_argument("--batch-size", type=int, default=32, help="probe sequences")
    args = parser.parse_args()
    torch.set_num_threads(1)

    lstm, steps, took, val_loss = train(args.seconds, args.steps, args.train_len)
    print(f"trained {steps} steps in {took:.1f} s; validation MSE {val_loss:.4f} (untrained baseline 0.167)")

    k = args.seq_len
    val, _ = adding_batch(args.batch_size, 2 * k + 1, torch.Generator().manual_seed(777))
    kinds = {
        "noise": {"task": "noise"},
        "adding": {"task": "adding"},
        "own data": {"inputs": val},
    }
    print(f"audit: K = {k}, batch {args.batch_size}, probes quick, seeds 0..4")
    batches = [adding_batch(args.batch_size, 2 * k + 1, torch.Generator().manual_seed(s))[0] for s in range(5)]
    for name, kw in [*kinds.items(), ("own data, 5 batches", {})]:
        horizons, verdicts = [], set()
        for seed in range(5):
            if not kw:
                report = gradhealth.audit(lstm, probes="quick", inputs=batches[seed])
            else:
                window = {"seq_len": k, "batch_size": args.batch_size} if "task" in kw else {}
                report = gradhealth.audit(lstm, probes="quick", seed=seed, **window, **kw)
            horizons.append(report.metrics.horizon)
            verdicts.add(report.verdict)
        median = statistics.median(horizons)
        spread = (max(horizons) - min(horizons)) / median if median else float("nan")
        shown = ", ".join(f"{h:.0f}" for h in horizons)
        print(
            f"{name:>19}: horizons {shown}; min/median/max {min(horizons):.0f}/{median:.0f}/{max(horizons):.0f}, "
            f"spread {100 * spread:.0f}%, verdicts {', '.join(sorted(verdicts))}"
        )


if __name__ == "__main__":
    main()

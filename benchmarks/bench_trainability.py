"""Does the gradient horizon predict what a model can learn? The table behind docs/trainability.md and the
learned delays ``gradhealth demo`` shows.

For each demo model (tanh RNN, LSTM, GRU, chrono LSTM, causal attention; 8 inputs, 48 units, seed 0) and the two
remedies of the tanh RNN's initialisation (orthogonal W_hh, identity W_hh), at the same initialisation:

- the gradient horizon (``gradhealth.audit``, quick preset, K = 150, 8 probe sequences, as in the demo);
- the largest delay learned on the copy task (:func:`gradhealth.trainability.learnable_delay`: grow-then-bisect
  up to ``--max-delay``, 3 seeds with a majority to count, 300 Adam steps at lr 1e-2, batch 32, success =
  accuracy >= 0.9 on a fixed batch of 256).

Then gradient clipping on an exploding run: a tanh RNN with W_hh = 3Q (Q orthogonal) trained by SGD on the adding
problem, with and without ``clip_grad_norm_(1.0)``; the loss curves are recorded.

Run: ``python benchmarks/bench_trainability.py`` (10-20 minutes on one CPU core) writes
``src/gradhealth/data/trainability.json``, which the demo reads; ``--quick`` for a smoke run (not written).
``--plot docs/trainability.png`` draws the figure of docs/trainability.md from that file (no training).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

import gradhealth
from gradhealth.demo import DEMO_MODELS, build_demo_models
from gradhealth.reference import random_orthogonal
from gradhealth.report import decode_floats, encode_floats
from gradhealth.trainability import learnable_delay

OUTPUT = Path(__file__).resolve().parents[1] / "src" / "gradhealth" / "data" / "trainability.json"
SEQ_LEN, HIDDEN, INPUTS = 150, 48, 8


def remedy_models() -> dict[str, nn.Module]:
    """The tanh RNN of the demo with W_hh orthogonal, and with W_hh = I."""
    models = {}
    for name, weight in (
        ("tanh RNN, orthogonal init", random_orthogonal(HIDDEN, seed=0, dtype=torch.float32)),
        ("tanh RNN, identity init", torch.eye(HIDDEN)),
    ):
        rnn = build_demo_models(seq_len=SEQ_LEN, input_size=INPUTS, hidden_size=HIDDEN)["tanh RNN"]
        with torch.no_grad():
            rnn.weight_hh_l0.copy_(weight)
            rnn.bias_hh_l0.zero_()
        models[name] = rnn
    return models


def clipping_run(*, clip: bool, steps: int, delay: int) -> list[float]:
    """Training losses of an exploding tanh RNN (W_hh = 3Q) on the adding problem, SGD lr 0.05."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        rnn = nn.RNN(2, HIDDEN, batch_first=True)
        with torch.no_grad():
            rnn.weight_hh_l0.copy_(3.0 * random_orthogonal(HIDDEN, seed=0, dtype=torch.float32))
        head = nn.Linear(HIDDEN, 1)
        params = [*rnn.parameters(), *head.parameters()]
        opt = torch.optim.SGD(params, lr=0.05)
        gen = torch.Generator().manual_seed(0)
        losses = []
        for _ in range(steps):
            values = torch.rand(32, delay, generator=gen)
            second = torch.randint(1, delay, (32,), generator=gen)
            marks = torch.zeros(32, delay)
            marks[:, 0] = 1.0
            marks[torch.arange(32), second] = 1.0
            x = torch.stack([values, marks], dim=-1)
            y = (values * marks).sum(1, keepdim=True)
            loss = (head(rnn(x)[0][:, -1]) - y).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            if clip:
                nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            losses.append(loss.item() if math.isfinite(loss.item()) else float("nan"))
        return losses


def plot(path: str) -> None:
    """Horizon at initialisation against the largest delay learned, from the written results."""
    from matplotlib.figure import Figure

    data = decode_floats(json.loads(OUTPUT.read_text(encoding="utf-8")))
    cap = 4 * data["settings"]["max_delay"]
    fig = Figure(figsize=(7.0, 5.0), layout="constrained")
    ax = fig.add_subplot()
    for i, row in enumerate(data["rows"]):
        x = min(row["horizon"], cap)
        beyond = not row["horizon_reached"]
        marker = "^" if row["is_lower_bound"] else (">" if beyond else "o")
        ax.scatter([x], [row["learned_delay"]], marker=marker, s=60, color=f"C{i}", label=row["model"])
    ax.axhline(data["settings"]["max_delay"], color="#59636e", ls=":", lw=1)
    ax.plot([1, cap], [1, cap], color="#59636e", lw=0.8, ls="--")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel=f"gradient horizon at initialisation (steps; capped at {cap})",
        ylabel="largest copy delay learned",
        title="Horizon at initialisation vs. what training reached",
    )
    ax.legend(fontsize="small", loc="lower right")
    fig.savefig(path, dpi=110)
    print(f"plot written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets, to check the script runs")
    parser.add_argument("--max-delay", type=int, default=64, help="the longest delay tried")
    parser.add_argument("--plot", help="only draw the figure from the written results, to this path")
    args = parser.parse_args()
    if args.plot:
        plot(args.plot)
        return
    torch.set_num_threads(1)
    budget = {"seeds": 3, "max_steps": 300} if not args.quick else {"seeds": 1, "max_steps": 20}
    max_delay = args.max_delay if not args.quick else 4
    models: dict[str, Any] = {**build_demo_models(seq_len=SEQ_LEN, input_size=INPUTS, hidden_size=HIDDEN)}
    models.update(remedy_models())
    rows = []
    print(f"{'model':<28} {'verdict':<10} {'horizon':>8} {'learned delay':>14} {'seconds':>8}")
    for name, model in models.items():
        report = gradhealth.audit(model, seq_len=SEQ_LEN, batch_size=8, probes="quick")
        found = learnable_delay(model, task="copy", max_delay=max_delay, with_horizon=False, **budget)
        rows.append(
            {
                "model": name,
                "verdict": report.verdict,
                "horizon": report.metrics.horizon,
                "horizon_reached": report.metrics.horizon_reached,
                "learned_delay": found.largest_delay,
                "failed_delay": found.failed_delay,
                "is_lower_bound": found.is_lower_bound,
                "seconds": round(found.seconds, 1),
            }
        )
        learned = f"{'≥ ' if found.is_lower_bound else ''}{found.largest_delay}"
        print(f"{name:<28} {report.verdict:<10} {report.metrics.horizon:8.3g} {learned:>14} {found.seconds:8.1f}")
    steps = 300 if not args.quick else 10
    clipping = {
        "without": clipping_run(clip=False, steps=steps, delay=50),
        "with": clipping_run(clip=True, steps=steps, delay=50),
    }
    for arm, losses in clipping.items():
        finite = [v for v in losses if math.isfinite(v)]
        print(f"clipping {arm:<8} final loss {losses[-1]:.4g}, max loss {max(finite) if finite else float('nan'):.4g}")
    result = {
        "settings": {
            "seq_len": SEQ_LEN,
            "hidden_size": HIDDEN,
            "input_size": INPUTS,
            "task": "copy",
            "max_delay": max_delay,
            "threshold": 0.9,
            "lr": 1e-2,
            "batch_size": 32,
            **budget,
            "demo_models": list(DEMO_MODELS),
            "torch": torch.__version__,
            "generated": time.strftime("%Y-%m-%d"),
        },
        "rows": rows,
        "clipping": {"delay": 50, "lr": 0.05, "max_norm": 1.0, "losses": clipping},
    }
    if not args.quick:
        OUTPUT.write_text(json.dumps(encode_floats(result), indent=1) + "\n", encoding="utf-8")
        print(f"written to {OUTPUT}")


if __name__ == "__main__":
    main()

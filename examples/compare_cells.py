"""Compare how far gradient reaches back in an RNN, an LSTM, a GRU, a chrono-initialised LSTM and attention.

Run: python examples/compare_cells.py [--plot cells.png]
"""

from __future__ import annotations

import argparse

import gradhealth
from gradhealth.demo import build_demo_models
from gradhealth.formatting import format_number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=120, help="dependency length K")
    parser.add_argument("--plot", help="write a PNG overlaying the profiles (needs gradhealth[plot])")
    args = parser.parse_args()

    models = build_demo_models(seq_len=args.seq_len, hidden_size=32)
    reports = {
        name: gradhealth.audit(m, seq_len=args.seq_len, batch_size=8, probes="quick") for name, m in models.items()
    }
    for name, report in reports.items():
        m = report.metrics
        horizon = f"{m.horizon:.0f}" if m.horizon_reached else f"> {args.seq_len}"
        half_life = format_number(m.half_life, " steps")
        print(f"{name:12} {report.verdict:10} horizon {horizon:>6} steps  half-life {half_life}")
    if args.plot:
        from gradhealth.plot import plot_profiles, save_figure

        print(f"plot written to {save_figure(plot_profiles(reports).figure, args.plot)}")


if __name__ == "__main__":
    main()

"""Audit one recurrent model and print what gradhealth measured.

Run: python examples/quickstart.py
"""

from __future__ import annotations

import torch

import gradhealth


def main() -> None:
    torch.manual_seed(0)
    model = torch.nn.LSTM(input_size=8, hidden_size=32, batch_first=True)
    report = gradhealth.audit(model, seq_len=100, batch_size=8, probes="quick")
    print(report)
    if report.verdict == "vanishing":
        print(f"\nGradient from more than {report.metrics.horizon:.0f} steps back is below 1% of the lag-0 gradient.")


if __name__ == "__main__":
    main()

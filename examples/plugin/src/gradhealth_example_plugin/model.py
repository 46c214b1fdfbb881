"""The diagonal state-space recurrence: a bank of independent leaky integrators."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["DiagonalSSM"]


class DiagonalSSM(nn.Module):
    """``h_t = a ⊙ h_{t-1} + b ⊙ x_t``, ``y_t = c ⊙ h_t``, one decay ``a_i`` per channel.

    The module takes time-major input and an explicit initial state, ``forward(x[T, B, D], h0[B, D]) ->
    (y[T, B, D], h_T[B, D])``, which is why gradhealth needs this plugin's adapter to drive it.

    Under gradhealth's probe protocol ∂y_T/∂x_{T-k} = diag(c ⊙ b ⊙ a^k), so with equal decays the lag profile is
    exactly g(k) = a^k; with unequal decays the slowest channel sets the asymptotic rate ln(max a_i).

    Args:
        size: number of channels D (input and output size).
        decay: one decay for every channel, or one per channel.
    """

    def __init__(self, size: int, decay: float | Sequence[float] = 0.9) -> None:
        super().__init__()
        decays = [float(decay)] * size if isinstance(decay, (int, float)) else [float(a) for a in decay]
        if len(decays) != size:
            raise ValueError(f"DiagonalSSM got {len(decays)} decays for {size} channels; pass one or {size}")
        self.size = size
        self.decay = nn.Parameter(torch.tensor(decays))
        self.input_scale = nn.Parameter(torch.ones(size))
        self.output_scale = nn.Parameter(torch.ones(size))

    def forward(self, x: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = h0
        outputs = []
        for x_t in x:
            h = self.decay * h + self.input_scale * x_t
            outputs.append(self.output_scale * h)
        return torch.stack(outputs), h

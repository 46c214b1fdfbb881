"""Look-alike models of the recurrent models people write (issue 12), each small and float64-clean."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence


class LastStepClassifier(nn.Module):
    """A sequence classifier: GRU, then a linear head on the last hidden state -> [B, classes]."""

    def __init__(self, features: int = 3, hidden: int = 8, classes: int = 4) -> None:
        super().__init__()
        self.rnn = nn.GRU(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


class FinalStateEncoder(nn.Module):
    """An encoder returning its final state h_T of the last layer -> [B, hidden]."""

    def __init__(self, features: int = 3, hidden: int = 6) -> None:
        super().__init__()
        self.rnn = nn.LSTM(features, hidden, num_layers=2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.rnn(x)
        return h[-1]


class HorizonForecaster(nn.Module):
    """A forecaster: encodes the input window, predicts `horizon` future values -> [B, horizon, 1]."""

    def __init__(self, features: int = 1, hidden: int = 8, horizon: int = 5) -> None:
        super().__init__()
        self.horizon = horizon
        self.rnn = nn.GRU(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1]).unsqueeze(-1)


class DictForecaster(nn.Module):
    """A forecasting-library style model: forward takes a dict of tensors -> {"forecast": [B, horizon]}."""

    def __init__(self, hidden: int = 8, horizon: int = 4) -> None:
        super().__init__()
        self.rnn = nn.LSTM(2, hidden, batch_first=True)
        self.head = nn.Linear(hidden, horizon)

    def forward(self, windows: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        y, mask = windows["insample_y"], windows["insample_mask"]
        h = self.rnn(torch.cat([y * mask, mask], dim=-1))[0]
        return {"forecast": self.head(h[:, -1]), "hidden": h}


@dataclass
class Batch:
    """A dataclass input, as some libraries pass."""

    values: torch.Tensor
    scale: float


class PackedGRU(nn.Module):
    """A model that packs its padded input: forward(x, lengths) -> final hidden state [B, hidden]."""

    def __init__(self, features: int = 3, hidden: int = 6) -> None:
        super().__init__()
        self.rnn = nn.GRU(features, hidden, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h = self.rnn(packed)
        return h[-1]


class ComplexDiagonal(nn.Module):
    """A linear recurrent unit style layer: h_t = lambda * h_{t-1} + (x_re + i x_im), y_t = h_t (complex).

    Every mode has |lambda| = radius, so g(k) = radius^k exactly: the gradient at lag k of Re<v, y_T> with
    respect to (x_re, x_im) of mode j is (Re w, -Im w) with w = conj(v_j) lambda_j^k, of norm |v_j| radius^k.
    """

    def __init__(self, modes: int = 4, radius: float = 0.9) -> None:
        super().__init__()
        self.modes = modes
        self.input_size = 2 * modes
        phases = torch.linspace(0.1, 2.5, modes, dtype=torch.float64)
        self.lam = nn.Parameter(torch.polar(torch.full((modes,), radius, dtype=torch.float64), phases))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = torch.complex(x[..., : self.modes], x[..., self.modes :])
        h = torch.zeros(x.shape[0], self.modes, dtype=self.lam.dtype, device=x.device)
        out = []
        for t in range(x.shape[1]):
            h = self.lam * h + u[:, t]
            out.append(h)
        return torch.stack(out, dim=1)


class StreamingCell(nn.Module):
    """A streaming model: ONE step per call, its state kept in an attribute; forward(chunk, sr) -> [B, hidden]."""

    def __init__(self, features: int = 3, hidden: int = 5) -> None:
        super().__init__()
        self.cell = nn.Linear(features + hidden, hidden)
        self.hidden = hidden
        self.state = torch.zeros(0)

    @torch.jit.export
    def reset_states(self) -> None:
        self.state = torch.zeros(0)

    def forward(self, chunk: torch.Tensor, sr: int) -> torch.Tensor:
        if sr != 16000:
            raise ValueError("unsupported sample rate")
        state = self.state
        if state.numel() == 0:
            state = torch.zeros(chunk.shape[0], self.hidden, dtype=chunk.dtype, device=chunk.device)
        state = torch.tanh(self.cell(torch.cat([chunk, state], dim=-1)))
        self.state = state
        return state


class TimeMajorSRU(nn.Module):
    """An SRU-style layer that reads [T, B, D] and has no batch_first attribute."""

    def __init__(self, features: int = 3, hidden: int = 3) -> None:
        super().__init__()
        self.w = nn.Linear(features, 2 * hidden)
        self.hidden = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z, f = self.w(x).chunk(2, dim=-1)
        f = torch.sigmoid(f + 2.0)
        c = torch.zeros_like(z[0])
        out = []
        for t in range(x.shape[0]):
            c = f[t] * c + (1 - f[t]) * z[t]
            out.append(c)
        return torch.stack(out, dim=0)


class TimeMajorCfC(TimeMajorSRU):
    """The same recurrence with its own ``batch_first=False`` attribute, as CfC-style modules have."""

    def __init__(self) -> None:
        super().__init__()
        self.batch_first = False


class ZeroScaleNorm(nn.Module):
    """A GRU with a residual LayerNorm whose scale (and bias) start at zero, as some LMs initialise them."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(3, 6, batch_first=True)
        self.norm = nn.LayerNorm(6)
        nn.init.zeros_(self.norm.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.rnn(x)[0]
        return h + self.norm(h)


def radius_profile(radius: float, max_lag: int) -> list[float]:
    """The analytic g(k) = radius^k."""
    return [math.pow(radius, k) for k in range(max_lag + 1)]

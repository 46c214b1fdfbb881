"""Tiny reference models with known gradient profiles, shipped for tests, demos and plugin authors.

Each has an analytic lag profile under the probe protocol (float64):

- :class:`LinearRecurrence` ``h_t = W h_{t-1} + x_t``, ``y_t = h_t``: ∂y_T/∂x_{T-k} = W^k, so with W = ρQ
  (Q orthogonal) g(k) = ρ^k exactly; a non-normal W shows a transient peak above 1.
- :class:`DelayLine` of length n: ``y_t = x_t + x_{t-1} + ... + x_{t-n+1}``: g(k) = 1 for k < n, 0 after, so
  the horizon is exactly n.
- :func:`scaled_orthogonal_rnn`: ``nn.RNN(tanh)`` with W_hh = ρQ, W_ih = I, zero bias: g ≈ ρ^k for tiny inputs.
- :func:`constant_forget_lstm`: ``nn.LSTM`` whose only path through time is the cell with constant forget gate
  f = σ(b_f): g ≈ f^k for tiny inputs.
- :func:`constant_update_gru`: ``nn.GRU`` with constant update gate z: h' = (1 - z) n + z h gives g ≈ z^k.
- :func:`chrono_lstm`: an LSTM with chrono-initialised gate biases (Tallec & Ollivier 2018).
- :class:`CausalSelfAttention`: one causal self-attention layer without positional encoding: every output reaches
  every earlier input in one step, so its lag profile does not decay with the lag (no recurrence to vanish).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "CausalSelfAttention",
    "DelayLine",
    "LinearRecurrence",
    "chrono_lstm",
    "constant_forget_lstm",
    "constant_update_gru",
    "random_orthogonal",
    "scaled_orthogonal_rnn",
]


def random_orthogonal(size: int, *, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A seeded random orthogonal matrix (QR of a gaussian matrix, signs fixed)."""
    gen = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(size, size, generator=gen, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).to(dtype)


class LinearRecurrence(nn.Module):
    """``h_t = W h_{t-1} + x_t``, ``y_t = h_t``, batch-first ``[B, T, D] -> [B, T, D]``.

    Args:
        size: state and input size D.
        rho: scale of the recurrent matrix W = ρ·Q with Q a seeded random orthogonal matrix.
        weight: an explicit W (overrides ``rho``), e.g. a non-normal matrix.
        seed: seed of Q.

    The weight is kept in float64 so the analytic profile holds to ~1e-14 when probed in float64.
    """

    gradhealth_architecture = "recurrent"

    def __init__(self, size: int, rho: float = 0.9, *, weight: torch.Tensor | None = None, seed: int = 0) -> None:
        super().__init__()
        w = weight if weight is not None else rho * random_orthogonal(size, seed=seed)
        self.weight = nn.Parameter(w.to(torch.float64).clone())
        self.input_size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(x.shape[0], x.shape[2], dtype=x.dtype, device=x.device)
        outputs = []
        w_t = self.weight.t()
        for x_t in x.unbind(1):  # unbound once: x[:, t] per step makes the backward O(T^2)
            h = h @ w_t + x_t
            outputs.append(h)
        return torch.stack(outputs, dim=1)


class DelayLine(nn.Module):
    """A shift register of ``length`` steps whose output is the sum of its cells: horizon exactly ``length``."""

    gradhealth_architecture = "recurrent"

    def __init__(self, size: int, length: int) -> None:
        super().__init__()
        self.input_size = size
        self.length = length
        self.scale: torch.Tensor
        self.register_buffer("scale", torch.ones(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = torch.nn.functional.pad(x, (0, 0, self.length - 1, 0))
        return padded.unfold(1, self.length, 1).sum(-1) * self.scale


def _param(module: nn.Module, name: str) -> torch.Tensor:
    return module.get_parameter(name)


def _zero_(module: nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()


def scaled_orthogonal_rnn(size: int, rho: float, *, seed: int = 0) -> nn.RNN:
    """``nn.RNN(tanh)`` with W_hh = ρQ, W_ih = I and zero biases (g ≈ ρ^k in the near-linear regime)."""
    rnn = nn.RNN(size, size, batch_first=True)
    _zero_(rnn)
    with torch.no_grad():
        _param(rnn, "weight_hh_l0").copy_(rho * random_orthogonal(size, seed=seed, dtype=torch.float32))
        _param(rnn, "weight_ih_l0").copy_(torch.eye(size))
    return rnn


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def constant_forget_lstm(size: int, forget: float, *, seed: int = 0) -> nn.LSTM:
    """``nn.LSTM`` whose recurrent weights are zero and whose gates are constant (set by biases), with the
    forget gate f = ``forget``: the only path through time is c_t = f c_{t-1} + ..., so g ≈ f^k."""
    lstm = nn.LSTM(size, size, batch_first=True)
    _zero_(lstm)
    h = size
    with torch.no_grad():
        # PyTorch gate order: input, forget, cell (g), output.
        _param(lstm, "bias_ih_l0")[:h] = _logit(0.5)
        _param(lstm, "bias_ih_l0")[h : 2 * h] = _logit(forget)
        _param(lstm, "bias_ih_l0")[3 * h :] = _logit(0.5)
        _param(lstm, "weight_ih_l0")[2 * h : 3 * h] = random_orthogonal(size, seed=seed, dtype=torch.float32)
    return lstm


def constant_update_gru(size: int, update: float, *, seed: int = 0) -> nn.GRU:
    """``nn.GRU`` with constant update gate z = ``update`` and no recurrent weights: h' = (1 - z) n + z h with
    n = tanh(W_in x), so g ≈ z^k."""
    gru = nn.GRU(size, size, batch_first=True)
    _zero_(gru)
    h = size
    with torch.no_grad():
        # PyTorch gate order: reset, update (z), new (n).
        _param(gru, "bias_ih_l0")[h : 2 * h] = _logit(update)
        _param(gru, "weight_ih_l0")[2 * h :] = random_orthogonal(size, seed=seed, dtype=torch.float32)
    return gru


def chrono_lstm(input_size: int, hidden_size: int, max_timescale: int, *, seed: int = 0, **kwargs: object) -> nn.LSTM:
    """An ``nn.LSTM`` with chrono initialisation (Tallec & Ollivier 2018): forget bias log(u), input bias
    -log(u), with u ~ U[1, max_timescale - 1] per unit, so unit timescales 1/(1 - f) ≈ 1 + u span up to
    ``max_timescale`` steps."""
    torch_gen = torch.Generator().manual_seed(seed)
    lstm = nn.LSTM(input_size, hidden_size, batch_first=True, **kwargs)
    h = hidden_size
    with torch.no_grad():
        for name, bias in lstm.named_parameters():
            if not name.startswith("bias"):
                continue
            bias.zero_()
            if name.startswith("bias_ih"):
                u = 1 + torch.rand(h, generator=torch_gen) * (max_timescale - 2)
                bias[h : 2 * h] = torch.log(u)
                bias[:h] = -torch.log(u)
    return lstm


class CausalSelfAttention(nn.Module):
    """One causal self-attention layer (one head, no positional encoding), batch-first ``[B, T, D] -> [B, T, H]``.

    ``y_t = W_o Σ_{s ≤ t} softmax_s(q_t · k_s / sqrt(H)) v_s`` with q, k, v linear maps of the input: the path
    from x_s to y_t is one step long for every s ≤ t, so the gradient does not decay with the lag k = t - s (it
    is of order 1/t, spread over the window).

    Args:
        input_size: features per step D.
        hidden_size: width H of queries, keys, values and the output.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.qkv = nn.Linear(input_size, 3 * hidden_size)
        self.out = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return self.out(nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True))

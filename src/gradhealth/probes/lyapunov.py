"""The Lyapunov probe: the top-k Lyapunov exponents of the state map along a driven trajectory (QR method).

For the state map s_t = F(s_{t-1}, x_t) with Jacobians J_t = ∂s_t/∂s_{t-1}, the QR method (Benettin et al. 1980;
Shimada & Nagashima 1979) carries an orthonormal frame Q (n x k) along the trajectory: J_t Q_{t-1} = Q_t R_t, and
λ_i = mean_t ln|R_t[i, i]| over the measured steps (after ``burn_in`` steps that align the frame). λ_1 is the
asymptotic growth rate of the largest perturbation, so it equals the lag profile's decay_rate_tail: for a linear
recurrence W = ρQ every exponent is ln ρ; for a diagonal W they are the log-magnitudes of its entries.

Each layer and direction of a stacked model has its own exponents (the Jacobian of the whole stack is block
triangular, so its spectrum is the union of the layers'); ``top_exponent`` is the largest. Products J_t Q are
directional derivatives, never full Jacobians: for the built-in cells (nn.RNN/LSTM/GRU and their *Cell) the
cell's hand-written Jacobian applied to the k columns of every sample at once (one product with W_hh per step,
``LayerWeights.jacobian_columns``); for a user's step function, forward-mode AD (``torch.func.jvp``). The LSTM's
state is the pair (h, c).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from gradhealth.adapters import Adapter
from gradhealth.findings import make_finding
from gradhealth.formatting import format_number
from gradhealth.probes._recurrent import (
    LayerRun,
    driven_runs,
    find_recurrent_layers,
    flatten_state,
    unflatten_state,
    unrolled_model,
)
from gradhealth.probes.base import Probe, ProbeContext, input_gradients_only
from gradhealth.report import Finding

__all__ = ["LayerExponents", "Lyapunov", "LyapunovResult", "lyapunov_exponents", "run_exponents"]

StepMap = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class LayerExponents:
    """The exponents of one layer and direction, largest first (per step, natural log)."""

    layer: str
    direction: str
    state_size: int
    exponents: list[float]
    steps: int


@dataclass
class LyapunovResult:
    """Exponents per layer and direction; ``top_exponent`` is the largest (``None`` if none was measured)."""

    layers: list[LayerExponents]
    top_exponent: float | None
    timescale: float | None
    top_k: int
    notes: list[str] = field(default_factory=list)


def lyapunov_exponents(
    step: StepMap,
    inputs: torch.Tensor,
    states: torch.Tensor,
    frame: torch.Tensor,
    burn_in: int,
    *,
    is_rowwise: bool = False,
) -> torch.Tensor:
    """Top-k exponents, averaged over the batch, by the QR method.

    Args:
        step: the flat state map ``(x_t [B, D], s [B, n]) -> s' [B, n]``.
        inputs: ``[B, T, D]`` inputs driving the trajectory.
        states: ``[B, T, n]`` the state *before* each step (states[:, t] is s_{t-1}).
        frame: ``[B, n, k]`` the initial orthonormal frame.
        burn_in: steps that only align the frame (not averaged).
        is_rowwise: the step maps each batch row on its own (the cell equations do), so the k tangent
            vectors can ride as k copies of the batch through ONE forward-mode pass instead of k passes.

    Returns:
        ``[k]`` exponents, largest first (float64); all NaN when the trajectory or its Jacobians are not finite.
    """

    def image(t: int, q: torch.Tensor) -> torch.Tensor:
        return _frame_image(step, inputs[:, t], states[:, t], q, is_rowwise=is_rowwise)

    return _qr_exponents(image, inputs.shape[1], frame, burn_in)


def run_exponents(run: LayerRun, frame: torch.Tensor, burn_in: int) -> torch.Tensor:
    """Top-k exponents of one re-run layer and direction, like :func:`lyapunov_exponents`, with the cell's
    hand-written Jacobian (:meth:`~gradhealth.probes._recurrent.LayerWeights.jacobian_columns`) in place of
    forward-mode AD: the input projection is one product for the whole sequence, the states are the run's own,
    and each step costs one product of W_hh with the k columns of every sample.

    Args:
        run: the layer's run (its inputs and the state after each step).
        frame: ``[B, n, k]`` the initial orthonormal frame, n the flattened state's width.
        burn_in: steps that only align the frame (not averaged).
    """
    w = run.weights
    before = [run.initial, *run.states[:-1]]
    projected = w.project(run.inputs.transpose(0, 1))  # [T, B, ...]: time-major, so each step's slice is contiguous
    factors: dict[str, torch.Tensor] = {}

    def image(t: int, q: torch.Tensor) -> torch.Tensor:
        offset = t % _FACTOR_BLOCK
        if offset == 0:  # the Jacobian factors of the next block of steps, from one product with W_hh
            block = before[t : t + _FACTOR_BLOCK]
            factors.update(w.jacobian_factors(projected[t : t + len(block)], _stacked(block)))
        return w.jacobian_columns({name: f[offset] for name, f in factors.items()}, q)

    return _qr_exponents(image, len(before), frame, burn_in)


#: steps whose Jacobian factors are formed together (fewer, larger products; memory bounded by the block).
_FACTOR_BLOCK = 32


def _stacked(states: list[Any]) -> Any:
    """States of consecutive steps stacked along a new leading (time) dimension."""
    if isinstance(states[0], tuple):
        return tuple(torch.stack(parts) for parts in zip(*states, strict=True))
    return torch.stack(states)


def _qr_exponents(
    image: Callable[[int, torch.Tensor], torch.Tensor], steps: int, frame: torch.Tensor, burn_in: int
) -> torch.Tensor:
    """The QR method over ``steps`` steps, ``image(t, q)`` being J_t q ``[B, n, k]``."""
    q = frame
    total = torch.zeros(frame.shape[-1], dtype=torch.float64)
    measured = 0
    with warnings.catch_warnings():
        # torch loads its forward-AD decompositions through torch.jit.script on first use: not the user's concern
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script`", category=DeprecationWarning)
        for t in range(steps):
            columns = image(t, q)
            if not _all_finite(columns):
                # NaN/Inf states or weights: no exponent exists, and LAPACK would refuse or print errors.
                return torch.full((frame.shape[-1],), math.nan, dtype=torch.float64)
            q, r = _qr(columns)
            if t >= burn_in:
                diag = torch.diagonal(r, dim1=-2, dim2=-1).abs().to(torch.float64)
                total += torch.log(diag).mean(0).cpu()
                measured += 1
    exps = total / max(1, measured)
    return exps.sort(descending=True).values


def _frame_image(step: StepMap, x: torch.Tensor, s: torch.Tensor, q: torch.Tensor, *, is_rowwise: bool) -> torch.Tensor:
    """J q: the step's Jacobian at ``s`` applied to every column of the frame ``q`` ``[B, n, k]``."""
    if not is_rowwise:
        step_t = functools.partial(_step_at, step, x)
        return torch.stack([torch.func.jvp(step_t, (s,), (q[..., j],))[1] for j in range(q.shape[-1])], dim=-1)
    batch, n, k = q.shape
    xs = x.unsqueeze(1).expand(batch, k, *x.shape[1:]).reshape(batch * k, *x.shape[1:])
    ss = s.unsqueeze(1).expand(batch, k, n).reshape(batch * k, n)
    tangents = q.transpose(1, 2).reshape(batch * k, n)
    image = torch.func.jvp(functools.partial(_step_at, step, xs), (ss,), (tangents,))[1]
    return image.reshape(batch, k, n).transpose(1, 2)


class Lyapunov(Probe):
    """Top-k Lyapunov exponents of the state map (QR method on per-step Jacobians along a driven trajectory)."""

    name = "lyapunov"
    description = "top-k Lyapunov exponents of the state map by the QR method along a driven trajectory"

    #: number of exponents (at most the state size); ``None``: the audit's ``lyapunov_top_k`` setting.
    top_k: int | None = None

    def __init__(self, *, top_k: int | None = None) -> None:
        if top_k is not None:
            self.top_k = top_k

    def skip_reason(self, adapter: Adapter) -> str | None:
        if unrolled_model(adapter) is None and not find_recurrent_layers(adapter.module):
            return (
                "needs a state map: nn.RNN/LSTM/GRU, a *Cell, or a gradhealth.Unrolled step function; this model "
                "is a plain sequence module"
            )
        return None

    def run(self, ctx: ProbeContext) -> LyapunovResult:
        burn_in = ctx.config.effective_burn_in
        layers: list[LayerExponents] = []
        notes: list[str] = []
        with input_gradients_only(ctx.module), torch.no_grad():
            if unrolled_model(ctx.adapter) is not None:
                layers, notes = self._unrolled(ctx, burn_in)
            else:
                found, notes = driven_runs(ctx, self.name)
                for _, runs in found:
                    for run in runs:
                        w = run.weights
                        n = flatten_state(run.initial)[0].shape[-1]
                        direction = "backward" if w.is_reverse else "forward"
                        frame, start = self._frame(ctx, w.name, direction, run.inputs, n, burn_in)
                        exps = run_exponents(run, frame, start)
                        layers.append(self._entry(w.name, direction, n, exps, run.inputs.shape[1], burn_in))
        tops = [entry.exponents[0] for entry in layers if entry.exponents]
        top = math.nan if any(math.isnan(t) for t in tops) else max(tops, default=None)
        timescale = _timescale(top)
        k = max((len(entry.exponents) for entry in layers), default=0)
        return LyapunovResult(layers, top, timescale, k, notes)

    def _unrolled(self, ctx: ProbeContext, burn_in: int) -> tuple[list[LayerExponents], list[str]]:
        model = unrolled_model(ctx.adapter)
        assert model is not None
        inputs = ctx.make_batch(self.name).inputs
        state = model.initial_state(inputs.shape[0], inputs.dtype, inputs.device)
        before = []
        for x_t in inputs.unbind(1):
            before.append(state)
            state = model.step(x_t, state)[1]
        if not all(isinstance(p, torch.Tensor) and p.dim() >= 2 for s in before[1:] for p in _parts(s)):
            return [], [f"the step's state is {type(state).__name__}, not batched tensors [B, ...]; not measured"]
        like = before[1]
        shapes = [tuple(p.shape) for p in _parts(like)]

        def flat_step(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            return flatten_state(model.step(x, unflatten_state(s, shapes, like))[1])[0]

        # The first step may start from a state without a batch dimension (or None): begin at step 1.
        states = torch.stack([flatten_state(s)[0] for s in before[1:]], dim=1)
        entry = self._measure(ctx, "step", "forward", flat_step, inputs[:, 1:], states, max(0, burn_in - 1))
        return [entry], []

    def _measure(
        self,
        ctx: ProbeContext,
        layer: str,
        direction: str,
        step: StepMap,
        inputs: torch.Tensor,
        states: torch.Tensor,
        burn_in: int,
    ) -> LayerExponents:
        n = states.shape[-1]
        frame, start = self._frame(ctx, layer, direction, states, n, burn_in)
        exps = lyapunov_exponents(step, inputs, states, frame, start)
        return self._entry(layer, direction, n, exps, inputs.shape[1], burn_in)

    def _frame(
        self, ctx: ProbeContext, layer: str, direction: str, like: torch.Tensor, n: int, burn_in: int
    ) -> tuple[torch.Tensor, int]:
        """The initial frame ``[B, n, k]`` (orthonormalised Gaussian, from the layer's own stream) and the
        first measured step."""
        k = min(self.top_k or ctx.config.lyapunov_top_k, n)
        gaussian = ctx.randn(f"{self.name}/{layer}/{direction}", (like.shape[0], n, k), like=like)
        return _qr(gaussian)[0], min(burn_in, like.shape[1] - 1)

    @staticmethod
    def _entry(layer: str, direction: str, n: int, exps: torch.Tensor, steps: int, burn_in: int) -> LayerExponents:
        return LayerExponents(layer, direction, n, exps.tolist(), steps - min(burn_in, steps - 1))

    def findings(self, result: LyapunovResult, ctx: ProbeContext) -> list[Finding]:
        found = []
        for entry in result.layers:
            if entry.exponents and math.isnan(entry.exponents[0]):
                message = f"{entry.layer} ({entry.direction}): the state trajectory or its Jacobians hold NaN or Inf"
                found.append(
                    make_finding("GH204", message, probe=self.name, direction=entry.direction, layer=entry.layer)
                )
            elif entry.exponents and entry.exponents[0] > 0:
                message = (
                    f"{entry.layer}: top Lyapunov exponent λ1 = {format_number(entry.exponents[0])} per step > 0: "
                    f"nearby trajectories separate by e^{format_number(entry.exponents[0])} per step"
                )
                found.append(
                    make_finding("GH203", message, probe=self.name, direction=entry.direction, layer=entry.layer,
                                 exponent=entry.exponents[0])
                )  # fmt: skip
        return found


def _timescale(top: float | None) -> float | None:
    if top is None or math.isnan(top):
        return None if top is None else math.nan
    return -1 / top if top < 0 else math.inf


#: dtypes torch.linalg.qr has no kernel for ("geqrf_cpu" not implemented for 'Half').
_NO_QR_DTYPES = frozenset({torch.float16, torch.bfloat16})


def _qr(columns: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """QR of a batch of frames. Half-precision frames are orthonormalised in float32 and Q is cast back, so the
    Jacobian-vector products still run in the probe dtype; the rounding of Q moves each ln|R_ii| by about one
    unit roundoff of that dtype, below what a half-precision trajectory resolves anyway."""
    if columns.dtype in _NO_QR_DTYPES:
        q, r = torch.linalg.qr(columns.to(torch.float32))
        return q.to(columns.dtype), r
    return torch.linalg.qr(columns)


def _all_finite(values: torch.Tensor) -> bool:
    """No NaN or Inf in ``values``. x * 0 is ±0 for finite x and NaN otherwise, and a sum with a NaN term is NaN:
    exact in IEEE arithmetic, and several times faster than ``isfinite(...).all()``."""
    return bool((values * 0).sum() == 0)


def _step_at(step: StepMap, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return step(x, s)


def _parts(state: Any) -> list[torch.Tensor]:
    return list(state) if isinstance(state, (tuple, list)) else [state]

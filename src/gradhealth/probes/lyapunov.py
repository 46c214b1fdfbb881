"""The Lyapunov probe: the top-k Lyapunov exponents of the state map along a driven trajectory (QR method).

For the state map s_t = F(s_{t-1}, x_t) with Jacobians J_t = ∂s_t/∂s_{t-1}, the QR method (Benettin et al. 1980;
Shimada & Nagashima 1979) carries an orthonormal frame Q (n x k) along the trajectory: J_t Q_{t-1} = Q_t R_t, and
λ_i = mean_t ln|R_t[i, i]| over the measured steps (after ``burn_in`` steps that align the frame). λ_1 is the
asymptotic growth rate of the largest perturbation, so it equals the lag profile's decay_rate_tail: for a linear
recurrence W = ρQ every exponent is ln ρ; for a diagonal W they are the log-magnitudes of its entries.

Each layer and direction of a stacked model has its own exponents (the Jacobian of the whole stack is block
triangular, so its spectrum is the union of the layers'); ``top_exponent`` is the largest. Products J_t Q are
directional derivatives, never full Jacobians: for the built-in cells (nn.RNN/LSTM/GRU and their *Cell) the
cell's hand-written Jacobian, formed from each step's gates while the layer is re-run (``driven_runs``' observer,
so the trajectory is computed once) and applied to the k columns of every sample at once (one product with W_hh
per step: ``LayerWeights.jacobian_factors`` and ``jacobian_columns``); for a user's step function, forward-mode AD
(``torch.func.jvp``). The LSTM's state is the pair (h, c).
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
    LayerWeights,
    State,
    driven_runs,
    find_recurrent_layers,
    flatten_state,
    unflatten_state,
    unrolled_model,
)
from gradhealth.probes.base import Probe, ProbeContext, input_gradients_only
from gradhealth.report import Finding

__all__ = ["LayerExponents", "Lyapunov", "LyapunovResult", "lyapunov_exponents"]

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

    iteration = _QRIteration(frame)
    with warnings.catch_warnings():
        # torch loads its forward-AD decompositions through torch.jit.script on first use: not the user's concern
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script`", category=DeprecationWarning)
        for x_t, s in zip(inputs.unbind(1), states.unbind(1), strict=True):
            if iteration.failed:
                break
            iteration.advance(_frame_image(step, x_t, s, iteration.q, is_rowwise=is_rowwise))
    return iteration.exponents(burn_in)


class _QRIteration:
    """The QR method one step at a time: J_t Q_{t-1} = Q_t R_t, keeping each step's batch mean of ln|R_t[i, i]|."""

    def __init__(self, frame: torch.Tensor) -> None:
        self.q = frame
        self.logs: list[torch.Tensor] = []
        self.failed = False

    def advance(self, columns: torch.Tensor) -> None:
        """One step, ``columns`` being J_t Q_{t-1} ``[B, n, k]``."""
        if self.failed:
            return
        if not _all_finite(columns):
            # NaN/Inf states or weights: no exponent exists, and LAPACK would refuse or print errors.
            self.failed = True
            return
        self.q, r = _qr(columns)
        diag = torch.diagonal(r, dim1=-2, dim2=-1).abs().to(torch.float64)
        self.logs.append(torch.log(diag).mean(0))

    def exponents(self, burn_in: int) -> torch.Tensor:
        """``[k]`` exponents, largest first (float64): the mean over the steps after ``burn_in``; all NaN after a
        non-finite step."""
        if self.failed:
            return torch.full((self.q.shape[-1],), math.nan, dtype=torch.float64)
        total = torch.zeros(self.q.shape[-1], dtype=torch.float64)
        for log in self.logs[burn_in:]:
            total += log.cpu()
        return (total / max(1, len(self.logs[burn_in:]))).sort(descending=True).values


class _Follower:
    """The QR iteration of one built-in layer and direction, fed by :func:`driven_runs`'s observer as the layer
    is re-run: the state is followed from each step's gates (``LayerWeights.state_from_gates``), and J_t Q is the
    cell's hand-written Jacobian (``LayerWeights.jacobian_factors`` from the same gates, then
    ``LayerWeights.jacobian_columns``: one product of W_hh with the k columns of every sample). The trajectory is
    computed once, and nothing is stored per step but k numbers."""

    def __init__(self, weights: LayerWeights, state: State, frame: torch.Tensor) -> None:
        self.weights = weights
        self.state = state  # the state before the next step
        self.iteration = _QRIteration(frame)
        self.steps = 0

    def advance(self, gates: dict[str, torch.Tensor]) -> None:
        """One step of the layer, given its gates."""
        w = self.weights
        if not self.iteration.failed:
            self.iteration.advance(w.jacobian_columns(w.jacobian_factors(self.state, gates), self.iteration.q))
        self.state = w.state_from_gates(self.state, gates)
        self.steps += 1


def _all_finite(values: torch.Tensor) -> bool:
    """No NaN or Inf in ``values``. x * 0 is ±0 for finite x and NaN otherwise, and a sum with a NaN term is NaN:
    exact in IEEE arithmetic, and several times faster than ``isfinite(...).all()``."""
    return bool((values * 0).sum() == 0)


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
                followers: dict[str, _Follower] = {}

                def observe(w: LayerWeights, t: int, gates: dict[str, torch.Tensor]) -> None:
                    if t == 0:
                        like = next(iter(gates.values()))
                        state = w.initial_state(like.shape[0], like)
                        n = flatten_state(state)[0].shape[-1]
                        frame = self._frame(ctx, w.name, _direction(w), like.shape[0], n, like)
                        followers[w.name] = _Follower(w, state, frame)
                    followers[w.name].advance(gates)

                found, notes = driven_runs(ctx, self.name, observe=observe)
                for _, runs in found:
                    for run in runs:
                        w = run.weights
                        follower = followers[w.name]
                        assert follower.steps == len(run.states)
                        start = min(burn_in, follower.steps - 1)
                        exps = follower.iteration.exponents(start)
                        n = flatten_state(run.initial)[0].shape[-1]
                        layers.append(LayerExponents(w.name, _direction(w), n, exps.tolist(), follower.steps - start))
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
        batch, steps, n = states.shape
        frame = self._frame(ctx, layer, direction, batch, n, states)
        start = min(burn_in, steps - 1)
        exps = lyapunov_exponents(step, inputs, states, frame, start)
        return LayerExponents(layer, direction, n, exps.tolist(), steps - start)

    def _frame(
        self, ctx: ProbeContext, layer: str, direction: str, batch: int, n: int, like: torch.Tensor
    ) -> torch.Tensor:
        """The initial frame ``[B, n, k]``: an orthonormalised Gaussian from the layer's own random stream."""
        k = min(self.top_k or ctx.config.lyapunov_top_k, n)
        return _qr(ctx.randn(f"{self.name}/{layer}/{direction}", (batch, n, k), like=like))[0]

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


def _direction(w: LayerWeights) -> str:
    return "backward" if w.is_reverse else "forward"


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


def _step_at(step: StepMap, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return step(x, s)


def _parts(state: Any) -> list[torch.Tensor]:
    return list(state) if isinstance(state, (tuple, list)) else [state]

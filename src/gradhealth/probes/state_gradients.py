"""The state-gradients probe: exact ∂L/∂h_{t-k} (and ∂L/∂c_{t-k} for the LSTM) by stepping the model.

Protocol: the lag profile's, with the loss on the recurrent layer's own output: L = Σ_b <v_b, o_b[t_out]> for a
fresh gaussian v_b (t_out = T - 1, or step 0 for a reverse direction). Each layer and direction is re-run one
step at a time with every state kept in the autograd graph, and one backward pass per direction gives the total
derivative with respect to every state at once. The ratio r(k) = S(k)/S(0), S(k) = sqrt(mean_b ‖∂L/∂s_b[t_out -
k]‖²), is then free of the input map: for a GRU whose update gate is a constant z and whose candidate ignores h,
∂h_t/∂h_{t-1} = z·I, so r(k) = z^k for any input.

Supported: ``nn.RNN/LSTM/GRU`` (any options) and ``*Cell`` modules, also inside larger models (the loss is then
taken on that module's output), and :class:`gradhealth.Unrolled` step functions whose state is a tensor or a
tuple of tensors (the loss is then on the step's output y).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from gradhealth.adapters import Adapter
from gradhealth.findings import make_finding
from gradhealth.formatting import format_number
from gradhealth.metrics import resolution_floor, summarize_profile
from gradhealth.probes._bptt import SavedDenormals, backward_scope, measure_scaled, step_norms
from gradhealth.probes._recurrent import LayerRun, driven_runs, find_recurrent_layers, unrolled_model
from gradhealth.probes.base import Probe, ProbeContext, input_gradients_only
from gradhealth.report import Finding

__all__ = ["StateGradients", "StateGradientsResult", "StateProfile", "runs_state_norms", "state_norms"]


@dataclass
class StateProfile:
    """The profile of ∂L/∂s_{t_out - k} for one state of one layer and direction.

    Attributes:
        layer: layer name.
        direction: ``forward`` or ``backward``.
        state: ``h``, ``c`` or ``state[i]`` for a tuple state of a step function.
        grad_norm: S(k) for k = 0..K.
        ratio: S(k)/S(0).
        decay_rate: least-squares slope of ln ratio over resolved lags.
        decay_rate_tail: the same over the second half.
        horizon: lags until the ratio stays below ε (see the lag profile).
        horizon_reached: whether that happens within K.
        peak_gain: the largest ratio.
        first_nonfinite_lag: the first lag with a NaN/Inf gradient.
    """

    layer: str
    direction: str
    state: str
    grad_norm: list[float]
    ratio: list[float]
    decay_rate: float | None
    decay_rate_tail: float | None
    horizon: float
    horizon_reached: bool
    peak_gain: float
    first_nonfinite_lag: int | None


@dataclass
class StateGradientsResult:
    """One :class:`StateProfile` per state, layer and direction."""

    profiles: list[StateProfile]
    notes: list[str] = field(default_factory=list)


def _parts(state: Any) -> list[torch.Tensor]:
    return list(state) if isinstance(state, (tuple, list)) else [state]


def state_norms(
    loss: torch.Tensor, states: list[Any], max_lag: int, *, device: torch.device, flush: bool = False
) -> list[torch.Tensor]:
    """Per-sample norms ``[B, K + 1]`` of ∂L/∂s for each part of the state, lag 0 being the last state.

    The backward pass flushes denormals when ``flush`` (pass False when the forward saved any: see
    :class:`~gradhealth.probes._bptt.SavedDenormals`); the norms are taken outside that scope."""
    return runs_state_norms(loss, [states], max_lag, device=device, flush=flush)


def runs_state_norms(
    loss: torch.Tensor, runs: list[list[Any]], max_lag: int, *, device: torch.device, flush: bool = False
) -> list[torch.Tensor]:
    """:func:`state_norms` for the states of several runs (layers) at once, from ONE backward pass: the norms
    of every part of every run's state, run by run."""
    windows = [states[len(states) - 1 - max_lag :][::-1] for states in runs]
    tensors = [p for window in windows for s in window for p in _parts(s)]
    with backward_scope(device, flush=flush):
        grads = list(torch.autograd.grad(loss, tensors, allow_unused=True, retain_graph=True))
    grads = [torch.zeros_like(like) if g is None else g for g, like in zip(grads, tensors, strict=True)]
    norms = []
    for window in windows:
        n_parts = len(_parts(window[0]))
        mine, grads = grads[: len(window) * n_parts], grads[len(window) * n_parts :]
        for i in range(n_parts):
            lagged = torch.stack([g.reshape(g.shape[0], -1) for g in mine[i::n_parts]], dim=1)
            norms.append(step_norms(lagged))  # outside the flush scope: norms resolve to the floor
    return norms


def _scaled_norms(
    ctx: ProbeContext, seed: torch.Tensor, measure: Callable[[float], list[torch.Tensor]]
) -> tuple[list[torch.Tensor], float]:
    """The norms ``measure(scale)`` gives for the loss times ``scale`` at the scale the input-gradient recipe
    would choose (:func:`~gradhealth.probes._bptt.measure_scaled`), divided back, and their resolution floor."""
    floor = resolution_floor(ctx.dtype_name)
    widths: list[int] = []

    def joined(scale: float) -> torch.Tensor:
        parts = measure(scale)
        widths[:] = [n.shape[1] for n in parts]
        return torch.cat(parts, dim=1)

    norms, scale = measure_scaled(joined, seed, floor, ctx.dtype_name)
    return [n / scale for n in torch.split(norms, widths, dim=1)], floor / scale


class StateGradients(Probe):
    """Exact ∂L/∂h_{t-k} and ∂L/∂c_{t-k} profiles, by stepping the model one step at a time."""

    name = "state_gradients"
    description = "exact dL/dh_{t-k} and dL/dc_{t-k} profiles by stepping the model one step at a time"

    def skip_reason(self, adapter: Adapter) -> str | None:
        if unrolled_model(adapter) is None and not find_recurrent_layers(adapter.module):
            return (
                "needs a model it can step: nn.RNN/LSTM/GRU, a *Cell, or a gradhealth.Unrolled step function; "
                "this model is a plain sequence module"
            )
        return None

    def run(self, ctx: ProbeContext) -> StateGradientsResult:
        if unrolled_model(ctx.adapter) is not None:
            return self._run_unrolled(ctx)
        saved = SavedDenormals()
        with saved:
            # the profile reaches K lags back from the last step: the burn-in needs no graph
            found, notes = driven_runs(ctx, self.name, track_states=True, graph_from=ctx.config.effective_burn_in)
        flush = not saved.found
        profiles = []
        with torch.enable_grad():
            for layer, runs in found:
                tops = self._top_runs(runs)
                for top in tops:
                    direction = "backward" if top.weights.is_reverse else "forward"
                    out = top.weights.output(top.states[-1])
                    v = ctx.randn(f"{self.name}/{layer.label}/{direction}", tuple(out.shape), like=out)
                    loss = (out * v).sum()
                    same = [run for run in runs if run.weights.is_reverse == top.weights.is_reverse]

                    def measure(scale: float, loss: torch.Tensor = loss, same: list[LayerRun] = same) -> list[Any]:
                        sequences = [run.states for run in same]
                        return runs_state_norms(
                            loss * scale, sequences, ctx.config.seq_len, device=ctx.device, flush=flush
                        )

                    norms, floor = _scaled_norms(ctx, v, measure)
                    for run in same:
                        names = ["h", "c"] if run.weights.kind == "LSTM" else ["h"]
                        profiles += [self._profile(ctx, run.weights.name, direction, n, norms.pop(0), floor)
                                     for n in names]  # fmt: skip
        return StateGradientsResult(profiles, notes)

    @staticmethod
    def _top_runs(runs: list[LayerRun]) -> list[LayerRun]:
        directions = 2 if len(runs) > 1 and runs[1].weights.is_reverse else 1
        return runs[-directions:]

    def _run_unrolled(self, ctx: ProbeContext) -> StateGradientsResult:
        model = unrolled_model(ctx.adapter)
        assert model is not None
        inputs = ctx.make_batch(self.name).inputs
        saved = SavedDenormals()
        with input_gradients_only(ctx.module), torch.enable_grad(), saved:
            state = model.initial_state(inputs.shape[0], inputs.dtype, inputs.device)
            states, y = [], None
            for t, x_t in enumerate(inputs.unbind(1)):  # unbound once, as the adapters do
                y, state = model.step(x_t, state)
                parts = _parts(state)
                if not all(isinstance(p, torch.Tensor) and p.dim() >= 1 for p in parts):
                    return StateGradientsResult([], [f"the step's state is {type(state).__name__}, not tensors"])
                if t == 0:  # make the first state a graph node even when the step ignores its input
                    parts = [p if p.requires_grad else p.clone().requires_grad_(True) for p in parts]
                    state = type(state)(parts) if isinstance(state, (tuple, list)) else parts[0]
                states.append(state)
            assert isinstance(y, torch.Tensor)
            v = ctx.randn(f"{self.name}/forward", tuple(y.shape), like=y)
            loss = (y * v).sum()
            flush = not saved.found
            norms, floor = _scaled_norms(
                ctx,
                v,
                lambda scale: state_norms(loss * scale, states, ctx.config.seq_len, device=ctx.device, flush=flush),
            )
        names = ["h"] if len(norms) == 1 else [f"state[{i}]" for i in range(len(norms))]
        return StateGradientsResult(
            [self._profile(ctx, "step", "forward", n, s, floor) for n, s in zip(names, norms, strict=True)]
        )

    @staticmethod
    def _profile(
        ctx: ProbeContext, layer: str, direction: str, name: str, norms: torch.Tensor, floor: float
    ) -> StateProfile:
        cfg = ctx.config
        s = summarize_profile(
            norms.numpy(), dtype=ctx.dtype_name, floor=floor, eps=cfg.eps, explode_threshold=cfg.explode_threshold
        )
        m = s.metrics
        return StateProfile(
            layer, direction, name, s.profile.grad_norm, s.profile.g, m.decay_rate, m.decay_rate_tail, m.horizon,
            m.horizon_reached, m.peak_gain, m.first_nonfinite_lag,
        )  # fmt: skip

    def findings(self, result: StateGradientsResult, ctx: ProbeContext) -> list[Finding]:
        found = []
        for p in result.profiles:
            where = {"probe": self.name, "direction": p.direction, "layer": p.layer, "state": p.state}
            if p.first_nonfinite_lag is not None:
                message = f"{p.layer}: ∂L/∂{p.state} is NaN/Inf from lag {p.first_nonfinite_lag}"
                found.append(make_finding("GH404", message, **where))
            elif p.peak_gain >= ctx.config.explode_threshold:
                message = f"{p.layer}: ∂L/∂{p.state} grows to {format_number(p.peak_gain)}x its lag-0 value within K"
                found.append(make_finding("GH403", message, **where, peak_gain=p.peak_gain))
        return found

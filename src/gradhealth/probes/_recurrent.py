"""Recurrent layers inside a model, and stepping them one time step at a time with explicit cell math.

The probes that need the state of a recurrent model (gates, state gradients, Lyapunov exponents) find every
``nn.RNN/LSTM/GRU`` and ``*Cell`` in the probe copy, capture the input each one receives during one ordinary
forward pass (forward pre-hooks, removed in ``finally``), and re-run each layer and direction step by step with
the same equations PyTorch uses:

- RNN: h' = φ(W_ih x + b_ih + W_hh h + b_hh), φ = tanh or relu;
- LSTM: (i, f, g, o) = (σ, σ, tanh, σ)(W_ih x + b_ih + W_hh h + b_hh); c' = f c + i g; h' = W_hr (o tanh c');
- GRU: r, z = σ(...); n = tanh(W_in x + b_in + r (W_hn h + b_hn)); h' = (1 - z) n + z h.

Stacked layers feed the next layer the concatenated outputs of both directions, as PyTorch does; the initial
state is zero.

Where no graph is needed, :func:`run_layer` can instead run each layer and direction with PyTorch's own fused
kernel (``fused=True``), which gives every hidden state h_t in one call, and rebuild every gate from them in
bulk: the pre-activations W_ih x_t + b_ih + W_hh h_{t-1} + b_hh of all steps as one matrix product, the gates
elementwise, and the LSTM cell state by its elementwise recurrence c_t = f_t c_{t-1} + i_t g_t. The numbers are
the step-by-step ones up to rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from gradhealth.adapters.recurrent import CellAdapter, RecurrentModuleAdapter, Unrolled

__all__ = [
    "GATE_NAMES",
    "LayerRun",
    "LayerWeights",
    "RecurrentLayer",
    "State",
    "StepsObserver",
    "capture_inputs",
    "find_recurrent_layers",
    "flatten_state",
    "run_layer",
    "unflatten_state",
    "unrolled_model",
]

State = Any  # a tensor [B, H], or the LSTM pair (h, c)

#: Gate blocks, in PyTorch's row order of the stacked weight matrices.
GATE_NAMES: dict[str, tuple[str, ...]] = {
    "LSTM": ("i", "f", "g", "o"),
    "GRU": ("r", "z", "n"),
    "RNN_TANH": ("h",),
    "RNN_RELU": ("h",),
}


def _kind(module: nn.Module) -> str | None:
    if isinstance(module, (nn.LSTM, nn.LSTMCell)):
        return "LSTM"
    if isinstance(module, (nn.GRU, nn.GRUCell)):
        return "GRU"
    if isinstance(module, nn.RNN):
        return str(module.mode)
    if isinstance(module, nn.RNNCell):
        return "RNN_RELU" if module.nonlinearity == "relu" else "RNN_TANH"
    return None


@dataclass(frozen=True)
class LayerWeights:
    """The weights of one layer and direction of a recurrent module, and its step function."""

    name: str
    kind: str
    w_ih: torch.Tensor
    w_hh: torch.Tensor
    b_ih: torch.Tensor | None
    b_hh: torch.Tensor | None
    w_hr: torch.Tensor | None
    hidden_size: int
    is_reverse: bool = False

    @property
    def gates(self) -> tuple[str, ...]:
        """Gate block names in row order."""
        return GATE_NAMES[self.kind]

    @property
    def output_size(self) -> int:
        """Width of h (the projection size for a projected LSTM)."""
        return int(self.w_hr.shape[0]) if self.w_hr is not None else self.hidden_size

    def blocks(self, weight: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a stacked weight or bias into its gate blocks."""
        return dict(zip(self.gates, weight.chunk(len(self.gates), dim=0), strict=True))

    def initial_state(self, batch: int, like: torch.Tensor) -> State:
        """The zero state."""
        h = like.new_zeros(batch, self.output_size)
        return (h, like.new_zeros(batch, self.hidden_size)) if self.kind == "LSTM" else h

    def step(self, x: torch.Tensor, state: State) -> State:
        """One step of the cell."""
        return self.step_with_gates(x, state)[0]

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The input part W_ih x + b_ih of every gate pre-activation (for a whole sequence at once)."""
        return F.linear(x, self.w_ih, self.b_ih)

    def step_with_gates(
        self, x: torch.Tensor, state: State, projected: torch.Tensor | None = None
    ) -> tuple[State, dict[str, torch.Tensor]]:
        """One step, and the gate activations (plus ``tanh_c`` for the LSTM and ``h`` for a vanilla RNN).

        ``projected`` is :meth:`project` of ``x`` when already computed."""
        h = state[0] if self.kind == "LSTM" else state
        pre = self.project(x) if projected is None else projected
        rec = F.linear(h, self.w_hh, self.b_hh)
        if self.kind == "LSTM":
            i, f, g, o = (pre + rec).chunk(4, dim=-1)
            i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
            c = f * state[1] + i * g
            tanh_c = torch.tanh(c)
            h_new = o * tanh_c
            if self.w_hr is not None:
                h_new = F.linear(h_new, self.w_hr)
            return (h_new, c), {"i": i, "f": f, "g": g, "o": o, "tanh_c": tanh_c}
        if self.kind == "GRU":
            pr, pz, pn = pre.chunk(3, dim=-1)
            hr, hz, hn = rec.chunk(3, dim=-1)
            r, z = torch.sigmoid(pr + hr), torch.sigmoid(pz + hz)
            n = torch.tanh(pn + r * hn)
            return (1 - z) * n + z * h, {"r": r, "z": z, "n": n}
        h_new = torch.relu(pre + rec) if self.kind == "RNN_RELU" else torch.tanh(pre + rec)
        return h_new, {"h": h_new}

    def state_from_gates(self, state: State, gates: dict[str, torch.Tensor]) -> State:
        """The state after a step, from the state before it and that step's gates (:meth:`step_with_gates`):
        the same expressions on the same tensors, so the same numbers. With it an observer of :func:`run_layer`
        follows the trajectory without storing it or running the step again."""
        if self.kind == "LSTM":
            c = gates["f"] * state[1] + gates["i"] * gates["g"]
            h = gates["o"] * gates["tanh_c"]
            return (F.linear(h, self.w_hr) if self.w_hr is not None else h, c)
        if self.kind == "GRU":
            return (1 - gates["z"]) * gates["n"] + gates["z"] * state
        return gates["h"]

    def jacobian_factors(self, state: State, gates: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The elementwise factors of a step's Jacobian, for :meth:`jacobian_columns`.

        ``state`` is the state before the step and ``gates`` the step's (:meth:`step_with_gates`). Each factor is
        a derivative of the new state with respect to one gate pre-activation (for the GRU's n gate, to W_hn h):

        - RNN: tanh' = 1 - h'^2, and relu' = 1[h' > 0] (torch's convention at 0);
        - LSTM: ∂c'/∂ of i, f, g: i (1 - i) g, f (1 - f) c, i (1 - g^2); ∂(o tanh c')/∂ of o: o (1 - o) tanh c';
          and ∂c'/∂c = f, ∂(o tanh c')/∂c' = o (1 - tanh^2 c');
        - GRU: with s_n = (1 - z)(1 - n^2) = ∂h'/∂ of n: ∂h'/∂ of r: s_n (W_hn h + b_hn) r (1 - r), of z:
          z (1 - z)(h - n), of W_hn h: s_n r; and ∂h'/∂h directly: z.
        """
        if self.kind == "LSTM":
            i, f, g, o, tanh_c = (gates[name] for name in ("i", "f", "g", "o", "tanh_c"))
            slopes = torch.cat([i * (1 - i) * g, f * (1 - f) * state[1], i * (1 - g * g), o * (1 - o) * tanh_c], -1)
            return {"slopes": slopes, "f": f, "c_to_h": o * (1 - tanh_c * tanh_c)}
        if self.kind == "GRU":
            hidden = self.hidden_size
            b_hn = None if self.b_hh is None else self.b_hh[2 * hidden :]
            hn = F.linear(state, self.w_hh[2 * hidden :], b_hn)
            r, z, n = gates["r"], gates["z"], gates["n"]
            n_slope = (1 - z) * (1 - n * n)
            slopes = torch.cat([n_slope * hn * r * (1 - r), z * (1 - z) * (state - n), n_slope * r], -1)
            return {"slopes": slopes, "z": z}
        if self.kind == "RNN_RELU":
            return {"dead": gates["h"] <= 0}
        return {"slopes": 1 - gates["h"] * gates["h"]}

    def jacobian_columns(self, factors: dict[str, torch.Tensor], q: torch.Tensor) -> torch.Tensor:
        """J q: the step's Jacobian ∂s'/∂s applied to every column of ``q`` ``[B, n, k]``.

        ``factors`` are :meth:`jacobian_factors` at the step (``[B, ...]``), and the state is flattened as
        :func:`flatten_state` lays it out (the LSTM's is ``[h | c]``). This is the forward-mode derivative of
        :meth:`step_with_gates` written out: the k columns of every sample go through ONE product with W_hh
        (and one with W_hr for a projected LSTM), then each gate block is scaled by its factor:

        - RNN: dh' = φ'(a) (W_hh dh);
        - LSTM: dc' = ∂c'/∂(i, f, g) · (W_hh dh)_{i,f,g} + f dc;
          dh' = W_hr (∂/∂o · (W_hh dh)_o + o (1 - tanh^2 c') dc');
        - GRU: dh' = Σ_{r,z,n} ∂h'/∂ · (W_hh dh)_{r,z,n} + z dh.

        Returns ``[B, n, k]``, a transposed view of a contiguous ``[B, k, n]`` tensor (column-major frames, the
        layout LAPACK's QR works in).
        """
        rows = q.transpose(1, 2)  # [B, k, n]: one row per sample and column
        width = self.output_size
        dh = rows[..., :width]
        d = F.linear(dh, self.w_hh)  # every gate block at once, B * k rows
        if self.kind == "LSTM":
            from_i, from_f, from_g, from_o = (d * factors["slopes"].unsqueeze(1)).chunk(4, dim=-1)
            dc_new = from_i + from_f + from_g + factors["f"].unsqueeze(1) * rows[..., width:]
            dh_new = from_o + factors["c_to_h"].unsqueeze(1) * dc_new
            if self.w_hr is not None:
                dh_new = F.linear(dh_new, self.w_hr)
            image = torch.cat([dh_new, dc_new], dim=-1)
        elif self.kind == "GRU":
            from_r, from_z, from_n = (d * factors["slopes"].unsqueeze(1)).chunk(3, dim=-1)
            image = from_r + from_z + from_n + factors["z"].unsqueeze(1) * dh
        elif self.kind == "RNN_RELU":
            image = d.masked_fill(factors["dead"].unsqueeze(1), 0)
        else:
            image = d * factors["slopes"].unsqueeze(1)
        return image.transpose(1, 2)

    @staticmethod
    def output(state: State) -> torch.Tensor:
        """The hidden output h of a state."""
        return state[0] if isinstance(state, tuple) else state


@dataclass(frozen=True)
class RecurrentLayer:
    """A recurrent module found in a model: ``nn.RNN/LSTM/GRU`` or a ``*Cell``."""

    path: str
    module: nn.Module
    kind: str

    @property
    def is_cell(self) -> bool:
        """True for the ``*Cell`` modules (called once per step)."""
        return isinstance(self.module, nn.RNNCellBase)

    @property
    def label(self) -> str:
        """Name used in reports: the module path, or its class for the model itself."""
        return self.path or type(self.module).__name__

    def weights(self) -> list[LayerWeights]:
        """One :class:`LayerWeights` per layer and direction, in PyTorch's order (layer-major)."""
        m: Any = self.module
        if self.is_cell:
            return [
                LayerWeights(self.label, self.kind, m.weight_ih, m.weight_hh, _opt(m, "bias_ih"),
                             _opt(m, "bias_hh"), None, int(m.hidden_size))
            ]  # fmt: skip
        found = []
        for layer in range(int(m.num_layers)):
            for suffix in ("", "_reverse")[: 2 if m.bidirectional else 1]:
                s = f"_l{layer}{suffix}"
                found.append(
                    LayerWeights(
                        name=f"{self.label}.l{layer}{suffix}",
                        kind=self.kind,
                        w_ih=getattr(m, "weight_ih" + s),
                        w_hh=getattr(m, "weight_hh" + s),
                        b_ih=_opt(m, "bias_ih" + s),
                        b_hh=_opt(m, "bias_hh" + s),
                        w_hr=_opt(m, "weight_hr" + s),
                        hidden_size=int(m.hidden_size),
                        is_reverse=bool(suffix),
                    )
                )
        return found


def _opt(module: nn.Module, name: str) -> torch.Tensor | None:
    value = getattr(module, name, None)
    return value if isinstance(value, torch.Tensor) else None


def find_recurrent_layers(module: nn.Module | None) -> list[RecurrentLayer]:
    """Every ``nn.RNN/LSTM/GRU`` and ``*Cell`` in ``module`` (itself included), outermost first."""
    if module is None:
        return []
    found: list[RecurrentLayer] = []
    for path, sub in module.named_modules():
        kind = _kind(sub)
        if kind is not None and not any(path.startswith(f.path + ".") for f in found if f.path):
            found.append(RecurrentLayer(path, sub, kind))
    return found


def unrolled_model(adapter: Any) -> Unrolled | None:
    """The :class:`Unrolled` wrapper the adapter drives, if any."""
    return adapter.model if isinstance(adapter.model, Unrolled) else None


@contextmanager
def capture_inputs(layers: list[RecurrentLayer]) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Record the input of every call of each layer (forward pre-hooks, removed on exit, also on error)."""
    calls: dict[str, list[torch.Tensor]] = {layer.path: [] for layer in layers}

    def recorder(path: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            value = args[0] if args else kwargs.get("input")
            if isinstance(value, torch.Tensor):
                calls[path].append(value.detach())

        return hook

    handles = [layer.module.register_forward_pre_hook(recorder(layer.path), with_kwargs=True) for layer in layers]
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def layer_sequence(layer: RecurrentLayer, calls: list[torch.Tensor], steps: int) -> torch.Tensor | None:
    """The batch-first input sequence ``[B, T, D]`` a layer received, or ``None`` if its calls do not form one
    (a module called more than once, a cell not called once per step, unbatched inputs)."""
    if layer.is_cell:
        if len(calls) != steps or any(c.dim() != 2 for c in calls):
            return None
        return torch.stack(calls, dim=1)
    if len(calls) != 1 or calls[0].dim() != 3:
        return None
    x = calls[0]
    return x if layer.module.batch_first else x.transpose(0, 1)


@dataclass
class LayerRun:
    """One layer and direction re-run step by step.

    Attributes:
        weights: the layer's weights.
        inputs: ``[B, T, D]`` the layer's inputs in its own time order (reversed for a reverse direction).
        initial: the state before the first step.
        states: the state after each step, in the layer's own time order.
    """

    weights: LayerWeights
    inputs: torch.Tensor
    initial: State
    states: list[State]
    hidden: torch.Tensor | None = None  # [B, T, H] the h of ``states``, when already stacked (fused runs)

    def outputs(self) -> torch.Tensor:
        """``[B, T, H]`` hidden outputs in natural time order."""
        out = self.hidden if self.hidden is not None else torch.stack([LayerWeights.output(s) for s in self.states], 1)
        return out.flip(1) if self.weights.is_reverse else out


Observer = Callable[[LayerWeights, int, dict[str, torch.Tensor]], None]

#: ``observe_steps(weights, t0, gates)``: the gates of steps t0, t0 + 1, ... as time-major blocks ``[n, B, H]``.
StepsObserver = Callable[[LayerWeights, int, dict[str, torch.Tensor]], None]

#: a step-by-step run hands its gates to ``observe_steps`` in blocks of this many steps.
STEP_BLOCK = 64

#: a fused run rebuilds its gates in blocks of at most this many elements (steps x batch x gate width).
FUSED_BLOCK_ELEMENTS = 1 << 20


def fused_pays(layer: RecurrentLayer, x: torch.Tensor) -> bool:
    """Whether a fused run of ``layer`` on ``x`` is faster than the step-by-step one.

    Measured on a CPU (nn.RNN/LSTM/GRU(32, 256, 2 layers), 8 sequences, T = 513, 1 thread, fused over step time):
    vanilla RNNs need no rebuild at all (0.9x in float32 and float64); the LSTM's float32 kernel is oneDNN's, fast
    enough to pay for the rebuild's matrix product (0.85x), but its float64 kernel is a loop of the same small
    products as the steps (1.6x), and so is its float32 kernel with a projection (oneDNN has none, and PyTorch warns
    about it); the GRU's kernel is such a loop in every dtype (1.4x). Elsewhere (CUDA) the kernel replaces a dozen
    launches per step, so every kind runs fused there (not measured here)."""
    if x.device.type != "cpu":
        return True
    if layer.kind in ("RNN_TANH", "RNN_RELU"):
        return True
    mkldnn = torch.backends.mkldnn.is_available() and bool(torch.backends.mkldnn.enabled)  # type: ignore[no-untyped-call]
    projected = bool(getattr(layer.module, "proj_size", 0))
    return layer.kind == "LSTM" and x.dtype == torch.float32 and mkldnn and not projected


def run_layer(
    layer: RecurrentLayer,
    x: torch.Tensor,
    *,
    observe: Observer | None = None,
    observe_steps: StepsObserver | None = None,
    track_states: bool = False,
    graph_from: int = 0,
    fused: bool = False,
) -> list[LayerRun]:
    """Re-run every layer and direction of ``layer`` on its input ``x`` ``[B, T, D]`` (batch-first).

    Args:
        layer: the recurrent module.
        x: its input sequence.
        observe: called as ``observe(weights, t, gates)`` after each step (t in the layer's own time order).
        observe_steps: called as ``observe_steps(weights, t0, gates)`` with the gates of steps t0, t0 + 1, ...
            as time-major blocks ``[n, B, H]``, in order.
        track_states: make each initial state a leaf that requires grad, so gradients with respect to every
            state can be taken.
        graph_from: with ``track_states``, a unidirectional module runs its first ``graph_from`` steps (the
            burn-in) without a graph and starts tracking at the state they end in: gradients with respect to
            later states are unchanged, and the burn-in costs neither the graph's memory nor its time.
        fused: run each layer and direction with PyTorch's own kernel and rebuild the gates in bulk (see the
            module docstring) where that is faster (:func:`fused_pays`; elsewhere step by step): no graph, so
            neither ``track_states`` nor a per-step ``observe``.

    Returns:
        One :class:`LayerRun` per layer and direction, in PyTorch's order.
    """
    if fused:
        if track_states or observe is not None:
            raise ValueError("a fused run keeps no graph and observes blocks of steps: use observe_steps")
        if fused_pays(layer, x):
            return _run_fused(layer, x, observe_steps)
    runs: list[LayerRun] = []
    weights = layer.weights()
    directions = 2 if len(weights) > 1 and weights[1].is_reverse else 1
    graph_from = graph_from if track_states and directions == 1 else 0
    layer_input = x
    for start in range(0, len(weights), directions):
        outputs = []
        for w in weights[start : start + directions]:
            seq = layer_input.flip(1) if w.is_reverse else layer_input
            state = w.initial_state(seq.shape[0], seq)
            if track_states:
                state = tuple(s.requires_grad_(True) for s in state) if isinstance(state, tuple) else state
                state = state if isinstance(state, tuple) else state.requires_grad_(True)
            run = LayerRun(w, seq, state, [])
            projected = w.project(seq)  # one matrix product for all steps instead of one per step
            # unbound once: indexing [:, t] per step makes each step's backward write a whole-sequence zero tensor
            steps = zip(seq.unbind(1), projected.unbind(1), strict=True)
            pending: list[dict[str, torch.Tensor]] = []  # the gates of the steps not yet handed to observe_steps
            for t, (x_t, projected_t) in enumerate(steps):
                if 0 < graph_from == t:  # the burn-in's last state becomes the graph's first node
                    state = _tracked(state)
                with torch.set_grad_enabled(torch.is_grad_enabled() and t >= graph_from):
                    state, gates = w.step_with_gates(x_t, state, projected_t)
                run.states.append(state)
                if observe is not None:
                    observe(w, t, gates)
                if observe_steps is not None:
                    pending.append(gates)
                    if len(pending) == STEP_BLOCK or t == seq.shape[1] - 1:
                        block = {name: torch.stack([g[name] for g in pending]) for name in gates}
                        observe_steps(w, t + 1 - len(pending), block)
                        pending = []
            runs.append(run)
            outputs.append(run.outputs())
        layer_input = torch.cat(outputs, dim=-1)
    return runs


def _run_fused(layer: RecurrentLayer, x: torch.Tensor, observe_steps: StepsObserver | None) -> list[LayerRun]:
    runs: list[LayerRun] = []
    weights = layer.weights()
    directions = 2 if len(weights) > 1 and weights[1].is_reverse else 1
    layer_input = x.transpose(0, 1).contiguous()  # time-major: each step's rows are contiguous
    with torch.no_grad():
        for start in range(0, len(weights), directions):
            outputs = []
            for w in weights[start : start + directions]:
                seq = layer_input.flip(0) if w.is_reverse else layer_input
                hidden = kernel_outputs(w, seq)
                cells = rebuild_gates(w, seq, hidden, observe_steps)
                hs = hidden.unbind(0)
                states: list[State] = list(zip(hs, cells.unbind(0), strict=True)) if cells is not None else list(hs)
                initial = w.initial_state(seq.shape[1], seq)
                runs.append(LayerRun(w, seq.transpose(0, 1), initial, states, hidden.transpose(0, 1)))
                outputs.append(hidden.flip(0) if w.is_reverse else hidden)
            layer_input = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)
    return runs


_KERNELS: dict[str, Callable[..., Any]] = {
    "LSTM": torch.lstm,
    "GRU": torch.gru,
    "RNN_TANH": torch.rnn_tanh,
    "RNN_RELU": torch.rnn_relu,
}


def kernel_outputs(w: LayerWeights, seq: torch.Tensor) -> torch.Tensor:
    """``[T, B, H]`` every hidden output of one layer and direction on the time-major ``seq`` ``[T, B, D]`` (in the
    layer's own time order) from the zero state, by PyTorch's own kernel for one unidirectional layer (what
    ``nn.LSTM`` and its siblings call). cuDNN is off: it may compute float32 in TF32, the step equations do not."""
    batch = seq.shape[1]
    has_biases = w.b_ih is not None or w.b_hh is not None
    params = [w.w_ih, w.w_hh]
    if has_biases:
        zeros = w.w_hh.new_zeros(w.w_hh.shape[0])
        params += [w.b_ih if w.b_ih is not None else zeros, w.b_hh if w.b_hh is not None else zeros]
    if w.w_hr is not None:
        params.append(w.w_hr)
    h0 = seq.new_zeros(1, batch, w.output_size)
    hx: Any = (h0, seq.new_zeros(1, batch, w.hidden_size)) if w.kind == "LSTM" else h0
    with torch.backends.cudnn.flags(enabled=False):
        result = _KERNELS[w.kind](seq, hx, params, has_biases, 1, 0.0, False, False, False)
    return result[0]


def rebuild_gates(
    w: LayerWeights, seq: torch.Tensor, hidden: torch.Tensor, observe_steps: StepsObserver | None
) -> torch.Tensor | None:
    """Rebuild the gates of every step from the time-major inputs ``seq`` ``[T, B, D]`` and hidden outputs
    ``hidden`` ``[T, B, H]`` (own time order) in blocks of steps, hand each block to ``observe_steps``, and return
    the LSTM's cell states ``[T, B, H]`` (None for the other kinds).

    The pre-activations of a block are one matrix product, W_ih x_t + (b_ih + b_hh) + W_hh h_{t-1} for all its steps
    (h_{-1} = 0); the LSTM's c_t = f_t c_{t-1} + i_t g_t is the only step-by-step part (one operation per step)."""
    steps, batch = hidden.shape[:2]
    if w.kind in ("RNN_TANH", "RNN_RELU"):
        if observe_steps is not None:
            observe_steps(w, 0, {"h": hidden})
        return None
    if observe_steps is None and w.kind != "LSTM":
        return None
    size, width = w.hidden_size, int(w.w_hh.shape[0])
    cells = hidden.new_empty(steps, batch, size) if w.kind == "LSTM" else None
    block = max(1, FUSED_BLOCK_ELEMENTS // max(1, batch * width))
    c_prev = hidden.new_zeros(batch, size)
    biases = [b for b in (w.b_ih, w.b_hh) if b is not None]
    bias = biases[0] + biases[1] if len(biases) == 2 else (biases[0] if biases else None)  # LSTM: both at once
    for t0 in range(0, steps, block):
        t1 = min(steps, t0 + block)
        if w.kind == "LSTM":
            pre = F.linear(seq[t0:t1], w.w_ih, bias)  # [n, B, width]
            flat = pre.view(-1, width)
            # W_hh h_{t-1} for every step of the block but the very first (whose h_{-1} is zero)
            rows = flat if t0 else flat[batch:]
            rows.addmm_(hidden[max(0, t0 - 1) : t1 - 1].reshape(-1, w.output_size), w.w_hh.t())
            g = torch.tanh(pre[..., 2 * size : 3 * size])
            i, f, _, o = pre.sigmoid_().chunk(4, dim=-1)  # the g block's sigmoid is discarded
            ig = i * g
            assert cells is not None
            for t in range(t0, t1):  # c_t = f_t c_{t-1} + i_t g_t
                c_prev = torch.addcmul(ig[t - t0], f[t - t0], c_prev, out=cells[t])
            gates = {"i": i, "f": f, "g": g, "o": o, "tanh_c": torch.tanh(cells[t0:t1])}
        else:
            pre = w.project(seq[t0:t1])
            rec = F.linear(hidden[max(0, t0 - 1) : t1 - 1], w.w_hh, w.b_hh)
            if t0 == 0:  # h_{-1} = 0: the first step's recurrent part is the bias alone
                first = rec.new_zeros(1, batch, width) if w.b_hh is None else w.b_hh.expand(1, batch, width)
                rec = torch.cat([first, rec])
            pr, pz, pn = pre.chunk(3, dim=-1)
            hr, hz, hn = rec.chunk(3, dim=-1)
            r, z = torch.sigmoid(pr + hr), torch.sigmoid(pz + hz)
            gates = {"r": r, "z": z, "n": torch.tanh(pn + r * hn)}
        if observe_steps is not None:
            observe_steps(w, t0, gates)
    return cells


def _tracked(state: State) -> State:
    if isinstance(state, tuple):
        return tuple(s.detach().requires_grad_(True) for s in state)
    return state.detach().requires_grad_(True)


def flatten_state(state: State) -> tuple[torch.Tensor, list[tuple[int, ...]]]:
    """A state (tensor or tuple of tensors, batch first) as one ``[B, n]`` matrix, and the shapes to undo it."""
    parts = list(state) if isinstance(state, (tuple, list)) else [state]
    shapes = [tuple(p.shape) for p in parts]
    return torch.cat([p.reshape(p.shape[0], -1) for p in parts], dim=1), shapes


def unflatten_state(flat: torch.Tensor, shapes: list[tuple[int, ...]], like: State) -> State:
    """Inverse of :func:`flatten_state`."""
    sizes = [int(torch.Size(s[1:]).numel()) for s in shapes]
    parts = [p.reshape(s) for p, s in zip(torch.split(flat, sizes, dim=1), shapes, strict=True)]
    if isinstance(like, (tuple, list)):
        return type(like)(parts)
    return parts[0]


def driven_runs(
    ctx: Any,
    stream: str,
    *,
    observe: Observer | None = None,
    observe_steps: StepsObserver | None = None,
    track_states: bool = False,
    graph_from: int = 0,
    batch_size: int | None = None,
    fused: bool = False,
) -> tuple[list[tuple[RecurrentLayer, list[LayerRun]]], list[str]]:
    """Drive the probe copy with a batch from ``stream`` and re-run each recurrent layer on the input it got.

    Args:
        ctx: the :class:`~gradhealth.probes.base.ProbeContext`.
        stream: the input stream name.
        observe: per-step observer passed to :func:`run_layer`.
        observe_steps: observer of blocks of steps passed to :func:`run_layer`.
        track_states: keep every state in the autograd graph (see :func:`run_layer`).
        graph_from: the steps run without a graph before tracking starts (see :func:`run_layer`).
        batch_size: sequences to drive (default: the audit's batch size).
        fused: run each layer with PyTorch's own kernel, no graph (see :func:`run_layer`).

    Returns:
        The runs per recurrent layer, and notes naming the layers that could not be re-run and why.
    """
    from gradhealth.probes.base import input_gradients_only

    layers = find_recurrent_layers(ctx.module)
    inputs = ctx.make_batch(stream, batch_size=batch_size).inputs
    if isinstance(ctx.adapter, (RecurrentModuleAdapter, CellAdapter)):
        # the model is the layer: its input is the batch itself, no forward pass needed to capture it
        layer = layers[0]
        if layer.is_cell:
            calls = {layer.path: list(inputs.unbind(1))}
        else:  # in the module's own layout, as a pre-hook would have seen it
            calls = {layer.path: [inputs if layer.module.batch_first else inputs.transpose(0, 1)]}
    else:
        with capture_inputs(layers) as calls, torch.no_grad():
            ctx.adapter.run(inputs)
    found, notes = [], []
    with input_gradients_only(ctx.module), torch.set_grad_enabled(track_states):
        for layer in layers:
            seq = layer_sequence(layer, calls[layer.path], inputs.shape[1])
            if seq is None:
                notes.append(
                    f"{layer.label}: called {len(calls[layer.path])} times in one forward pass; gradhealth re-runs a "
                    "module called once per sequence, or a cell called once per step"
                )
                continue
            found.append(
                (
                    layer,
                    run_layer(
                        layer,
                        seq,
                        observe=observe,
                        observe_steps=observe_steps,
                        track_states=track_states,
                        graph_from=graph_from,
                        fused=fused,
                    ),
                )
            )
    return found, notes

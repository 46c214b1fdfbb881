"""The gates probe: how LSTM and GRU gates behave along a driven trajectory.

For every LSTM/GRU layer and direction (modules and cells, also inside larger models), one forward pass over at
most ``max_batch`` (8) sequences, re-run step by step, gives:

- saturation of each gate over time: the fraction of activations with σ < 1 - s or σ > s (sigmoid gates) or
  |tanh| > s (candidates g/n and the LSTM's tanh(c)), s = 0.99 by default, overall and per time bin;
- per-unit timescales of the memory gate: τ = 1/(1 - f) for the LSTM forget gate and τ = 1/(1 - z) for the GRU
  update gate (c' = f c + ..., h' = z h + ...: a constant gate keeps a fraction f per step, so memory decays as
  f^k = exp(-k/τ) for large τ). ``dynamic`` uses the mean of 1 - f over the trajectory; ``static`` uses the biases
  alone, τ = 1 + exp(b_ih + b_hh), the timescale when the gate's other inputs are zero (chrono initialisation,
  Tallec & Ollivier 2018, sets b_f = log u so that τ = 1 + u);
- dead units: hidden units whose output never exceeds ``dead_threshold`` in absolute value.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from gradhealth.adapters import Adapter
from gradhealth.findings import make_finding
from gradhealth.formatting import format_number
from gradhealth.probes._recurrent import LayerWeights, driven_runs, find_recurrent_layers
from gradhealth.probes.base import Probe, ProbeContext
from gradhealth.report import Finding

__all__ = ["GateActivity", "GateActivityResult", "GateStats", "LayerGates", "Timescales"]

_SIGMOID_GATES = {"i", "f", "o", "r", "z"}
_MEMORY_GATE = {"LSTM": "f", "GRU": "z"}


@dataclass
class GateStats:
    """Saturation of one gate (fractions of all units, samples and steps)."""

    gate: str
    activation: str
    mean: float
    saturated: float
    saturated_low: float
    saturated_high: float
    over_time: list[float]


@dataclass
class Timescales:
    """Per-unit timescales τ of the memory gate (``f`` or ``z``) and quantiles of the dynamic ones."""

    gate: str
    dynamic: list[float]
    static: list[float]
    quantiles: dict[str, float]


@dataclass
class LayerGates:
    """The gates of one layer and direction."""

    layer: str
    kind: str
    gates: list[GateStats]
    timescales: Timescales
    dead_units: list[int]
    dead_fraction: float
    time_bins: list[int] = field(default_factory=list)


@dataclass
class GateActivityResult:
    """One :class:`LayerGates` per LSTM/GRU layer and direction."""

    layers: list[LayerGates]
    saturation_level: float
    notes: list[str] = field(default_factory=list)


class _Accumulator:
    """Per-step statistics per gate, reduced in blocks of at least ``chunk`` steps (vectorised, bounded memory).

    Called as ``acc(weights, t0, gates)`` with the gates of steps t0, t0 + 1, ... as ``[n, B, H]`` blocks, in order
    (a :data:`~gradhealth.probes._recurrent.StepsObserver`)."""

    chunk = 64

    def __init__(self, level: float) -> None:
        self.level = level
        self.pending: dict[tuple[str, str], list[torch.Tensor]] = {}
        self.pending_steps: dict[tuple[str, str], int] = {}
        self.kinds: dict[str, str] = {}
        self.sums: dict[str, dict[str, Any]] = {}

    def __call__(self, w: LayerWeights, t0: int, gates: dict[str, torch.Tensor]) -> None:
        self.kinds[w.name] = w.kind
        for name, a in gates.items():
            if name == "h":
                continue
            key = (w.name, name)
            self.pending.setdefault(key, []).append(a)
            self.pending_steps[key] = self.pending_steps.get(key, 0) + a.shape[0]
            if self.pending_steps[key] >= self.chunk:
                self._reduce(w.name, name)

    def finish(self) -> dict[str, dict[str, Any]]:
        """Reduce what is pending; return per layer and gate: per-step sums and saturation counts, and the
        per-unit sum of 1 - a for the memory gate."""
        for layer, name in list(self.pending):
            self._reduce(layer, name)
        return self.sums

    def _reduce(self, layer: str, name: str) -> None:
        pending = self.pending.pop((layer, name), [])
        self.pending_steps.pop((layer, name), None)
        if not pending:
            return
        a = pending[0] if len(pending) == 1 else torch.cat(pending)  # [steps, B, H]
        low = (a < 1 - self.level) if name in _SIGMOID_GATES else (a < -self.level)
        s = self.sums.setdefault(layer, {}).setdefault(
            name, {"sum": [], "low": [], "high": [], "keep": None, "count": 0, "size": a[0].numel()}
        )
        s["sum"].append(a.sum(dim=(1, 2)).to(torch.float64))
        s["low"].append(low.sum(dim=(1, 2)).to(torch.float64))
        s["high"].append((a > self.level).sum(dim=(1, 2)).to(torch.float64))
        if name == _MEMORY_GATE.get(self.kinds[layer]):
            keep = (1 - a).to(torch.float64).sum(dim=(0, 1))
            s["keep"] = keep if s["keep"] is None else s["keep"] + keep
            s["count"] += a.shape[0] * a.shape[1]


def _quantiles(values: torch.Tensor) -> dict[str, float]:
    levels = {"min": 0.0, "q10": 0.1, "median": 0.5, "q90": 0.9, "max": 1.0}
    finite = values[torch.isfinite(values)]
    if finite.numel() == 0:
        return dict.fromkeys(levels, math.nan)
    return {k: float(torch.quantile(finite, q)) for k, q in levels.items()}


def _static_timescales(w: LayerWeights) -> list[float]:
    gate = _MEMORY_GATE[w.kind]
    bias = torch.zeros(w.hidden_size, dtype=torch.float64)
    for b in (w.b_ih, w.b_hh):
        if b is not None:
            bias = bias + w.blocks(b.detach())[gate].to("cpu", torch.float64)
    # 1/(1 - σ(b)) = 1 + e^b, written so that no cancellation occurs near σ = 1.
    return (1 + torch.exp(bias)).tolist()


class GateActivity(Probe):
    """Gate saturation over time, per-unit memory timescales and dead units of LSTM/GRU layers."""

    name = "gates"
    description = "LSTM/GRU gate saturation over time, per-unit timescales 1/(1-f) and 1/(1-z), dead units"

    #: activations beyond this (σ > s, σ < 1 - s, |tanh| > s) count as saturated.
    saturation_level: float = 0.99
    #: a unit whose |h| never exceeds this is dead.
    dead_threshold: float = 1e-3
    #: number of time bins in ``over_time``.
    time_bins: int = 16
    #: at most this many sequences are driven (fractions over 8 x T x H activations are already tight).
    max_batch: int = 8
    #: run each layer with PyTorch's own kernel and rebuild the gates in bulk (False: step by step; same numbers
    #: up to rounding).
    fused: bool = True

    def skip_reason(self, adapter: Adapter) -> str | None:
        if not any(layer.kind in _MEMORY_GATE for layer in find_recurrent_layers(adapter.module)):
            return "no LSTM or GRU (module or cell) in the model, so no gates"
        return None

    def run(self, ctx: ProbeContext) -> GateActivityResult:
        steps = ctx.config.total_len
        acc = _Accumulator(self.saturation_level)
        batch = min(self.max_batch, ctx.config.batch_size)
        found, notes = driven_runs(ctx, "gates", observe_steps=acc, batch_size=batch, fused=self.fused)
        sums = acc.finish()
        bins = min(self.time_bins, steps)
        edges = [round(i * steps / bins) for i in range(bins + 1)]
        layers = []
        for layer, runs in found:
            if layer.kind not in _MEMORY_GATE:
                continue
            for run in runs:
                layers.append(self._summarize(run.weights, sums[run.weights.name], run.outputs(), edges))
        return GateActivityResult(layers, self.saturation_level, notes)

    def _summarize(self, w: LayerWeights, sums: dict[str, Any], outputs: torch.Tensor, edges: list[int]) -> LayerGates:
        stats = []
        for name, s in sums.items():
            total, low, high = (torch.cat(s[key]) for key in ("sum", "low", "high"))
            n = s["size"] * total.numel()
            per_bin = [float((low + high)[a:b].sum()) / (s["size"] * (b - a)) for a, b in itertools.pairwise(edges)]
            activation = "sigmoid" if name in _SIGMOID_GATES else "tanh"
            sat_low, sat_high = float(low.sum()) / n, float(high.sum()) / n
            stats.append(
                GateStats(name, activation, float(total.sum()) / n, sat_low + sat_high, sat_low, sat_high, per_bin)
            )
        memory = sums[_MEMORY_GATE[w.kind]]
        dynamic = (memory["count"] / memory["keep"]).cpu()
        timescales = Timescales(_MEMORY_GATE[w.kind], dynamic.tolist(), _static_timescales(w), _quantiles(dynamic))
        peak = outputs.detach().abs().amax(dim=(0, 1))
        dead = torch.nonzero(~(peak > self.dead_threshold)).flatten().tolist()
        return LayerGates(w.name, w.kind, stats, timescales, dead, len(dead) / max(1, peak.numel()), edges)

    def findings(self, result: GateActivityResult, ctx: ProbeContext) -> list[Finding]:
        found = []
        for layer in result.layers:
            ts = layer.timescales
            median = ts.quantiles["median"]
            if median < 3:
                gate = "forget" if ts.gate == "f" else "update"
                message = (
                    f"{layer.layer}: median {gate}-gate timescale 1/(1-{ts.gate}) is {format_number(median)} steps "
                    f"(max {format_number(ts.quantiles['max'])})"
                )
                found.append(
                    make_finding("GH301", message, probe=self.name, layer=layer.layer, median_timescale=median)
                )
            for g in layer.gates:
                if g.activation == "tanh" and g.saturated > 0.5:
                    message = f"{layer.layer}: {g.saturated:.0%} of {g.gate} activations have |tanh| > " + (
                        f"{result.saturation_level:g}"
                    )
                    found.append(
                        make_finding("GH302", message, probe=self.name, layer=layer.layer, gate=g.gate,
                                     saturated=g.saturated)
                    )  # fmt: skip
            if layer.dead_units:
                message = (
                    f"{layer.layer}: {len(layer.dead_units)} hidden units never exceed |h| > {self.dead_threshold:g}"
                )
                found.append(
                    make_finding("GH303", message, probe=self.name, layer=layer.layer, dead_units=layer.dead_units)
                )
        return found

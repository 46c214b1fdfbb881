"""The parameter-gradients probe: BPTT on a task's real loss, and where the gradient lands in the weights.

The probe copy is trained-through once (never stepped) on a seeded batch of a long-dependency task: the adding
problem by default (MSE of a fixed random linear readout of y[T-1] against the target), or the copy problem
(cross-entropy of a fixed random readout over the recall steps). Models the task cannot feed (token-id models,
fewer input features than the task needs) fall back to the lag-profile loss L = mean_b <v_b, y_b[T-1]>.

The batch may be split into ``splits`` disjoint sub-batches, one forward and backward each; their size-weighted
sum is the full-batch gradient, and the mean of their total norms stands in for "the average norm over updates"
that Pascanu et al. (2013) suggest as the clipping threshold (by default one pass: this batch's norm).
Gradients come from ``torch.autograd.grad`` on the probe copy: no ``.grad`` is ever written.

Reported: per parameter, the gradient norm, its ratio to the parameter's norm and NaN/Inf counts; per layer and
direction (or owning submodule), the same, and for LSTM/GRU the split over gate blocks (i/f/g/o, r/z/n); which
groups are starved (ratio below 1/100 of the median group's) or flooded (above 100x); and what
``clip_grad_norm_(max_norm=threshold)`` would do.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn import functional as F

from gradhealth.adapters import Adapter
from gradhealth.errors import AdapterError, ConfigError
from gradhealth.findings import make_finding
from gradhealth.formatting import format_number
from gradhealth.probes._bptt import SavedDenormals, backward_scope, sample_norms
from gradhealth.probes._recurrent import GATE_NAMES, find_recurrent_layers
from gradhealth.probes.base import Probe, ProbeContext
from gradhealth.report import Finding
from gradhealth.tasks import TaskBatch

__all__ = ["ClipAdvice", "GroupStat", "ParameterGradients", "ParameterGradientsResult", "ParameterStat"]

#: a group whose ratio is below median / SPREAD is starved, above median * SPREAD flooded.
SPREAD = 100.0

_RNN_PARAM = re.compile(r"^(weight|bias)_(ih|hh|hr)(_l(\d+))?(_reverse)?$")


@dataclass
class ParameterStat:
    """One parameter's gradient."""

    name: str
    group: str
    shape: list[int]
    grad_norm: float | None
    param_norm: float
    ratio: float | None
    nonfinite: int


@dataclass
class GroupStat:
    """One layer and direction (or owning submodule): its parameters together.

    Attributes:
        status: ``ok``, ``starved``, ``flooded``, ``non_finite``, ``no_gradient``, or ``zero_weight`` (every
            weight of the group is zero, e.g. a norm scale initialised to zero: the gradient/weight ratio is
            undefined, so the group is compared with nothing).
        blocks: per gate block of an LSTM/GRU layer: ``grad_norm``, ``param_norm``, ``ratio``.
        starved_blocks: gate blocks whose ratio is below 1/100 of the layer's median block.
    """

    group: str
    grad_norm: float
    param_norm: float
    ratio: float | None
    nonfinite: int
    status: str = "ok"
    blocks: dict[str, dict[str, float | None]] = field(default_factory=dict)
    starved_blocks: list[str] = field(default_factory=list)


@dataclass
class ClipAdvice:
    """What ``clip_grad_norm_`` would do, and the threshold Pascanu et al. (2013) suggest."""

    threshold: float
    total_norm: float
    would_clip: bool
    scale: float
    suggested_threshold: float
    split_norms: list[float]


@dataclass
class ParameterGradientsResult:
    """Gradients of the task loss with respect to every parameter."""

    task: str
    loss: float
    parameters: list[ParameterStat]
    groups: list[GroupStat]
    clip: ClipAdvice
    notes: list[str] = field(default_factory=list)


def _norm(t: torch.Tensor) -> float:
    return float(sample_norms(t.detach().reshape(1, -1))[0])


def _ratio(grad: float | None, weight: float) -> float | None:
    return grad / weight if grad is not None and weight > 0 and math.isfinite(grad) else None


class ParameterGradients(Probe):
    """Per-parameter, per-layer and per-gate-block gradient norms of a task loss; starved and flooded layers;
    what gradient clipping would do."""

    name = "parameter_gradients"
    description = "task-loss gradient norms per parameter, layer and gate block; starved/flooded layers; clipping"

    #: the task whose loss is back-propagated: ``adding`` or ``copy``.
    task: str = "adding"
    #: ``clip_grad_norm_`` threshold to evaluate.
    clip_threshold: float = 1.0
    #: disjoint sub-batches, one forward and backward each; the mean of their norms is the suggested clipping
    #: threshold. 1 (the default) costs one pass and suggests this batch's norm. ``None``: the audit's
    #: ``gradient_splits`` setting.
    splits: int | None = None

    def __init__(
        self, *, task: str | None = None, clip_threshold: float | None = None, splits: int | None = None
    ) -> None:
        if splits is not None:
            self.splits = splits
        if task is not None:
            if task not in ("adding", "copy"):
                raise ConfigError("parameter_gradients task", task, "use 'adding' or 'copy'")
            self.task = task
        if clip_threshold is not None:
            self.clip_threshold = clip_threshold

    def skip_reason(self, adapter: Adapter) -> str | None:
        module = adapter.module
        if module is None or not any(p.is_floating_point() or p.is_complex() for p in module.parameters()):
            return "the model has no floating-point or complex parameters"
        return None

    def run(self, ctx: ProbeContext) -> ParameterGradientsResult:
        assert ctx.module is not None
        named = [(n, p) for n, p in ctx.module.named_parameters() if p.is_floating_point() or p.is_complex()]
        batch, task_name, notes = self._batch(ctx)
        size = batch.inputs.shape[0]
        chunks = torch.arange(size).tensor_split(min(self.splits or ctx.config.gradient_splits, size))
        flags = [p.requires_grad for _, p in named]
        totals: list[torch.Tensor | None] = [None] * len(named)
        split_norms, loss_sum = [], 0.0
        try:
            for _, p in named:
                p.requires_grad_(True)
            with torch.enable_grad():
                for idx in chunks:
                    saved = SavedDenormals()
                    with saved:
                        loss = self._loss(ctx, batch, idx, task_name)
                    with backward_scope(ctx.device, flush=not saved.found):
                        grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
                    weight = len(idx) / size
                    loss_sum += weight * float(loss.detach())
                    present = [g.detach() for g in grads if g is not None]
                    split_norms.append(
                        _norm(torch.stack([torch.tensor(_norm(g), dtype=torch.float64) for g in present]))
                        if present
                        else 0.0
                    )
                    for i, g in enumerate(grads):
                        if g is not None:
                            previous = totals[i]
                            totals[i] = g.detach() * weight if previous is None else previous + g.detach() * weight
        finally:
            for (_, p), flag in zip(named, flags, strict=True):
                p.requires_grad_(flag)
        params, groups = self._stats(ctx, named, totals)
        total = math.sqrt(sum((p.grad_norm or 0.0) ** 2 for p in params))
        scale = min(1.0, self.clip_threshold / (total + 1e-6)) if math.isfinite(total) else math.nan
        suggested = sum(split_norms) / len(split_norms)
        clip = ClipAdvice(self.clip_threshold, total, total > self.clip_threshold, scale, suggested, split_norms)
        return ParameterGradientsResult(task_name, loss_sum, params, groups, clip, notes)

    def _batch(self, ctx: ProbeContext) -> tuple[TaskBatch, str, list[str]]:
        try:
            return ctx.make_batch(self.name, task=ctx.task_named(self.task)), self.task, []
        except ConfigError as exc:
            note = f"the {self.task} task cannot feed this model ({exc}); used the output-projection loss on noise"
            return ctx.make_batch(self.name, task=ctx.task_named("noise")), "output_projection", [note]

    def _loss(self, ctx: ProbeContext, batch: TaskBatch, idx: torch.Tensor, task: str) -> torch.Tensor:
        y = ctx.adapter.run(batch.inputs[idx]).output
        if y.is_complex():
            y = torch.view_as_real(y).flatten(-2)  # real and imaginary parts as features
        features = y.shape[-1]
        if task == "adding":
            assert batch.targets is not None
            readout = ctx.randn(f"{self.name}/readout", (features,), like=y) / math.sqrt(features)
            return F.mse_loss(y[:, -1] @ readout, batch.targets[idx, -1, 0])
        if task == "copy":
            assert batch.targets is not None
            assert batch.target_mask is not None
            readout = ctx.randn(f"{self.name}/readout", (features, ctx.input_size), like=y) / math.sqrt(features)
            mask = batch.target_mask[idx]
            if y.shape[1] != mask.shape[1]:
                raise AdapterError(
                    "the copy task needs the output at every step, and this model returns one value per sequence; "
                    "use the adding task (parameter_gradients task='adding')"
                )
            return F.cross_entropy(y[mask] @ readout, batch.targets[idx][mask])
        v = ctx.randn(f"{self.name}/v", (batch.inputs.shape[0], features), like=y)[idx]
        return (y[:, -1] * v).sum() / len(idx)

    def _stats(
        self, ctx: ProbeContext, named: list[tuple[str, torch.nn.Parameter]], grads: list[torch.Tensor | None]
    ) -> tuple[list[ParameterStat], list[GroupStat]]:
        layers = {layer.path: layer for layer in find_recurrent_layers(ctx.module)}
        params: list[ParameterStat] = []
        blocks: dict[str, dict[str, list[float]]] = {}
        for (name, p), g in zip(named, grads, strict=True):
            group, gates = self._group(name, layers)
            g_norm = _norm(g) if g is not None else None
            nonfinite = int((~torch.isfinite(g)).sum()) if g is not None else 0
            params.append(
                ParameterStat(name, group, list(p.shape), g_norm, _norm(p), _ratio(g_norm, _norm(p)), nonfinite)
            )
            if gates and g is not None:
                for gate, gb, pb in zip(gates, g.chunk(len(gates)), p.detach().chunk(len(gates)), strict=True):
                    acc = blocks.setdefault(group, {}).setdefault(gate, [0.0, 0.0])
                    acc[0] += _norm(gb) ** 2
                    acc[1] += _norm(pb) ** 2
        groups: dict[str, GroupStat] = {}
        for s in params:
            gs = groups.setdefault(s.group, GroupStat(s.group, 0.0, 0.0, None, 0, "no_gradient"))
            gs.param_norm = math.hypot(gs.param_norm, s.param_norm)
            gs.nonfinite += s.nonfinite
            if s.grad_norm is not None:
                gs.grad_norm = math.hypot(gs.grad_norm, s.grad_norm)
                gs.status = "ok"
        for gs in groups.values():
            gs.ratio = _ratio(gs.grad_norm, gs.param_norm)
            gs.blocks = {
                gate: {
                    "grad_norm": math.sqrt(a),
                    "param_norm": math.sqrt(b),
                    "ratio": _ratio(math.sqrt(a), math.sqrt(b)),
                }
                for gate, (a, b) in blocks.get(gs.group, {}).items()
            }
            block_ratios = [r for b in gs.blocks.values() if (r := b["ratio"]) is not None and r > 0]
            if block_ratios:
                mid = sorted(block_ratios)[len(block_ratios) // 2]
                gs.starved_blocks = [
                    k for k, b in gs.blocks.items() if (r := b["ratio"]) is not None and r < mid / SPREAD
                ]
        self._flag(list(groups.values()))
        return params, list(groups.values())

    @staticmethod
    def _group(name: str, layers: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
        owner, _, local = name.rpartition(".")
        layer = layers.get(owner)
        match = _RNN_PARAM.match(local)
        if layer is None or match is None:
            return owner or "(model)", ()
        label = layer.label
        if match.group(3):
            label += f".l{match.group(4)}{match.group(5) or ''}"
        gates = GATE_NAMES[layer.kind] if match.group(2) != "hr" else ()
        return label, gates if len(gates) > 1 else ()

    @staticmethod
    def _flag(groups: list[GroupStat]) -> None:
        ratios = sorted(g.ratio for g in groups if g.ratio is not None and g.ratio > 0)
        mid = ratios[len(ratios) // 2] if ratios else None
        for g in groups:
            if g.nonfinite:
                g.status = "non_finite"
            elif g.status == "no_gradient":
                continue
            elif g.param_norm == 0.0:
                g.status = "zero_weight"  # no ratio: neither starved nor flooded
            elif mid is None or g.ratio is None:
                continue
            elif g.ratio < mid / SPREAD:
                g.status = "starved"
            elif g.ratio > mid * SPREAD:
                g.status = "flooded"

    def findings(self, result: ParameterGradientsResult, ctx: ProbeContext) -> list[Finding]:
        found = []
        bad = [p.name for p in result.parameters if p.nonfinite]
        if bad:
            found.append(make_finding("GH101", f"NaN/Inf in the gradient of {', '.join(bad)}", probe=self.name,
                                      parameters=bad))  # fmt: skip
        for g in result.groups:
            if g.status in ("starved", "flooded"):
                code = "GH102" if g.status == "starved" else "GH103"
                message = (
                    f"{g.group}: gradient/weight norm ratio {format_number(g.ratio)} is {g.status} against the "
                    "other layers"
                )
                found.append(make_finding(code, message, probe=self.name, group=g.group, ratio=g.ratio))
            if g.starved_blocks:
                message = f"{g.group}: gate blocks {', '.join(g.starved_blocks)} get under 1/{SPREAD:g} of the others"
                found.append(make_finding("GH102", message, probe=self.name, group=g.group, blocks=g.starved_blocks))
        c = result.clip
        if c.would_clip and math.isfinite(c.total_norm):
            message = (
                f"total gradient norm {format_number(c.total_norm)}: clip_grad_norm_(max_norm={c.threshold:g}) would "
                f"scale it by {format_number(c.scale)}; the average norm over sub-batches is "
                f"{format_number(c.suggested_threshold)}"
            )
            found.append(make_finding("GH104", message, probe=self.name, total_norm=c.total_norm,
                                      suggested_threshold=c.suggested_threshold))  # fmt: skip
        return found

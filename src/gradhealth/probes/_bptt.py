"""The one input-gradient recipe every BPTT probe uses, and the arithmetic guards around it.

:func:`input_gradient_norms` is the measurement behind the lag profile and the length scan: one forward pass,
a loss at one output step per direction of time, L = Σ_b <v_b, y_b[t_out]> with a seeded gaussian v_b, one
backward pass per direction, and per-sample norms N_b(k) = ||∂L/∂x_b[t_out - k]|| for k = 0..max_lag. It owns
every detail a copy could get wrong:

- the gradient is read in the model's own layout and turned batch-first (time-major models, token ids);
- complex inputs and outputs are measured by their modulus (``torch.linalg.vector_norm``);
- norms are computed in float64 with a per-vector scale, so they resolve down to the dtype's floor (a plain
  norm squares its entries and underflows near sqrt(tiny));
- **precision does not depend on the output's scale**: the seed vector v is scaled by a power of two (exact)
  when the first pass shows the gradients near the dtype's floor or overflowing (float16), and the floor is
  reported in the units of the result;
- **flushing denormals never changes a resolved number**: the forward pass never flushes; tensors the
  forward saves for the backward are checked for denormals (a flushing backward would read them as zero,
  e.g. a ReLU's mask), and only a backward without such inputs runs with flush-to-zero (the speed: gradients
  decaying through the denormal range are ~10x slower on x86). A conclusion drawn from exact zeros
  (no gradient at all, or finite memory) is re-checked by a backward pass without flushing.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from gradhealth._state import flush_denormals
from gradhealth.errors import ConfigError
from gradhealth.metrics import DTYPE_LIMITS, resolution_flags, resolution_floor, rms_over_samples
from gradhealth.probes.base import input_gradients_only

if TYPE_CHECKING:
    import numpy.typing as npt

    from gradhealth.adapters import AdapterOutput, Direction
    from gradhealth.probes.base import ProbeContext

__all__ = [
    "LagNorms",
    "SavedDenormals",
    "backward_scope",
    "input_gradient_norms",
    "measure_scaled",
    "sample_norms",
    "step_norms",
]

#: Below this fraction of the smallest resolvable value, a first pass is repeated with an up-scaled seed.
_UPSCALE_WHEN = 2.0**-30

#: Headroom kept above the largest gradient after up-scaling (intermediate BPTT values exceed the input
#: gradients); float16 has little range to spare.
_HEADROOM = 2.0**8

#: float32's first pass multiplies its seed by this power of two (exact, divided out again): a gradient of order
#: one then sits near 1e29, and a vanishing profile resolves about 60 decades in one pass instead of the 31 above
#: float32's floor (tiny/eps ~ 1e-31); a lifted pass that overflows anywhere is measured again at scale 1.
_FLOAT32_LIFT = 2.0**96

#: Down-scaling steps tried when a float16 backward overflows while the output is finite.
_OVERFLOW_RETRIES = 3


@dataclass(frozen=True)
class LagNorms:
    """Per-sample input-gradient norms of one direction of time.

    Attributes:
        direction: ``"forward"`` or ``"backward"``.
        norms: ``[B, max_lag + 1]`` float64 on CPU; column k is lag k from the loss step.
        output_is_finite: whether the output at the loss step was finite.
        floor: the resolution floor in the units of ``norms`` (the dtype's tiny/eps divided by the seed scale).
        seed_scale: the power of two the seed vector was multiplied by (``norms`` are divided by it again).
        flushed: whether the backward pass flushed denormals (never when the forward saved denormals).
    """

    direction: str
    norms: torch.Tensor
    output_is_finite: bool
    floor: float
    seed_scale: float
    flushed: bool


class SavedDenormals(torch.autograd.graph.saved_tensors_hooks):
    """Record whether any tensor the forward pass saves for the backward holds a denormal number.

    A backward pass with denormals-are-zero would read those as zero (a ReLU of a denormal state would pass
    no gradient), so :func:`backward_scope` flushes only when none was saved. float16 values are never
    denormal in the float32 arithmetic the CPU kernels use, so they are not checked.
    """

    _LIMITS: ClassVar[dict[torch.dtype, float]] = {
        torch.float32: DTYPE_LIMITS["float32"][0],
        torch.bfloat16: DTYPE_LIMITS["float32"][0],
        torch.complex64: DTYPE_LIMITS["float32"][0],
        torch.float64: DTYPE_LIMITS["float64"][0],
        torch.complex128: DTYPE_LIMITS["float64"][0],
    }

    def __init__(self) -> None:
        self._pending: list[torch.Tensor] = []
        self._checked = False
        self._found = False
        super().__init__(self._pack, lambda saved: saved)

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        # A detached alias (same storage, no copy): the pack hook gets a saved OUTPUT with its grad_fn, and
        # keeping that tensor would make a cycle output -> grad_fn -> saved variable -> output through C++
        # that Python's gc cannot see, so a graph kept for several backward passes (retain_graph=True) was
        # never freed, with every activation of the forward pass. Autograd re-attaches the grad_fn on unpack.
        saved = tensor.detach()
        if saved.dtype in self._LIMITS and saved.device.type == "cpu" and saved.numel():
            self._pending.append(saved)
        return saved

    @property
    def found(self) -> bool:
        """Whether a saved tensor holds a denormal (checked once, after the forward pass)."""
        if not self._checked:
            self._found = any(_has_denormal(t, self._LIMITS[t.dtype]) for t in self._pending)
            self._pending.clear()
            self._checked = True
        return self._found


def _has_denormal(tensor: torch.Tensor, tiny: float) -> bool:
    magnitude = tensor.detach().abs()
    return bool(torch.logical_and(magnitude < tiny, magnitude > 0).any())


def backward_scope(device: torch.device, *, flush: bool) -> contextlib.AbstractContextManager[Any]:
    """Flush denormals to zero on every CPU thread for a backward pass, when ``flush`` (and on CPU)."""
    return flush_denormals(flush and device.type == "cpu")


def sample_norms(grad: torch.Tensor) -> torch.Tensor:
    """Per-sample norms ``[B]`` (float64, CPU) of a gradient ``[B, ...]`` (see :func:`step_norms`)."""
    return step_norms(grad.reshape(grad.shape[0], 1, -1))[:, 0]


def step_norms(grad: torch.Tensor) -> torch.Tensor:
    """Per-step norms ``[B, T]`` (float64, CPU) of a batch-first gradient ``[B, T, ...]``, scaled per vector so
    values near the dtype's floor neither underflow when squared nor lose digits; complex values count by
    their modulus."""
    flat = grad.detach().reshape(grad.shape[0], grad.shape[1], -1)
    flat = flat.to(torch.complex128 if flat.is_complex() else torch.float64)
    scale = flat.abs().amax(dim=-1, keepdim=True)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    norms = safe.squeeze(-1) * torch.linalg.vector_norm(flat / safe, dim=-1)
    return norms.where(torch.isfinite(scale.squeeze(-1)), torch.full_like(norms, math.nan)).cpu()


def _seed(ctx: ProbeContext, stream: str, like: torch.Tensor) -> torch.Tensor:
    """The gaussian seed vector v (complex outputs get a complex v with independent parts)."""
    shape = tuple(like.shape)
    if like.is_complex():
        real_dtype = torch.float64 if like.dtype == torch.complex128 else torch.float32
        re = ctx.randn(stream, shape, like=like.real.to(real_dtype))
        im = ctx.randn(stream + "/imag", shape, like=like.real.to(real_dtype))
        return torch.complex(re, im).to(like.dtype)
    return ctx.randn(stream, shape, like=like)


#: The most output features ``probe_mode="exact"`` takes (one backward pass per feature).
MAX_EXACT_OUTPUTS = 256


def _seed_vectors(ctx: ProbeContext, stream: str, like: torch.Tensor) -> tuple[list[torch.Tensor], bool]:
    """The seed vectors of one direction and whether they are the exact basis.

    ``probe_mode="random"``: ``probe_vectors`` gaussian vectors per sample (the first is the one a single-vector
    probe draws, so one vector gives the same numbers); the mean of their squared norms estimates ||J_k||_F² with
    1/probe_vectors of the variance. ``probe_mode="exact"``: every basis vector of the output (and i times it for
    complex outputs): the sum of their squared norms is ||J_k||_F² itself, the expectation the random probe
    estimates, with no sampling noise from v.
    """
    cfg = ctx.config
    if getattr(cfg, "probe_mode", "random") != "exact":
        count = getattr(cfg, "probe_vectors", 1)
        return [_seed(ctx, stream if p == 0 else f"{stream}/v{p}", like) for p in range(count)], False
    features = like[0].numel()
    if features > MAX_EXACT_OUTPUTS:
        raise ConfigError(
            "probe_mode",
            "exact",
            f"the output has {features} features per step and exact mode takes one backward pass per feature "
            f"(at most {MAX_EXACT_OUTPUTS}); use probe_vectors=N (a few random vectors per sample) instead",
            source=cfg.source,
        )
    eye = torch.eye(features, dtype=like.real.dtype if like.is_complex() else like.dtype, device=like.device)
    basis = [row.reshape(like.shape[1:]).expand_as(like).to(like.dtype) for row in eye]
    if like.is_complex():
        basis += [b * 1j for b in basis]
    return basis, True


def _combined(parts: list[torch.Tensor], *, mean: bool) -> torch.Tensor:
    """sqrt of the sum (or mean) of squared norms over seed vectors, scaled so values near the floor do not
    underflow when squared."""
    stacked = torch.stack(parts)
    scale = stacked.abs().amax(dim=0)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    total = (stacked / safe).square().sum(dim=0)
    if mean:
        total = total / len(parts)
    combined = safe * total.sqrt()
    return combined.where(torch.isfinite(stacked).all(dim=0), torch.full_like(combined, math.nan))


def _loss(y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (y * v.conj()).real.sum() if y.is_complex() else (y * v).sum()


def input_gradient_norms(
    ctx: ProbeContext, inputs: torch.Tensor, *, max_lag: int, stream: str, lift: bool = True
) -> list[LagNorms]:
    """Measure N_b(k) for k = 0..max_lag in every direction of time: one forward, one backward per direction.

    Args:
        ctx: the probe context (adapter over the probe copy, settings, seeded draws).
        inputs: batch-first inputs ``[B, T, D]`` (or token ids ``[B, T]``), T > max_lag.
        max_lag: the largest lag measured.
        stream: the name of the seeded stream the seed vectors are drawn from.
        lift: in float32, lift the seed so a profile that falls through the floor resolves deeper (see
            :func:`measure_scaled`); without it, a float32 profile resolves about 31 decades under a gradient of
            order one (what the length scan needs: it stops at the first underflow).

    Returns:
        One :class:`LagNorms` per direction, in the adapter's order.
    """
    directions = ctx.adapter.directions()
    burn_in = inputs.shape[1] - (max_lag + 1)
    burned = None
    if burn_in > 0 and ctx.adapter.has_state_handover and not any(d.is_reverse for d in directions):
        # no lag reaches into the burn-in: run it without a graph and start the window from its state
        burned, inputs = inputs[:, :burn_in], inputs[:, burn_in:].detach()
    if inputs.is_floating_point() or inputs.is_complex():
        inputs.requires_grad_(True)
    total = inputs.shape[1]
    detector = SavedDenormals()
    chunks = ctx.config.checkpoint_chunks
    chunked = chunks > 1 and ctx.adapter.has_chunked_window and not any(d.is_reverse for d in directions)
    with input_gradients_only(ctx.module), torch.enable_grad():
        with detector:
            if chunked:  # the user traded time for memory: one window piece's activations at a time
                out = ctx.adapter.run_chunked(burned, inputs, chunks)
            elif burned is None:
                out = ctx.adapter.run(inputs)
            else:
                out = ctx.adapter.run_from_state(burned, inputs)
        flush = not detector.found
        return [
            _direction_norms(ctx, out, direction, total, max_lag, f"{stream}/{direction.name}", flush, lift)
            for direction in directions
        ]


def _direction_norms(
    ctx: ProbeContext,
    out: AdapterOutput,
    direction: Direction,
    total: int,
    max_lag: int,
    stream: str,
    flush: bool,
    lift: bool,
) -> LagNorms:
    # the last output step is the loss step (T - 1, or the one value of a sequence-to-one model)
    y_t = direction.select(out.output)[:, 0 if direction.is_reverse else -1]
    output_is_finite = bool(torch.isfinite(y_t).all())
    seeds, is_exact = _seed_vectors(ctx, stream, y_t)
    v = torch.stack(seeds)
    floor = resolution_floor(ctx.dtype_name)

    def measure(scale: float, flush: bool = flush) -> torch.Tensor:
        if len(seeds) == 1:
            return _raw_norms(out, direction, _loss(y_t, seeds[0] * scale), total, max_lag, ctx.device, flush)
        parts = _batched_norms(out, direction, y_t, v * scale, total, max_lag, ctx.device, flush)
        if parts is None:
            parts = [
                _raw_norms(out, direction, _loss(y_t, seed * scale), total, max_lag, ctx.device, flush)
                for seed in seeds
            ]
        return _combined(parts, mean=not is_exact)

    raw, scale = measure_scaled(measure, v, floor, ctx.dtype_name, output_is_finite=output_is_finite, lift=lift)
    if flush and _has_zero_conclusion(raw, floor):
        raw, flush = measure(scale, False), False
    return LagNorms(direction.name, raw / scale, output_is_finite, floor / scale, scale, flush)


def _raw_norms(
    out: AdapterOutput,
    direction: Direction,
    loss: torch.Tensor,
    total: int,
    max_lag: int,
    device: torch.device,
    flush: bool,
) -> torch.Tensor:
    grad = None
    if loss.requires_grad:
        with backward_scope(device, flush=flush):
            (grad,) = torch.autograd.grad(loss, out.grad_input, retain_graph=True, allow_unused=True)
    if grad is None:  # the output does not depend on the input at all
        grad = torch.zeros_like(out.grad_input)
    per_step = step_norms(out.batch_first_grad(grad))  # outside the flush scope: norms resolve to the floor
    if direction.is_reverse:
        return per_step[:, : max_lag + 1]
    return per_step[:, total - 1 - max_lag :].flip(1)


def _batched_norms(
    out: AdapterOutput,
    direction: Direction,
    y_t: torch.Tensor,
    seeds: torch.Tensor,
    total: int,
    max_lag: int,
    device: torch.device,
    flush: bool,
) -> list[torch.Tensor] | None:
    """The norms of several seed vectors ``[P, *y_t.shape]`` from ONE batched backward call (autograd's vmap),
    or ``None`` where the model's backward cannot be batched (then one backward per vector is the fallback)."""
    if y_t.is_complex() or not y_t.requires_grad:
        return None
    try:
        with backward_scope(device, flush=flush):
            (grads,) = torch.autograd.grad(
                y_t, out.grad_input, grad_outputs=seeds, retain_graph=True, is_grads_batched=True
            )
    except (RuntimeError, NotImplementedError):
        return None
    parts = []
    for grad in grads:
        per_step = step_norms(out.batch_first_grad(grad))
        parts.append(per_step[:, : max_lag + 1] if direction.is_reverse else per_step[:, total - 1 - max_lag :].flip(1))
    return parts


def measure_scaled(
    measure: Callable[[float], torch.Tensor],
    seed: torch.Tensor,
    floor: float,
    dtype: str,
    *,
    output_is_finite: bool = True,
    lift: bool = True,
) -> tuple[torch.Tensor, float]:
    """Per-sample norms ``measure(scale)`` for the loss with its seed vector times ``scale``, at the best scale.

    In float32 (with ``lift``) the first pass is lifted by :data:`_FLOAT32_LIFT`. Where it overflows, or in other
    dtypes, ``measure(1.0)`` comes first, and if its norms lie near the dtype's floor (or overflow in float16, or in
    float32 with ``lift`` fall through the floor within the window), the seed is scaled by a power of two (exact,
    see :func:`_rescale_factors`) and the pass repeated; a scaled pass that overflows anywhere is not used.

    Returns:
        The raw norms (still multiplied by the scale) and the scale.
    """
    if lift and dtype == "float32" and output_is_finite:
        lifted = measure(_FLOAT32_LIFT)
        if bool(torch.isfinite(lifted).all()):
            return lifted, _FLOAT32_LIFT
    raw = measure(1.0)
    for factor in _rescale_factors(raw, seed, floor, dtype, output_is_finite, lift=lift):
        candidate = measure(factor)
        if bool(torch.isfinite(candidate).all()):
            return candidate, factor
    return raw, 1.0


def _rescale_factors(
    raw: torch.Tensor, v: torch.Tensor, floor: float, dtype: str, output_is_finite: bool, *, lift: bool = True
) -> list[float]:
    """Powers of two to try, in order, for the seed scale (empty when the first pass is fine).

    Up-scaling, when the gradients lie near the floor, or in float32 when the profile falls through the floor
    within the window: the largest gradient goes to the dtype's maximum over :data:`_HEADROOM` (or, near the
    floor, only as far as the floor needs), and the seed itself stays far from overflow; each
    later candidate backs off by 2^4 in case intermediate BPTT values overflow. Down-scaling, when a float16
    backward overflows with a finite output (the probe's own seed can push float16 past 65504).
    """
    largest_float = torch.finfo(getattr(torch, dtype)).max
    if not output_is_finite:
        return []
    if not bool(torch.isfinite(raw).all()):
        return [2.0 ** (-8 * i) for i in range(1, _OVERFLOW_RETRIES + 1)] if dtype == "float16" else []
    big_g = rms_over_samples(raw.numpy())
    positive = big_g[big_g > 0]
    if positive.size == 0:
        return []
    if floor / float(positive[0]) > _UPSCALE_WHEN:
        target = min(largest_float / _HEADROOM, floor / _UPSCALE_WHEN) / float(positive.max())
    elif lift and dtype == "float32" and _lost_under_floor(big_g, floor):
        # float32 spans about 76 decades but a gradient of order one leaves only 31 above the floor: lifting the
        # largest gradient to the top of the range resolves a profile twice as deep (exact: a power of two)
        target = largest_float / _HEADROOM / float(positive.max())
    else:
        return []
    seed_room = largest_float / (4.0 * max(float(v.abs().max()), 1e-300))
    factor = 2.0 ** math.floor(math.log2(min(target, seed_room)))
    return [factor * 2.0 ** (-4 * i) for i in range(_OVERFLOW_RETRIES + 1) if factor * 2.0 ** (-4 * i) > 1]


def _lost_under_floor(big_g: npt.NDArray[np.float64], floor: float) -> bool:
    """Whether some finite lags of the profile are unresolved: they fell to the floor (or were flushed to zero
    after falling through it)."""
    finite, resolved = resolution_flags(big_g, floor)
    return bool(np.any(finite & ~resolved))


def _has_zero_conclusion(raw: torch.Tensor, floor: float) -> bool:
    """Whether the summary would conclude from exact zeros (no gradient, or structural finite memory)."""
    big_g = rms_over_samples(raw.numpy())
    _, resolved = resolution_flags(big_g, floor)
    positive = resolved & (big_g > 0)
    if not positive.any():
        return True
    start = int(np.argmax(positive))
    return bool(np.any(resolved[start:] & (big_g[start:] == 0)))

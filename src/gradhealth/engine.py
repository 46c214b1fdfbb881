"""The engine: ``audit(model, ...) -> Report``. Every face (pytest plugin, assertions, CLI) calls this.

Steps: validate the settings; pick an adapter through the plugin hook; make a probe copy of the model in the
probe dtype on the probe device (the user's model is never changed); run the probes, lag profile first; gather
findings; assemble the Report. Global RNG state, grad mode and (for models probed in place) modes, flags,
gradients and hooks are restored on exit, also when a probe fails.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from gradhealth import plugins
from gradhealth._state import flush_denormals, preserved_state
from gradhealth._version import __version__
from gradhealth.adapters import Adapter, Layout
from gradhealth.config import AuditConfig
from gradhealth.errors import AdapterError, ConfigError, GradhealthError, ModelCallError, ProbeError
from gradhealth.findings import make_finding, sort_findings
from gradhealth.memory import API_HINT, DEFAULT_LIMIT, check_memory, estimate_for_config, module_units
from gradhealth.probes.base import Probe, ProbeContext
from gradhealth.probes.lag_profile import LagProfile, LagProfileResult
from gradhealth.report import VERDICT_SEVERITY, Finding, Report
from gradhealth.tasks.data import DataTask, ProbeInputs, probe_window

__all__ = ["audit", "check_device", "run_audit"]


def audit(
    model: Any,
    *,
    seq_len: int | None = None,
    input_size: int | None = None,
    batch_size: int | None = None,
    task: str | None = None,
    input_scale: float | None = None,
    burn_in: int | None = None,
    eps: float | None = None,
    seed: int | None = None,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
    probes: str | Sequence[str] | None = None,
    length_scan_lengths: Sequence[int] | None = None,
    lyapunov_top_k: int | None = None,
    gradient_splits: int | None = None,
    summary: str | None = None,
    probe_vectors: int | None = None,
    probe_mode: str | None = None,
    interval_level: float | None = None,
    bootstrap_samples: int | None = None,
    target_horizon_precision: float | None = None,
    max_probe_batches: int | None = None,
    checkpoint_chunks: int | None = None,
    layout: Layout | None = None,
    inputs: Any = None,
    memory_limit: int | str | None = None,
) -> Report:
    """Audit gradient flow through time in a recurrent model.

    Every setting left at ``None`` takes the default of the settings table (:mod:`gradhealth.settings`), the
    same on every face (the CLI, the pytest plugin): the defaults are shown in brackets.

    Args:
        model: an ``nn.RNN/LSTM/GRU``, a ``*Cell``, a :class:`gradhealth.Unrolled` step function, a token-id
            model, or any module/callable mapping ``[B, T, D]`` to ``[B, T, O]`` (see ``layout``).
        seq_len: the dependency length K; lags 0..K are probed [100].
        input_size: features per step [inferred from the model where it tells].
        batch_size: number of probe sequences [32].
        task: input task: ``noise``, ``impulse``, ``copy``, ``adding``, ``delayed_recall`` [``noise``].
        input_scale: input standard deviation s [1.0].
        burn_in: steps before the probed window [K: lags measured in steady state].
        eps: horizon threshold ε; 1e-3 is always reported too [0.01].
        seed: seeds every random draw; same arguments give the same numbers, bit for bit on CPU [0].
        dtype: probe dtype [auto: the model's own, float32 or float64 (half-precision models in float32); a float32
            audit whose lag profile leaves a lag unresolved is measured again in float64; the report's
            ``model["probe_dtype_reason"]`` says which and why].
        device: probe device [the model's own].
        probes: a preset (``quick``, ``standard``, ``thorough``) or probe names [``standard``].
        length_scan_lengths: sequence lengths of the ``length_scan`` probe [16, 32, ..., 4096].
        lyapunov_top_k: exponents computed by the ``lyapunov`` probe, at most the state size [4].
        gradient_splits: sub-batches of the ``parameter_gradients`` probe [1].
        probe_vectors: random seed vectors per probe sample; N backward passes, 1/N of the variance [1].
        probe_mode: ``random`` seed vectors, or ``exact``: the Frobenius norm of each Jacobian block through every
            output basis vector (outputs of at most 256 features) [``random``].
        summary: ``rms`` or ``median``: how the per-sample norms make the lag profile [``rms``].
        interval_level: level of the interval on every headline number [0.9].
        bootstrap_samples: bootstrap resamples behind each interval; 0 computes none [200].
        target_horizon_precision: add probe batches of ``batch_size`` until the horizon's interval is within this
            relative half-width (0.05: ±5%) [none: one batch].
        max_probe_batches: the most batches ``target_horizon_precision`` may use [8].
        checkpoint_chunks: trade time for memory on long K: the lag profile's backward over the window runs in
            this many chunks under ``torch.utils.checkpoint``, keeping about 1/N of the activations at the cost of
            one more forward pass; the numbers are unchanged. nn.RNN/LSTM/GRU (unidirectional) and cells; other
            models run in one piece [1].
        layout: how to call the model and read its output, where gradhealth cannot tell.
        inputs: probe with these sequences instead of a synthetic task: a ``[B, T, D]`` float tensor or array,
            ``[B, T]`` token ids, a list of them, or an iterable of batches such as a ``DataLoader`` (see
            :mod:`gradhealth.tasks.data`). The first ``batch_size`` sequences are used; K and the burn-in come
            from their length T = burn_in + K + 1 (neither given: K = (T - 1) // 2). The report records their
            shape, dtype and content hash in ``Report.inputs``, never the data.
        memory_limit: refuse, before allocating anything, an audit whose probes are estimated to need more
            memory than this (bytes, or text such as ``'16GiB'``; ``'none'``: no limit) [4GiB]. The estimate
            comes from the model's parameter count, its state size and the settings (see :mod:`gradhealth.memory`).

    Returns:
        The :class:`~gradhealth.report.Report`.

    Raises:
        ConfigError: a setting is invalid (including a ``meta`` device or one this machine lacks).
        MemoryLimitError: the probes would need more memory than ``memory_limit`` (the message gives the estimate).
        AdapterError: the model cannot be driven as a sequence model with this layout, or its tensors are on the
            ``meta`` device.
        ModelCallError: the model raised when called on the probe input.
        ProbeError: a probe failed in a way gradhealth did not foresee (naming the probe).

    The model is probed through a deep copy, from which the forward and backward hooks you registered are removed
    (torch's own, such as ``weight_norm``'s, stay), so they never record probe traffic; your model keeps them.
    Afterwards Python's ``random``, torch's RNG streams, grad mode, anomaly mode (the probes run with it off: a NaN
    is reported as the ``non_finite`` verdict, not raised) and every torch thread's denormal mode are as they
    were.

    Example:
        >>> import torch, gradhealth
        >>> report = gradhealth.audit(torch.nn.RNN(4, 16, batch_first=True), seq_len=40, batch_size=4)
        >>> report.verdict
        'vanishing'
    """
    given: dict[str, Any] = {
        "seq_len": seq_len,
        "input_size": input_size,
        "batch_size": batch_size,
        "task": task,
        "input_scale": input_scale,
        "burn_in": burn_in,
        "eps": eps,
        "seed": seed,
        "dtype": _dtype_name(dtype),
        "device": str(device) if device is not None else None,
        "probes": _probes_setting(probes),
        "length_scan_lengths": length_scan_lengths,
        "lyapunov_top_k": lyapunov_top_k,
        "gradient_splits": gradient_splits,
        "summary": summary,
        "probe_vectors": probe_vectors,
        "probe_mode": probe_mode,
        "interval_level": interval_level,
        "bootstrap_samples": bootstrap_samples,
        "target_horizon_precision": target_horizon_precision,
        "max_probe_batches": max_probe_batches,
        "checkpoint_chunks": checkpoint_chunks,
    }
    limit = _memory_limit(memory_limit)
    data = _read_inputs(inputs, given) if inputs is not None else None
    config = AuditConfig(**{name: value for name, value in given.items() if value is not None})
    return run_audit(model, config, layout, inputs=data, memory_limit=limit)


def _memory_limit(value: int | str | None) -> int | None:
    """The ``memory_limit`` argument in bytes (``None``: the table's default; ``'none'``: no limit)."""
    from gradhealth.settings import SETTINGS

    setting = SETTINGS["memory_limit"]
    if value is None:
        return int(setting.default)
    if isinstance(value, str):
        return setting.parse(value, source="argument")
    return setting.check(value, source="argument")


def _read_inputs(inputs: Any, given: dict[str, Any]) -> ProbeInputs:
    """Read the user's sequences and fit ``given``'s lag window, batch size and task to them (in place)."""
    from gradhealth.settings import SETTINGS
    from gradhealth.tasks.data import read_inputs

    if given["task"] is not None:
        raise ConfigError("task", given["task"], "cannot be combined with inputs=: the inputs are the probe")
    checked = {
        name: SETTINGS[name].check(given[name], source="argument") if given[name] is not None else None
        for name in ("seq_len", "burn_in", "batch_size")
    }
    data = read_inputs(inputs, limit=checked["batch_size"] or SETTINGS["batch_size"].default)
    seq_len, burn_in = probe_window(data.seq_len, seq_len=checked["seq_len"], burn_in=checked["burn_in"])
    given.update(seq_len=seq_len, burn_in=burn_in, batch_size=data.count, task=DataTask.name)
    return data


def _dtype_name(dtype: str | torch.dtype | None) -> str | None:
    if isinstance(dtype, torch.dtype):
        return str(dtype).removeprefix("torch.")
    return dtype


def _probes_setting(probes: str | Sequence[str] | None) -> str | tuple[str, ...] | None:
    from gradhealth.config import PRESETS

    if probes is None:
        return None
    if isinstance(probes, str):
        return probes if probes in PRESETS else (probes,)
    return tuple(probes)


def run_audit(
    model: Any,
    config: AuditConfig,
    layout: Layout | None = None,
    *,
    inputs: ProbeInputs | None = None,
    memory_limit: int | None = DEFAULT_LIMIT,
) -> Report:
    """Run an audit from an already validated :class:`AuditConfig` (what the faces call).

    With ``inputs`` (from :func:`gradhealth.tasks.data.read_inputs`), every probe that draws task inputs gets
    those sequences; ``config.total_len`` must fit in them (see :func:`gradhealth.tasks.data.probe_window`).
    Before the probe copy is made, the probes' memory is estimated and refused above ``memory_limit`` bytes
    (``None``: no limit) with :class:`~gradhealth.errors.MemoryLimitError`.
    """
    adapter = plugins.adapt(model, layout)
    task: Any
    if inputs is None:
        task = plugins.get_task(config.task)
    else:
        task, config = _data_task(inputs, config, adapter)
    probe_list, skipped = _select_probes(config, adapter)
    _refuse_meta(adapter)
    _check_memory(adapter, config, memory_limit)
    device = _resolve_device(config, adapter)
    # Anomaly mode off in our own scope: a caller's anomaly mode turns a NaN gradient into an exception, and
    # non_finite is a verdict to report, not an error.
    with preserved_state(model), _cudnn_scope(device), torch.autograd.set_detect_anomaly(False):
        # an opaque callable runs as it is (it cannot be copied or put in eval mode): any randomness it draws
        # from the global CPU generator is seeded, so the same settings still give the same numbers
        candidates, reason = _dtype_candidates(config, adapter, device)
        torch.default_generator.manual_seed(config.seed)
        ctx, notes, reason = _prepare(adapter, config, task, device, candidates, reason)
        flushing = _flush_notes(device)
        results: dict[str, Any] = {}
        lag_probe, others = probe_list[0], probe_list[1:]
        with _probe_errors(lag_probe.name, adapter):
            results[lag_probe.name] = lag_probe.run(ctx)
        shortfall = _float32_shortfall(results[lag_probe.name]) if len(candidates) > 1 else None
        if shortfall is not None and ctx.dtype == torch.float32 and candidates[-1] == torch.float64:
            # auto: float32 did not resolve every lag float64 may resolve; measure everything again in float64,
            # from the same seeds, so the report equals a float64 audit
            torch.default_generator.manual_seed(config.seed)
            try:
                ctx64, notes64, _ = _prepare(adapter, config, task, device, [torch.float64], reason)
            except ModelCallError as exc:
                reason += f"; {shortfall}, and the model failed in float64 ({exc}), so the float32 numbers stand"
            else:
                ctx, notes, reason = ctx64, notes64, f"auto: {shortfall}; measured again in float64"
                with _probe_errors(lag_probe.name, adapter):
                    results[lag_probe.name] = lag_probe.run(ctx)
        findings: list[Finding] = [*notes, *flushing, *lag_probe.findings(results[lag_probe.name], ctx)]
        for probe in others:
            with _probe_errors(probe.name, adapter):
                results[probe.name] = probe.run(ctx)
                findings.extend(probe.findings(results[probe.name], ctx))
    report = _assemble(results, findings, skipped, ctx, reason)
    report.inputs = inputs.info if inputs is not None else None
    report.findings = sort_findings(report.findings + plugins.extra_findings(report))
    return report


def _data_task(inputs: ProbeInputs, config: AuditConfig, adapter: Adapter) -> tuple[DataTask, AuditConfig]:
    """The task serving the user's sequences, checked against the model and the lag window."""
    if config.total_len > inputs.seq_len:
        probe_window(inputs.seq_len, seq_len=config.seq_len, burn_in=config.effective_burn_in)
    if not inputs.is_tokens and config.input_size is None and adapter.input_size is None:
        config = dataclasses.replace(config, input_size=int(inputs.tensor.shape[2]))
    task = DataTask(inputs)
    task.check_fits(input_size=_input_size(config, adapter), vocab_size=adapter.vocab_size)
    return task, config


def _select_probes(config: AuditConfig, adapter: Adapter) -> tuple[list[Probe], dict[str, str]]:
    registry = plugins.probe_classes()
    explicit = not isinstance(config.probes, str)
    names = list(dict.fromkeys(("lag_profile", *config.probe_names)))
    selected, skipped = [], {}
    for name in names:
        if name not in registry:
            if explicit:
                raise ConfigError(
                    "probes", name, f"unknown probe; known probes: {', '.join(sorted(registry))}", source=config.source
                )
            skipped[name] = "not installed"
            continue
        probe = registry[name]()
        reason = probe.skip_reason(adapter)
        if reason is not None:
            skipped[name] = reason
        else:
            selected.append(probe)
    return selected, skipped


@contextlib.contextmanager
def _probe_errors(name: str, adapter: Adapter) -> Iterator[None]:
    """A probe's unexpected exception becomes a :class:`ProbeError` naming the probe and the model."""
    try:
        yield
    except GradhealthError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ProbeError(
            f"the {name} probe failed on {type(adapter.model).__name__}: {type(exc).__name__}: {first}; "
            f"leave it out (probes=...) and report this with the model's description",
            probe=name,
        ) from exc


def _refuse_meta(adapter: Adapter) -> None:
    module = adapter.module
    if module is None:
        return
    tensors = itertools.chain(module.parameters(), module.buffers())
    if any(t.is_meta for t in tensors):
        raise AdapterError(
            f"{type(adapter.model).__name__} has tensors on the meta device, which hold no values to probe; load "
            "its weights first (model.to_empty(device='cpu') then load_state_dict)",
            model=adapter.model,
        )


def _check_memory(adapter: Adapter, config: AuditConfig, limit: int | None) -> None:
    """Refuse, from sizes alone (nothing is allocated), an audit whose probes would need more than ``limit``."""
    if limit is None:
        return
    module = adapter.module
    parameters, units = module_units(module) if module is not None else (0, 0)
    check_memory(
        estimate_for_config(
            parameters, units, config, can_chunk=adapter.has_chunked_window, handover=adapter.has_state_handover
        ),
        limit,
        f"auditing {type(adapter.model).__name__} (seq_len {config.seq_len}, batch_size {config.batch_size}, "
        f"{units} state units)",
        hint=API_HINT,
    )


def _resolve_device(config: AuditConfig, adapter: Adapter) -> torch.device:
    if config.device is None:
        module = adapter.module
        param = next(iter(module.parameters()), None) if module is not None else None
        return param.device if param is not None else torch.device("cpu")
    try:
        device = torch.device(config.device)
    except RuntimeError as exc:
        raise ConfigError("device", config.device, str(exc).splitlines()[0], source=config.source) from exc
    check_device(device, source=config.source)
    return device


def check_device(device: torch.device, *, source: str = "argument") -> None:
    """Refuse a device that cannot hold the probe's numbers: ``meta``, or one this torch build or machine lacks.

    Raises:
        ConfigError: naming the device and what to use instead.
    """
    if device.type == "meta":
        raise ConfigError("device", str(device), "meta tensors hold no values to probe; use cpu or cuda", source=source)
    try:
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError) as exc:  # torch asserts when it was built without CUDA
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError("device", str(device), f"not usable here ({first}); use cpu", source=source) from exc


def _cudnn_scope(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    # cuDNN's RNN backward refuses eval mode; the native kernels compute the same gradients. Scoped, so the
    # user's global cuDNN flags are untouched.
    if device.type == "cuda":
        return torch.backends.cudnn.flags(enabled=False)
    return contextlib.nullcontext()


def _input_size(config: AuditConfig, adapter: Adapter) -> int:
    known = adapter.input_size
    if config.input_size is not None:
        # the user's value wins over what gradhealth reads from the model (an inner layer may take other
        # features than the model itself); a wrong one fails in the smoke call with the model's own error
        return config.input_size if adapter.vocab_size is None else (known or config.input_size)
    if known is None:
        raise ConfigError(
            "input_size",
            None,
            f"cannot infer the input size of {type(adapter.model).__name__}; pass input_size=",
            source=config.source,
        )
    return known


#: Floating dtypes the auto probe dtype follows as they are; lower precisions are probed in float32.
_FOLLOWED = (torch.float32, torch.float64)


def model_dtype(adapter: Adapter) -> torch.dtype | None:
    """The model's own floating dtype: that of its first floating (or complex: its real counterpart) parameter or
    buffer; ``None`` for a model without one (an opaque callable, a model of integer tensors only)."""
    module = adapter.module
    if module is None:
        return None
    for t in itertools.chain(module.parameters(), module.buffers()):
        if t.is_complex():
            return t.real.dtype
        if t.is_floating_point():
            return t.dtype
    return None


def _dtype_candidates(config: AuditConfig, adapter: Adapter, device: torch.device) -> tuple[list[torch.dtype], str]:
    """The probe dtypes to try, first the preferred, and why it is preferred.

    Auto (``dtype=None``) follows the model: a float64 model is probed in float64, any other in float32, on every
    device. With float32 first and float64 second, the engine measures everything again in float64 when the
    float32 lag profile leaves a lag unresolved (below float32's floor, or not finite): a float32 report is kept
    only when float64 could not have resolved more of it.
    """
    if config.dtype is not None:
        return [getattr(torch, config.dtype)], "requested"
    own = model_dtype(adapter)
    float64_ok = device.type in ("cpu", "cuda")
    if own == torch.float64 and float64_ok:
        return [torch.float64, torch.float32], "auto: the model's own dtype"
    if own is None:
        why = "auto: the model has no floating-point weights; float32, torch's default"
    elif own == torch.float32:
        why = "auto: the model's own dtype"
    else:
        name = str(own).removeprefix("torch.")
        why = f"auto: the model is {name}, probed in float32 (dtype='{name}' probes in its own precision)"
    if not float64_ok:
        return [torch.float32], why + f"; no float64 on {device.type}"
    return [torch.float32, torch.float64], why + "; every lag resolved in float32"


def _float32_shortfall(result: LagProfileResult) -> str | None:
    """Why a float32 lag profile is not the float64 one up to rounding: lags it left unresolved; ``None`` if none."""
    for d in result.directions:
        resolved = d.profile.resolved
        if not all(resolved):
            where = f" ({d.name})" if len(result.directions) > 1 else ""
            return f"float32 resolved {sum(resolved)} of the profile's {len(resolved)} lags{where}"
    return None


def _prepare(
    adapter: Adapter,
    config: AuditConfig,
    task: Any,
    device: torch.device,
    candidates: list[torch.dtype],
    reason: str,
) -> tuple[ProbeContext, list[Finding], str]:
    """Make the probe copy in the first candidate dtype that runs, and check it runs.

    Returns the context, the engine's notes (GH901 when float64 failed) and why the dtype was chosen."""
    input_size = _input_size(config, adapter)
    notes: list[Finding] = []
    for i, dtype in enumerate(candidates):
        copy = adapter.materialize(dtype, device)
        if isinstance(copy.model, nn.Module):
            copy.model.eval()
        elif copy.module is not None:
            copy.module.eval()
        ctx = ProbeContext(copy, config, task, dtype, device, input_size, plugins.task_registry())
        try:
            copy.prepare(_draw(ctx))
            _smoke_test(ctx)
        except ModelCallError as exc:
            if i + 1 == len(candidates):
                raise
            name, fallback = str(dtype).removeprefix("torch."), str(candidates[i + 1]).removeprefix("torch.")
            if dtype == torch.float64:
                notes = [make_finding("GH901", f"float64 failed ({exc}); probed in float32", probe="engine")]
            reason = f"auto: the model failed in {name} ({exc}); probed in {fallback}"
            continue
        return ctx, notes, reason
    raise AssertionError("unreachable")


def _flush_notes(device: torch.device) -> list[Finding]:
    """A speed note when the backward passes cannot flush denormals on every CPU thread (numbers unaffected)."""
    if device.type != "cpu":
        return []
    with flush_denormals() as status:
        reason = status.reason
    if reason is None:
        return []
    return [make_finding("GH902", f"denormals are not flushed on every CPU thread: {reason}", probe="engine")]


def _draw(ctx: ProbeContext) -> Callable[[int, int], torch.Tensor]:
    def draw(batch_size: int, steps: int) -> torch.Tensor:
        return ctx.make_batch("layout", batch_size=batch_size, total_len=steps).inputs

    return draw


def _smoke_test(ctx: ProbeContext) -> None:
    """One tiny forward pass: catches dtype and shape problems with a clear message before the real probes.

    Three steps first; a model that needs a minimum or fixed length fails there and is tried again at the
    probe's own length, whose failure is the one reported."""
    try:
        with torch.no_grad():
            ctx.adapter.run(ctx.make_batch("smoke", batch_size=2, total_len=3).inputs)
    except ModelCallError:
        with torch.no_grad():
            ctx.adapter.run(ctx.make_batch("smoke", batch_size=2).inputs)


def _primary(results: LagProfileResult) -> int:
    def badness(i: int) -> tuple[int, float]:
        d = results.directions[i]
        return (-VERDICT_SEVERITY[d.verdict], d.metrics.horizon)

    return min(range(len(results.directions)), key=badness)


def _to_plain(result: Any) -> Any:
    if hasattr(result, "to_dict"):
        return result.to_dict()
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    return result


def _assemble(
    results: dict[str, Any], findings: list[Finding], skipped: dict[str, str], ctx: ProbeContext, dtype_reason: str
) -> Report:
    lag: LagProfileResult = results.pop(LagProfile.name)
    primary = lag.directions[_primary(lag)]
    model_info = ctx.adapter.describe()
    model_info["probe_dtype"] = ctx.dtype_name
    model_info["probe_dtype_reason"] = dtype_reason
    config = ctx.config.to_dict()
    config.update(dtype=ctx.dtype_name, device=str(ctx.device), input_size=ctx.input_size)
    return Report(
        verdict=primary.verdict,
        metrics=primary.metrics,
        profile=primary.profile,
        tags=list(primary.tags),
        directions=lag.directions,
        findings=findings,
        probes={name: _to_plain(r) for name, r in results.items()},
        config=config,
        model=model_info,
        skipped_probes=skipped,
        primary_direction=primary.name,
        gradhealth_version=__version__,
    )

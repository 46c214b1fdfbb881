"""The adapter contract: bring any recurrent model to one shape, ``x[B, T, D] -> y[B, T, O]``.

An adapter wraps a model and knows three things the probes need: how to call it on a batch-first sequence, where
the gradient is taken (the input itself, or an embedding output for token-id models), and which output features
belong to which direction of time.
"""

from __future__ import annotations

import abc
import copy
import dataclasses
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gradhealth.errors import AdapterError, ModelCallError

__all__ = [
    "Adapter",
    "AdapterOutput",
    "Direction",
    "Layout",
    "accepts_keyword",
    "cast_module",
    "cast_tensor",
    "complex_dtype_for",
    "deep_copy",
    "describe_value",
    "infer_input_size",
    "input_size_source",
    "owning_module",
    "select_output",
]

#: The complex dtype that keeps a complex tensor at a real probe dtype's precision (half precisions widen to
#: complex64: torch's complex32 has almost no kernels).
_COMPLEX_FOR = {torch.float64: torch.complex128, torch.float32: torch.complex64}

OutputSelector = int | str | Callable[[Any], torch.Tensor]

#: Keys tried, in order, on a mapping (or attributes on a dataclass) the model returns.
OUTPUT_KEYS = ("output", "outputs", "last_hidden_state", "hidden_states", "logits", "y")

#: Method names that mark a model keeping state between calls; called before and after every probe run.
RESET_METHODS = ("reset_state", "reset_states", "reset_hidden")

#: Attributes of the model ITSELF read as its features per step, before any inner layer is consulted.
_OWN_INPUT_SIZE = ("input_size", "input_dim", "in_features", "in_channels", "n_features", "num_features", "d_input")

#: What ``Layout.call`` returns: the positional and keyword arguments of one model call.
CallArguments = tuple[tuple[Any, ...], dict[str, Any]]


@dataclass(frozen=True)
class Layout:
    """How a model takes its sequence and gives its output, where gradhealth cannot tell by itself.

    Attributes:
        batch_first: ``True`` for ``[B, T, D]``, ``False`` for time-major ``[T, B, D]``; ``None`` reads the
            model's own ``batch_first`` attribute where it has one, else finds the time axis from a short probe
            call (the input axis the output mixes along), and refuses to guess when both axes mix.
        input_arg: positional index or keyword name of the sequence argument of ``forward``.
        output: picks the sequence from what the model returns: an index, a key/attribute name, or a callable.
            ``None`` takes the tensor itself, or the first 3-D (else 2-D) batch tensor of a tuple, dict or
            dataclass. A ``[B, O]`` output is one value per sequence (sequence-to-one): the loss sits on it.
        token_input: ``True`` if the model takes token ids (gradient at the embedding output); ``None`` decides
            by whether the model contains an ``nn.Embedding``.
        embedding: dotted name of the embedding submodule whose output receives the gradient.
        bidirectional: ``True`` if the output's feature halves are the forward and backward directions.
        reset: method name or callable ``(model) -> None`` that clears a stateful model's carried state;
            ``None`` calls ``reset_state``/``reset_states``/``reset_hidden`` when the model has one.
        forward_kwargs: extra keyword arguments passed to every call.
        call: builds one model call from the probe sequence: a callable ``x -> (args, kwargs)`` (or ``x ->
            args`` as a tuple) for models whose forward takes a dict, a dataclass or namedtuple, several
            tensors or batch-dependent arguments (``lengths`` of packed sequences). ``x`` is the probe tensor
            (``[B, T, D]``, or ``[T, B, D]`` for a time-major model; ``[B, D]`` per step with
            ``step_per_call``); the gradient is taken at it, so build every input the model reads from ``x``.
            Replaces ``input_arg``; ``forward_kwargs`` are still added.
        forecast_step: for a forecaster whose output's time axis is its forecast horizon (``[B, h, O]`` or
            ``[B, h]``), the horizon step the loss sits at (0 is the first forecast step; negative counts from
            the end). The lag profile is then measured back from the end of the input.
        step_per_call: ``True`` for a streaming model that takes ONE step per call (``x_t``: ``[B, D]``) and
            carries its state in attributes: it is called once per step over the sequence (reset before and
            after, see ``reset``), and the gradient flows through the carried state. Works for TorchScript
            modules (no hooks are used).
    """

    batch_first: bool | None = None
    input_arg: int | str = 0
    output: OutputSelector | None = None
    token_input: bool | None = None
    embedding: str | None = None
    bidirectional: bool = False
    reset: str | Callable[[Any], None] | None = None
    forward_kwargs: Mapping[str, Any] = field(default_factory=dict)
    call: Callable[[torch.Tensor], CallArguments | tuple[Any, ...]] | None = None
    forecast_step: int | None = None
    step_per_call: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain-data description for the report (callables shown by name)."""
        data = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if callable(value):
                value = getattr(value, "__qualname__", repr(value))
            elif isinstance(value, Mapping):
                value = sorted(value)
            data[f.name] = value
        return data


@dataclass(frozen=True)
class Direction:
    """One direction of time in a model's output.

    Attributes:
        name: ``"forward"`` or ``"backward"``.
        half: which half of the output features belong to it (0 first, 1 second; ``None``: all), the layout
            of PyTorch's bidirectional modules.
        is_reverse: the direction runs from the end to the start, so its loss sits at step 0 and lag k is step k.
    """

    name: str
    half: int | None = None
    is_reverse: bool = False

    def select(self, output: torch.Tensor) -> torch.Tensor:
        """The features of ``output`` that belong to this direction."""
        if self.half is None:
            return output
        width = output.shape[-1] // 2
        return output[..., self.half * width : (self.half + 1) * width]


@dataclass(frozen=True)
class AdapterOutput:
    """What one adapted call gives: the tensor gradients are taken at, and the batch-first output sequence.

    ``grad_input`` must be the very tensor the graph was built from (a leaf or the model's input), never a view
    made afterwards, or autograd would see no path to it; ``is_time_major`` says its layout is ``[T, B, D]``.
    """

    grad_input: torch.Tensor
    output: torch.Tensor
    is_time_major: bool = False
    #: the output is ``[B, 1, O]``: one value for the whole sequence (sequence-to-one, or one forecast step);
    #: its loss step is the last input step.
    last_only: bool = False

    def batch_first_grad(self, grad: torch.Tensor) -> torch.Tensor:
        """A gradient with respect to ``grad_input``, as ``[B, T, D]``."""
        return grad.transpose(0, 1) if self.is_time_major else grad


def describe_value(value: Any) -> str:
    """Short description of a model's return value, for error messages."""
    if isinstance(value, torch.Tensor):
        return f"Tensor{tuple(value.shape)}"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k!r}: {describe_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (tuple, list)):
        return type(value).__name__ + "(" + ", ".join(describe_value(v) for v in value) + ")"
    if dataclasses.is_dataclass(value):
        inner = ", ".join(f"{f.name}={describe_value(getattr(value, f.name))}" for f in dataclasses.fields(value))
        return f"{type(value).__name__}({inner})"
    return type(value).__name__


def _candidates(value: Any) -> Iterator[Any]:
    if isinstance(value, Mapping):
        yield from (value[k] for k in OUTPUT_KEYS if k in value)
        yield from value.values()
    elif isinstance(value, (tuple, list)):
        yield from value
    elif dataclasses.is_dataclass(value):
        names = [f.name for f in dataclasses.fields(value)]
        yield from (getattr(value, k) for k in OUTPUT_KEYS if k in names)
        yield from (getattr(value, k) for k in names)


def select_output(value: Any, selector: OutputSelector | None, batch: int | None = None) -> torch.Tensor:
    """Pick the output sequence out of whatever a model returns.

    Without a selector: the tensor itself, else (in a tuple, dict or dataclass) the first 3-D tensor whose
    first axis is the batch, then the first 2-D one (one value per sequence), then the first 3-D tensor.

    Raises:
        AdapterError: nothing fits; the message shows what the model returned and how to choose.
    """
    hint = "pass layout=gradhealth.Layout(output=...) with an index, key or callable"
    try:
        if callable(selector):
            picked = selector(value)
        elif isinstance(selector, int):
            picked = value[selector]
        elif isinstance(selector, str):
            picked = value[selector] if isinstance(value, Mapping) else getattr(value, selector)
        elif isinstance(value, torch.Tensor):
            picked = value
        else:
            tensors = [c for c in _candidates(value) if isinstance(c, torch.Tensor)]
            found = [c for c in tensors if c.dim() == 3 and batch in (None, c.shape[0])]
            found += [c for c in tensors if c.dim() == 2 and batch is not None and c.shape[0] == batch]
            found += [c for c in tensors if c.dim() == 3]
            if not found:
                raise AdapterError(
                    f"the model returned {describe_value(value)}, which holds no 3-D [batch, time, features] "
                    f"tensor; {hint}"
                )
            picked = found[0]
    except (KeyError, IndexError, AttributeError, TypeError) as exc:
        raise AdapterError(
            f"output selector {selector!r} does not fit the model's return value {describe_value(value)}: "
            f"{type(exc).__name__}: {exc}; {hint}"
        ) from exc
    if not isinstance(picked, torch.Tensor):
        raise AdapterError(f"the output selector picked {describe_value(picked)}, not a tensor; {hint}")
    return picked


def complex_dtype_for(dtype: torch.dtype) -> torch.dtype:
    """The complex dtype matching a real probe dtype's precision."""
    return _COMPLEX_FOR.get(dtype, torch.complex64)


def cast_tensor(tensor: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Move a tensor to the probe device; floating tensors take ``dtype``, complex tensors the complex dtype of
    the same precision (their imaginary part is kept), integer and boolean tensors keep theirs."""
    if tensor.is_complex():
        return tensor.to(device, complex_dtype_for(dtype))
    if tensor.is_floating_point():
        return tensor.to(device, dtype)
    return tensor.to(device)


def cast_module(module: nn.Module, dtype: torch.dtype, device: torch.device) -> nn.Module:
    """:meth:`nn.Module.to` for a probe copy, except that complex parameters and buffers stay complex
    (``Module.to(float64)`` would discard their imaginary part)."""
    return module._apply(lambda t: cast_tensor(t, dtype, device))  # type: ignore[no-untyped-call]


#: Per-module hook dictionaries (hook id -> hook) and the flag dictionaries keyed by the same ids.
_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_HOOK_FLAGS = ("_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs")


def remove_user_hooks(module: nn.Module) -> None:
    """Remove the forward and backward hooks a user registered from every submodule of a probe copy, so that
    recorders, loggers and activation caches never see probe traffic. torch's own hooks (``weight_norm``,
    ``spectral_norm``: they compute the weights) are kept."""
    for sub in module.modules():
        for name in _HOOKS:
            hooks = getattr(sub, name, None)
            if not isinstance(hooks, dict):
                continue
            for key in [k for k, hook in hooks.items() if not _is_torch_hook(hook)]:
                del hooks[key]
                for flags in (getattr(sub, f, None) for f in _HOOK_FLAGS):
                    if isinstance(flags, dict):
                        flags.pop(key, None)


def _is_torch_hook(hook: Any) -> bool:
    owner = getattr(hook, "__module__", None) or type(hook).__module__
    return isinstance(owner, str) and (owner == "torch" or owner.startswith("torch."))


def infer_input_size(module: nn.Module) -> int | None:
    """Features per step (see :func:`input_size_source`)."""
    return input_size_source(module)[0]


def input_size_source(module: nn.Module) -> tuple[int | None, str | None]:
    """Features per step, and where the number came from.

    The model's own interface first: an integer attribute of the model itself (``input_size``, the convention
    of recurrent layers and custom ones, or ``input_dim``, ``in_features``, ``in_channels``, ``n_features``,
    ``num_features``, ``d_input``), or the model being a linear or 1-d convolution layer. Only
    then the first submodule, in registration order, that tells; such a guess is checked by the smoke call,
    and the error says where it came from (an inner layer may take other features than the model).
    """
    for attr in _OWN_INPUT_SIZE:
        own = getattr(module, attr, None)
        if isinstance(own, int) and not isinstance(own, bool) and own > 0:
            return own, f"{type(module).__name__}.{attr}"
    for name, sub in module.named_modules():
        where = f"{type(module).__name__}" if not name else f"inner layer {name!r} ({type(sub).__name__})"
        own = getattr(sub, "input_size", None)
        if isinstance(own, int) and not isinstance(own, bool):
            return own, f"{where}.input_size"
        if isinstance(sub, nn.Linear):
            return int(sub.in_features), f"{where}.in_features"
        if isinstance(sub, nn.Conv1d):
            return int(sub.in_channels), f"{where}.in_channels"
    return None, None


def accepts_keyword(fn: Any, name: str) -> bool:
    """Whether ``fn`` (a module's forward or any callable) has a parameter named ``name``."""
    target = fn.forward if isinstance(fn, nn.Module) else fn
    try:
        return name in inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False


def deep_copy(model: Any) -> Any:
    """``copy.deepcopy`` of a model; tensor attributes still carrying an autograd graph (state kept after a
    training step) are detached on the copy (deepcopy refuses non-leaf tensors).

    Raises:
        AdapterError: the model cannot be copied; names the attribute where known.
    """
    memo: dict[int, Any] = {}
    root = owning_module(model)
    if root is not None and not isinstance(root, torch.jit.ScriptModule):
        for module in root.modules():
            for value in vars(module).values():
                for tensor in value if isinstance(value, (list, tuple)) else (value,):
                    if isinstance(tensor, torch.Tensor) and tensor.grad_fn is not None:
                        memo[id(tensor)] = tensor.detach().clone()
    try:
        with torch.no_grad():  # a TorchScript module's copy would otherwise clone its parameters into non-leaves
            return copy.deepcopy(model, memo)
    except Exception as exc:
        raise AdapterError(
            f"cannot make a probe copy of {type(model).__name__}: {type(exc).__name__}: "
            f"{(str(exc).strip().splitlines() or [''])[0]}; make the model deep-copyable (no open files, locks or "
            "graph-holding tensors in containers), or clear its state before the audit",
            model=model,
        ) from exc


def owning_module(fn: Any) -> nn.Module | None:
    """The module behind a model: the module itself, the instance of a bound method (``model.step``), or the
    step of a :class:`~gradhealth.Unrolled`; ``None`` for an opaque callable."""
    if isinstance(fn, nn.Module):
        return fn
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, nn.Module):
        return owner
    step = getattr(fn, "step", None)
    return owning_module(step) if step is not None and step is not fn else None


class Adapter(abc.ABC):
    """Drives one model as ``x[B, T, D] -> y[B, T, O]`` for the probes.

    Subclasses implement :meth:`_forward`; the base class validates shapes, turns the model's own exceptions
    into :class:`ModelCallError` with the input shape and a hint, and handles copying to a probe dtype/device.
    A model returning one value per sequence (``[B, O]``: classifiers, encoders returning their final state) is
    sequence-to-one: its output counts as the last step's (``AdapterOutput.last_only``).
    """

    #: short family name shown in reports, e.g. ``"torch.nn.LSTM"``.
    family: str = "sequence"

    def __init__(self, model: Any, layout: Layout) -> None:
        self.model = model
        self.layout = layout
        #: what the last call returned: ``sequence``, ``sequence-to-one`` or ``forecast step s of h``.
        self.output_kind: str | None = None

    # -- what the probes read -------------------------------------------------------------------------------
    @property
    def module(self) -> nn.Module | None:
        """The model as an ``nn.Module`` (the instance of a bound method too; ``None`` for opaque callables)."""
        return owning_module(self.model)

    @property
    def input_size(self) -> int | None:
        """Features per step the model expects, when the model tells."""
        return None

    @property
    def input_size_source(self) -> str | None:
        """Where :attr:`input_size` was read, for the report and error messages."""
        return f"{type(self.model).__name__}.input_size" if self.input_size is not None else None

    @property
    def vocab_size(self) -> int | None:
        """Token vocabulary size for token-id models, else ``None``."""
        return None

    @property
    def batch_first(self) -> bool:
        """Whether the model itself takes batch-first sequences."""
        return True if self.layout.batch_first is None else self.layout.batch_first

    def directions(self) -> list[Direction]:
        """Directions of time in the output; one profile is measured per direction."""
        if self.layout.bidirectional:
            return [Direction("forward", half=0), Direction("backward", half=1, is_reverse=True)]
        return [Direction("forward")]

    @property
    def architecture(self) -> str:
        """What carries information across time: ``recurrent``, ``attention``, ``convolutional``, ``feedforward``
        or ``unknown`` (see :func:`gradhealth.adapters.architecture.classify_architecture`)."""
        from gradhealth.adapters.architecture import classify_architecture

        return classify_architecture(self.model, family=self.family)

    def describe(self) -> dict[str, Any]:
        """What the adapter found, for the report's ``model`` section."""
        module = self.module
        n_params = sum(p.numel() for p in module.parameters()) if module is not None else 0
        return {
            "class": f"{type(self.model).__module__}.{type(self.model).__qualname__}",
            "adapter": self.family,
            "architecture": self.architecture,
            "parameters": n_params,
            "input_size": self.input_size,
            "input_size_source": self.input_size_source,
            "vocab_size": self.vocab_size,
            "batch_first": self.batch_first,
            "output": self.output_kind,
            "directions": [d.name for d in self.directions()],
            "layout": self.layout.to_dict(),
        }

    # -- running --------------------------------------------------------------------------------------------
    def run(self, inputs: torch.Tensor) -> AdapterOutput:
        """Run the model on batch-first ``inputs`` (features ``[B, T, D]`` or ids ``[B, T]``).

        Raises:
            ModelCallError: the model raised; the message carries the input shape and the cause.
            AdapterError: the output is neither a ``[B, T, O]`` sequence nor one ``[B, O]`` value per sequence.
        """
        try:
            result = self._forward(inputs)
        except (AdapterError, ModelCallError):
            raise
        except Exception as exc:
            raise ModelCallError(self._call_failure(inputs, exc), model=self.model) from exc
        return self._shape_output(inputs, result)

    @abc.abstractmethod
    def _forward(self, inputs: torch.Tensor) -> AdapterOutput:
        """Call the model; return the gradient-input tensor and the batch-first output."""

    def prepare(self, make_inputs: Callable[[int, int], torch.Tensor]) -> None:
        """Settle what only a call can tell, on the probe copy (``make_inputs(batch, steps)`` draws inputs);
        the base class has nothing to settle."""
        return None

    # -- state handover (burn-in without a graph) -------------------------------------------------------------
    @property
    def has_state_handover(self) -> bool:
        """Whether :meth:`run_from_state` can run a sequence in two parts, the second from the first's final
        state (a unidirectional model that takes an initial state)."""
        return False

    def run_from_state(self, burn_in: torch.Tensor, window: torch.Tensor) -> AdapterOutput:
        """Run ``burn_in`` without building a graph, then ``window`` from the state it ends in.

        The window's output and its gradients are those of one run over ``cat(burn_in, window)``: the state is
        the same tensor, only the part of the graph no window gradient needs is never built.

        Raises:
            ModelCallError: the model raised; the message carries the input shape and the cause.
            AdapterError: the adapter cannot hand state over, or the output is not a ``[B, T, O]`` sequence.
        """
        if not self.has_state_handover:
            raise AdapterError(f"{self.family} adapters cannot start a run from a state")
        try:
            with torch.no_grad():
                state = self._final_state(burn_in)
            result = self._forward_from(window, state)
        except (AdapterError, ModelCallError):
            raise
        except Exception as exc:
            raise ModelCallError(self._call_failure(window, exc), model=self.model) from exc
        return self._shape_output(window, result)

    @property
    def has_chunked_window(self) -> bool:
        """Whether :meth:`run_chunked` can run a window in checkpointed chunks (a state handover whose steps
        can be recomputed: no state kept inside the model between calls)."""
        return False

    def run_chunked(self, burn_in: torch.Tensor | None, window: torch.Tensor, chunks: int) -> AdapterOutput:
        """:meth:`run_from_state` (or :meth:`run` without a burn-in) with the window split into ``chunks`` pieces
        under ``torch.utils.checkpoint``: a backward keeps one piece's activations at a time (and the states
        between pieces) and recomputes each piece's forward once. Outputs and gradients equal the plain run's.

        Raises:
            ModelCallError: the model raised; the message carries the input shape and the cause.
            AdapterError: the adapter cannot run in chunks, or the output is not a ``[B, T, O]`` sequence.
        """
        from torch.utils.checkpoint import checkpoint

        if not self.has_chunked_window:
            raise AdapterError(f"{self.family} adapters cannot run a window in checkpointed chunks")
        try:
            state = None
            if burn_in is not None and burn_in.shape[1] > 0:
                with torch.no_grad():
                    state = self._final_state(burn_in)
            size = -(-window.shape[1] // max(1, chunks))
            outputs = []
            for part in torch.split(window, size, dim=1):
                y, state = checkpoint(self._advance, part, state, use_reentrant=False)
                outputs.append(y)
            result = AdapterOutput(window, torch.cat(outputs, dim=1))
        except (AdapterError, ModelCallError):
            raise
        except Exception as exc:
            raise ModelCallError(self._call_failure(window, exc), model=self.model) from exc
        return self._shape_output(window, result)

    def _advance(self, inputs: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """The batch-first output over ``inputs`` from ``state`` (``None``: the initial state), and the state it
        ends in (adapters with a chunked window)."""
        raise NotImplementedError

    def _final_state(self, inputs: torch.Tensor) -> Any:
        """The state after running ``inputs`` (adapters with state handover)."""
        raise NotImplementedError

    def _forward_from(self, inputs: torch.Tensor, state: Any) -> AdapterOutput:
        """:meth:`_forward` from ``state`` instead of the initial state (adapters with state handover)."""
        raise NotImplementedError

    def reset_state(self) -> None:
        """Clear the state a stateful model carries between calls (no-op for stateless models)."""
        reset = self.layout.reset
        target = self.model
        if callable(reset):
            reset(target)
            return
        names = (reset,) if isinstance(reset, str) else RESET_METHODS
        for owner in dict.fromkeys(o for o in (target, self.module) if o is not None):
            for name in names:
                method = getattr(owner, name, None)
                if callable(method):
                    method()
                    return
        if isinstance(reset, str):
            raise AdapterError(f"layout.reset names {reset!r}, but {type(self.model).__name__} has no such method")

    def has_reset(self) -> bool:
        """Whether a reset is declared or the model has a reset method."""
        if self.layout.reset is not None:
            return True
        owners = [o for o in (self.model, self.module) if o is not None]
        return any(callable(getattr(o, name, None)) for o in owners for name in RESET_METHODS)

    def materialize(self, dtype: torch.dtype, device: torch.device) -> Adapter:
        """Return an adapter over a deep copy of the model in ``dtype`` on ``device``; the user's model is
        never touched, and the hooks the user registered do not fire on the copy (:func:`remove_user_hooks`).
        Modules, bound methods of modules and :class:`~gradhealth.Unrolled` step functions are copied (tensor
        attributes holding an autograd graph are detached on the copy); an opaque callable (a function or
        closure) cannot be copied and is used as it is."""
        model = self.model
        if owning_module(model) is not None or hasattr(model, "to_probe"):
            model = deep_copy(model)
            copied = owning_module(model)
            if copied is not None:
                remove_user_hooks(copied)
            if hasattr(model, "to_probe"):
                model = model.to_probe(dtype, device)
            else:
                owner = owning_module(model)
                assert owner is not None
                cast = cast_module(owner, dtype, device)
                model = cast if model is owner else model
        clone = copy.copy(self)
        clone.model = model
        return clone

    # -- helpers --------------------------------------------------------------------------------------------
    def _call_failure(self, inputs: torch.Tensor, exc: BaseException) -> str:
        first_line = (str(exc).strip().splitlines() or [""])[0]
        name = type(self.model).__name__
        hint = "check input_size (or pass it), the layout, and that the model runs on this input by hand"
        source = self.input_size_source
        if source is not None and self.vocab_size is None:
            hint = f"the model's input size reads {self.input_size} (from {source}); " + hint
        return (
            f"calling {name} on input of shape {list(inputs.shape)} ({str(inputs.dtype).removeprefix('torch.')}) "
            f"failed: {type(exc).__name__}: {first_line}; {hint}"
        )

    def _shape_output(self, inputs: torch.Tensor, result: AdapterOutput) -> AdapterOutput:
        batch, steps = inputs.shape[0], inputs.shape[1]
        out = result.output
        name = type(self.model).__name__
        step = self.layout.forecast_step
        if step is not None:
            if out.dim() == 2 and out.shape[0] == batch:
                out = out.unsqueeze(-1)
            if out.dim() != 3 or out.shape[0] != batch:
                raise AdapterError(
                    f"layout.forecast_step={step}: {name} returned {tuple(out.shape)}, not a [batch={batch}, "
                    "horizon, features] forecast; pick it with layout=gradhealth.Layout(output=...)"
                )
            horizon = out.shape[1]
            if not -horizon <= step < horizon:
                raise AdapterError(
                    f"layout.forecast_step={step} is outside the forecast horizon of {horizon} steps of {name}"
                )
            self.output_kind = f"forecast step {step % horizon} of {horizon}"
            return self._last_only(result, out[:, step : step + 1 if step != -1 else None])
        if out.dim() == 3 and out.shape[0] == batch and out.shape[1] == steps:
            self.output_kind = "sequence"
            return result
        if out.dim() == 2 and out.shape[0] == batch and out.shape[1] == steps:
            self.output_kind = "sequence"  # one scalar per step
            return dataclasses.replace(result, output=out.unsqueeze(-1))
        if out.dim() in (1, 2) and out.shape[0] == batch:
            self.output_kind = "sequence-to-one"
            return self._last_only(result, out.reshape(batch, 1, -1))
        if out.dim() == 3 and out.shape[0] == steps and out.shape[1] == batch:
            raise AdapterError(
                f"{name} returned {tuple(out.shape)}, which looks time-major; pass "
                "layout=gradhealth.Layout(batch_first=False)"
            )
        if out.dim() == 3 and out.shape[0] == batch:
            raise AdapterError(
                f"{name} returned {tuple(out.shape)} for {batch} sequences of {steps} steps: an output time axis "
                "of another length (a forecast horizon?); pass layout=gradhealth.Layout(forecast_step=...) (on the "
                "command line: --forecast-step N) to put the loss at one forecast step"
            )
        raise AdapterError(
            f"{name} returned a tensor of shape {tuple(out.shape)}, but gradhealth needs [batch={batch}, "
            f"time={steps}, features] or one [batch={batch}, features] value per sequence; pass "
            "layout=gradhealth.Layout(output=...) or batch_first"
        )

    def _last_only(self, result: AdapterOutput, out: torch.Tensor) -> AdapterOutput:
        if len(self.directions()) > 1:
            raise AdapterError(
                f"{type(self.model).__name__} returns one value per sequence, which has no backward direction "
                "of time to probe; leave layout.bidirectional unset"
            )
        return dataclasses.replace(result, output=out, last_only=True)

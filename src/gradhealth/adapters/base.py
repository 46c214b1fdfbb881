"""The adapter contract: bring any recurrent model to one shape, ``x[B, T, D] -> y[B, T, O]``.

An adapter wraps a model and knows three things the probes need: how to call it on a batch-first sequence, where
the gradient is taken (the input itself, or an embedding output for token-id models), and which output features
belong to which direction of time.
"""

from __future__ import annotations

import abc
import copy
import dataclasses
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
    "cast_module",
    "cast_tensor",
    "complex_dtype_for",
    "describe_value",
    "infer_input_size",
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


@dataclass(frozen=True)
class Layout:
    """How a model takes its sequence and gives its output, where gradhealth cannot tell by itself.

    Attributes:
        batch_first: ``True`` for ``[B, T, D]``, ``False`` for time-major ``[T, B, D]``; ``None`` reads the
            module's own ``batch_first`` where it has one, else assumes ``True``.
        input_arg: positional index or keyword name of the sequence argument of ``forward``.
        output: picks the sequence from what the model returns: an index, a key/attribute name, or a callable.
            ``None`` takes the tensor itself, or the first 3-D tensor of a tuple, dict or dataclass.
        token_input: ``True`` if the model takes token ids (gradient at the embedding output); ``None`` decides
            by whether the model contains an ``nn.Embedding``.
        embedding: dotted name of the embedding submodule whose output receives the gradient.
        bidirectional: ``True`` if the output's feature halves are the forward and backward directions.
        reset: method name or callable ``(model) -> None`` that clears a stateful model's carried state;
            ``None`` calls ``reset_state``/``reset_states``/``reset_hidden`` when the model has one.
        forward_kwargs: extra keyword arguments passed to every call.
    """

    batch_first: bool | None = None
    input_arg: int | str = 0
    output: OutputSelector | None = None
    token_input: bool | None = None
    embedding: str | None = None
    bidirectional: bool = False
    reset: str | Callable[[Any], None] | None = None
    forward_kwargs: Mapping[str, Any] = field(default_factory=dict)

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


def select_output(value: Any, selector: OutputSelector | None) -> torch.Tensor:
    """Pick the output sequence out of whatever a model returns.

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
            found = [c for c in _candidates(value) if isinstance(c, torch.Tensor) and c.dim() == 3]
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


def infer_input_size(module: nn.Module) -> int | None:
    """Features per step: the first (sub)module, in registration order, that tells: an integer ``input_size``
    attribute (recurrent layers, and the convention for custom ones), a linear or a 1-d convolution layer."""
    for sub in module.modules():
        own = getattr(sub, "input_size", None)
        if isinstance(own, int) and not isinstance(own, bool):
            return own
        if isinstance(sub, nn.Linear):
            return int(sub.in_features)
        if isinstance(sub, nn.Conv1d):
            return int(sub.in_channels)
    return None


class Adapter(abc.ABC):
    """Drives one model as ``x[B, T, D] -> y[B, T, O]`` for the probes.

    Subclasses implement :meth:`_forward`; the base class validates shapes, turns the model's own exceptions
    into :class:`ModelCallError` with the input shape and a hint, and handles copying to a probe dtype/device.
    """

    #: short family name shown in reports, e.g. ``"torch.nn.LSTM"``.
    family: str = "sequence"

    def __init__(self, model: Any, layout: Layout) -> None:
        self.model = model
        self.layout = layout

    # -- what the probes read -------------------------------------------------------------------------------
    @property
    def module(self) -> nn.Module | None:
        """The model as an ``nn.Module`` (``None`` for plain callables)."""
        return self.model if isinstance(self.model, nn.Module) else None

    @property
    def input_size(self) -> int | None:
        """Features per step the model expects, when the model tells."""
        return None

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
            "vocab_size": self.vocab_size,
            "batch_first": self.batch_first,
            "directions": [d.name for d in self.directions()],
            "layout": self.layout.to_dict(),
        }

    # -- running --------------------------------------------------------------------------------------------
    def run(self, inputs: torch.Tensor) -> AdapterOutput:
        """Run the model on batch-first ``inputs`` (features ``[B, T, D]`` or ids ``[B, T]``).

        Raises:
            ModelCallError: the model raised; the message carries the input shape and the cause.
            AdapterError: the output is not a ``[B, T, O]`` sequence.
        """
        try:
            result = self._forward(inputs)
        except (AdapterError, ModelCallError):
            raise
        except Exception as exc:
            raise ModelCallError(self._call_failure(inputs, exc), model=self.model) from exc
        self._check_output(inputs, result.output)
        return result

    @abc.abstractmethod
    def _forward(self, inputs: torch.Tensor) -> AdapterOutput:
        """Call the model; return the gradient-input tensor and the batch-first output."""

    def reset_state(self) -> None:
        """Clear the state a stateful model carries between calls (no-op for stateless models)."""
        reset = self.layout.reset
        if callable(reset):
            reset(self.model)
            return
        names = (reset,) if isinstance(reset, str) else RESET_METHODS
        for name in names:
            method = getattr(self.model, name, None)
            if callable(method):
                method()
                return
        if isinstance(reset, str):
            raise AdapterError(f"layout.reset names {reset!r}, but {type(self.model).__name__} has no such method")

    def materialize(self, dtype: torch.dtype, device: torch.device) -> Adapter:
        """Return an adapter over a deep copy of the model in ``dtype`` on ``device``; the user's model is
        never touched. Plain callables cannot be copied and are used as they are."""
        model = self.model
        if isinstance(model, nn.Module) or hasattr(model, "to_probe"):
            model = copy.deepcopy(model)
            model = model.to_probe(dtype, device) if hasattr(model, "to_probe") else cast_module(model, dtype, device)
        clone = copy.copy(self)
        clone.model = model
        return clone

    # -- helpers --------------------------------------------------------------------------------------------
    def _call_failure(self, inputs: torch.Tensor, exc: BaseException) -> str:
        first_line = (str(exc).strip().splitlines() or [""])[0]
        name = type(self.model).__name__
        hint = "check input_size (or pass it), the layout, and that the model runs on this input by hand"
        return (
            f"calling {name} on input of shape {list(inputs.shape)} ({str(inputs.dtype).removeprefix('torch.')}) "
            f"failed: {type(exc).__name__}: {first_line}; {hint}"
        )

    def _check_output(self, inputs: torch.Tensor, out: torch.Tensor) -> None:
        batch, steps = inputs.shape[0], inputs.shape[1]
        name = type(self.model).__name__
        if out.dim() == 3 and out.shape[0] == batch and out.shape[1] == steps:
            return
        if out.dim() == 2 and out.shape[0] == batch:
            raise AdapterError(
                f"{name} returned {tuple(out.shape)} for {batch} sequences of {steps} steps: it seems to return "
                "only the last step; gradhealth needs the output at every step ([batch, time, features]); "
                "pass layout=gradhealth.Layout(output=...) to pick the sequence"
            )
        if out.dim() == 3 and out.shape[0] == steps and out.shape[1] == batch:
            raise AdapterError(
                f"{name} returned {tuple(out.shape)}, which looks time-major; pass "
                "layout=gradhealth.Layout(batch_first=False)"
            )
        raise AdapterError(
            f"{name} returned a tensor of shape {tuple(out.shape)}, but gradhealth needs [batch={batch}, "
            f"time={steps}, features]; pass layout=gradhealth.Layout(output=...) or batch_first"
        )

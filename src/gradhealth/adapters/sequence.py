"""Adapters for arbitrary sequence models: ``[B, T, D] -> [B, T, O]`` modules and callables, and token-id
models whose gradient is taken at an embedding's output."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from gradhealth.adapters.base import (
    Adapter,
    AdapterOutput,
    Layout,
    accepts_keyword,
    input_size_source,
    select_output,
)
from gradhealth.errors import AdapterError

__all__ = ["SequenceAdapter", "TokenAdapter", "find_embedding"]


def find_embedding(model: nn.Module, name: str | None) -> tuple[str, nn.Embedding] | None:
    """The embedding named ``name``, or the first ``nn.Embedding`` of the model (``None`` if it has none).

    Raises:
        AdapterError: ``name`` does not name an ``nn.Embedding`` of the model.
    """
    if name is not None:
        try:
            sub = model.get_submodule(name)
        except AttributeError as exc:
            raise AdapterError(f"layout.embedding={name!r}: {type(model).__name__} has no such submodule") from exc
        if not isinstance(sub, nn.Embedding):
            raise AdapterError(f"layout.embedding={name!r} is a {type(sub).__name__}, not an nn.Embedding")
        return name, sub
    for sub_name, sub in model.named_modules():
        if isinstance(sub, nn.Embedding):
            return sub_name, sub
    return None


class SequenceAdapter(Adapter):
    """Any module or callable that maps a sequence to a sequence (or to one value per sequence), with the
    layout the user declares.

    The model is called as ``model(x)`` (or with ``x`` at ``layout.input_arg``, or as ``layout.call`` builds the
    call), and the output is picked out of tuples, dicts and dataclasses by ``layout.output``. Where neither the
    layout nor the model's own ``batch_first`` attribute tells the time axis, :meth:`prepare` finds it from a
    short call (which axis of the input mixes along the output), or refuses to guess. With
    ``layout.step_per_call`` the model is called once per step, its carried state reset before and after.
    """

    family = "sequence"

    def __init__(self, model: Any, layout: Layout) -> None:
        super().__init__(model, layout)
        self._detected_batch_first: bool | None = None
        self._layout_source = "layout.batch_first" if layout.batch_first is not None else None

    @property
    def input_size(self) -> int | None:
        module = self.module
        return input_size_source(module)[0] if module is not None else None

    @property
    def input_size_source(self) -> str | None:
        module = self.module
        return input_size_source(module)[1] if module is not None else None

    @property
    def batch_first(self) -> bool:
        if self.layout.batch_first is not None:
            return self.layout.batch_first
        own = getattr(self.model, "batch_first", None)
        if isinstance(own, bool):
            return own
        return True if self._detected_batch_first is None else self._detected_batch_first

    @property
    def architecture(self) -> str:
        found = super().architecture
        # a model driven one step per call carries its state across calls: a recurrence, whatever its layers
        return "recurrent" if self.layout.step_per_call and found == "unknown" else found

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        if self._layout_source is not None:
            info["batch_first_source"] = self._layout_source
        return info

    def prepare(self, make_inputs: Callable[[int, int], torch.Tensor]) -> None:
        """Find the time axis from a short call when neither the layout nor the model tells it."""
        if self.layout.batch_first is not None or self.layout.step_per_call:
            return
        if isinstance(getattr(self.model, "batch_first", None), bool):
            self._layout_source = f"{type(self.model).__name__}.batch_first"
            return
        found = self._time_axis(make_inputs)
        if found is not None:
            self._detected_batch_first = found
            self._layout_source = "detected from a short probe call"

    def _time_axis(self, make_inputs: Callable[[int, int], torch.Tensor]) -> bool | None:
        """``True`` batch-first, ``False`` time-major, ``None`` the call failed (the smoke test explains).

        Raises:
            AdapterError: both input axes mix along the output, so the time axis cannot be told.
        """
        first, second = 3, 5
        x = make_inputs(first, second)
        if not (x.is_floating_point() or x.is_complex()):
            return None
        x = x.detach().requires_grad_(True)
        try:
            with torch.enable_grad():
                self.reset_state()
                try:
                    y = self._call(x, batch=None)
                finally:
                    self.reset_state()
                if y.dim() == 2 or (y.dim() == 3 and y.shape[:2] != (first, second)):
                    if y.shape[0] == first:
                        return True
                    return False if (y.dim() == 3 and y.shape[1] == second) or y.shape[0] == second else None
                if y.dim() != 3 or not y.requires_grad:
                    return None
                weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
                weights = weights.to(y.device, y.real.dtype)
                (along_0,) = torch.autograd.grad((y[1:] * weights[1:]).sum().real, x, retain_graph=True)
                (along_1,) = torch.autograd.grad((y[:, 1:] * weights[:, 1:]).sum().real, x)
        except Exception:
            return None
        mixes_0 = bool(along_0[0].abs().sum() > 0)
        mixes_1 = bool(along_1[:, 0].abs().sum() > 0)
        if mixes_0 and mixes_1:
            raise AdapterError(
                f"cannot tell the time axis of {type(self.model).__name__}: its output mixes both leading axes of "
                "the input; pass layout=gradhealth.Layout(batch_first=True) for [batch, time, features] or "
                "batch_first=False for [time, batch, features]",
                model=self.model,
            )
        return not mixes_0

    def _call(self, x: torch.Tensor, batch: int | None) -> torch.Tensor:
        kwargs = dict(self.layout.forward_kwargs)
        args: list[Any]
        if self.layout.call is not None:
            made = self.layout.call(x)
            if (
                isinstance(made, tuple)
                and len(made) == 2
                and isinstance(made[0], (tuple, list))
                and isinstance(made[1], Mapping)
            ):
                args, extra = list(made[0]), dict(made[1])
            else:
                args, extra = (list(made) if isinstance(made, tuple) else [made]), {}
            kwargs = {**kwargs, **extra}
        elif isinstance(self.layout.input_arg, str):
            args, kwargs = [], {**kwargs, self.layout.input_arg: x}
        else:
            args = [None] * self.layout.input_arg + [x]
        if "use_cache" not in kwargs and accepts_keyword(self.model, "use_cache"):
            kwargs["use_cache"] = False  # an inference cache updates state in place, which the backward needs
        value = self.model(*args, **kwargs)
        return select_output(value, self.layout.output, batch)

    def _forward(self, inputs: torch.Tensor) -> AdapterOutput:
        if self.layout.step_per_call and not self.has_reset():
            raise AdapterError(
                f"layout.step_per_call: {type(self.model).__name__} carries its state between calls, and gradhealth "
                "must clear it before and after the sequence; pass layout=gradhealth.Layout(step_per_call=True, "
                "reset=...) with a method name or a callable (model) -> None",
                model=self.model,
            )
        batch = inputs.shape[0]
        self.reset_state()
        try:
            if self.layout.step_per_call:
                # unbound once: inputs[:, t] per step would make the backward O(T^2) (see CellAdapter._unroll)
                steps = [self._call(x_t, batch).reshape(batch, -1) for x_t in inputs.unbind(1)]
                return AdapterOutput(inputs, torch.stack(steps, dim=1))
            x = inputs if self.batch_first else inputs.transpose(0, 1)
            out = self._call(x, batch)
        finally:
            self.reset_state()
        return AdapterOutput(inputs, out if self.batch_first or out.dim() != 3 else out.transpose(0, 1))


class TokenAdapter(SequenceAdapter):
    """A model whose forward takes token ids: the gradient is taken at the embedding's output.

    A forward hook replaces the embedding's output by a leaf tensor that requires grad (the first call only);
    the hook is removed when the call returns, also when it fails.
    """

    family = "token-ids"

    def __init__(self, model: nn.Module, layout: Layout, embedding: tuple[str, nn.Embedding]) -> None:
        super().__init__(model, layout)
        self.embedding_name = embedding[0]

    @property
    def embedding(self) -> nn.Embedding:
        module = self.model.get_submodule(self.embedding_name) if self.embedding_name else self.model
        assert isinstance(module, nn.Embedding)
        return module

    @property
    def input_size(self) -> int:
        return int(self.embedding.embedding_dim)

    @property
    def vocab_size(self) -> int:
        return int(self.embedding.num_embeddings)

    @property
    def input_size_source(self) -> str:
        return f"embedding {self.embedding_name!r}.embedding_dim"

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["embedding"] = self.embedding_name
        return info

    def _forward(self, inputs: torch.Tensor) -> AdapterOutput:
        captured: list[torch.Tensor] = []

        def capture(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor | None:
            if captured:
                return None
            leaf = output.detach().requires_grad_(True)
            captured.append(leaf)
            return leaf

        handle = self.embedding.register_forward_hook(capture)
        try:
            result = super()._forward(inputs)
        finally:
            handle.remove()
        if not captured:
            raise AdapterError(
                f"the embedding {self.embedding_name!r} was never called by {type(self.model).__name__}; "
                "pass layout=gradhealth.Layout(embedding=...) naming the one the forward uses"
            )
        return AdapterOutput(captured[0], result.output, is_time_major=not self.batch_first)

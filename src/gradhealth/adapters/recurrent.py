"""Adapters for PyTorch's own recurrent modules, their cells, and user step functions unrolled over time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from gradhealth.adapters.base import (
    Adapter,
    AdapterOutput,
    Direction,
    Layout,
    cast_module,
    cast_tensor,
    infer_input_size,
    input_size_source,
    owning_module,
    select_output,
)
from gradhealth.errors import AdapterError

__all__ = ["CellAdapter", "RecurrentModuleAdapter", "Unrolled", "UnrolledAdapter"]

StepFunction = Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]]


class RecurrentModuleAdapter(Adapter):
    """``nn.RNN``, ``nn.LSTM`` and ``nn.GRU`` with any constructor options.

    Reads ``batch_first``, ``bidirectional``, ``proj_size`` and ``input_size`` from the module (a
    ``layout.batch_first`` that contradicts the module's is refused); dropout between layers is off because
    probes run the module in eval mode. The output is the module's output sequence, or
    what ``layout.output`` picks from the ``(output, state)`` pair it returns (in the module's own layout).
    """

    family = "torch.nn.RNNBase"

    def __init__(self, model: nn.RNNBase, layout: Layout) -> None:
        if layout.batch_first is not None and layout.batch_first != bool(model.batch_first):
            # fed the other layout, the module would run its recurrence over the batch axis
            raise AdapterError(
                f"layout.batch_first={layout.batch_first} contradicts {type(model).__name__}(batch_first="
                f"{bool(model.batch_first)}): the module reads its input in its own layout; leave "
                "layout.batch_first unset",
                model=model,
            )
        super().__init__(model, layout)
        self.family = f"torch.nn.{type(model).__name__}"

    @property
    def input_size(self) -> int:
        return int(self.model.input_size)

    @property
    def batch_first(self) -> bool:
        return bool(self.model.batch_first)

    def directions(self) -> list[Direction]:
        if self.model.bidirectional:
            return [Direction("forward", half=0), Direction("backward", half=1, is_reverse=True)]
        return [Direction("forward")]

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        m = self.model
        info.update(
            hidden_size=m.hidden_size,
            num_layers=m.num_layers,
            proj_size=m.proj_size,
            bias=m.bias,
            dropout=m.dropout,
        )
        if isinstance(m, nn.RNN):
            info["nonlinearity"] = m.nonlinearity
        return info

    def _forward(self, inputs: torch.Tensor) -> AdapterOutput:
        return self._forward_from(inputs, None)

    @property
    def has_state_handover(self) -> bool:
        return not self.model.bidirectional

    def _final_state(self, inputs: torch.Tensor) -> Any:
        return self.model(inputs if self.batch_first else inputs.transpose(0, 1))[1]

    def _forward_from(self, inputs: torch.Tensor, state: Any) -> AdapterOutput:
        return AdapterOutput(inputs, self._advance(inputs, state)[0])

    @property
    def has_chunked_window(self) -> bool:
        return not self.model.bidirectional

    def _advance(self, inputs: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        x = inputs if self.batch_first else inputs.transpose(0, 1)
        value = self.model(x) if state is None else self.model(x, state)
        out = value[0] if self.layout.output is None else select_output(value, self.layout.output)
        return (out if self.batch_first or out.dim() != 3 else out.transpose(0, 1)), value[1]


class CellAdapter(Adapter):
    """``nn.RNNCell``, ``nn.LSTMCell`` and ``nn.GRUCell`` unrolled over time from a zero state.

    The output at step t is the hidden state h_t (for the LSTM cell, h_t of the pair (h_t, c_t)).
    """

    family = "torch.nn.RNNCellBase"

    def __init__(self, model: nn.RNNCellBase, layout: Layout) -> None:
        super().__init__(model, layout)
        self.family = f"torch.nn.{type(model).__name__}"

    @property
    def input_size(self) -> int:
        return int(self.model.input_size)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["hidden_size"] = self.model.hidden_size
        return info

    def _forward(self, inputs: torch.Tensor) -> AdapterOutput:
        return self._forward_from(inputs, None)

    @property
    def has_state_handover(self) -> bool:
        return True

    def _final_state(self, inputs: torch.Tensor) -> Any:
        return self._unroll(inputs, None)[1]

    def _forward_from(self, inputs: torch.Tensor, state: Any) -> AdapterOutput:
        return AdapterOutput(inputs, self._unroll(inputs, state)[0])

    @property
    def has_chunked_window(self) -> bool:
        return True

    def _advance(self, inputs: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        return self._unroll(inputs, state)

    def _unroll(self, inputs: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        # unbind once: indexing inputs[:, t] per step would make each step's backward write a zero tensor the
        # size of the whole sequence, O(T^2) in all
        outputs = []
        for x_t in inputs.unbind(1):
            state = self.model(x_t, state)
            outputs.append(state[0] if isinstance(state, tuple) else state)
        return torch.stack(outputs, dim=1), state


class Unrolled:
    """A step function ``(x_t, state) -> (y_t, state)`` that gradhealth unrolls over time.

    Args:
        step: the step; an ``nn.Module`` (copied and cast for probing) or any callable.
        init_state: the initial state: a value (tensors are cast to the probe dtype), or a callable
            ``(batch_size, dtype, device) -> state``; ``None`` passes ``None`` to the first step.
        input_size: features per step, when ``step`` does not tell.

    Example:
        >>> import torch, gradhealth
        >>> W = 0.9 * torch.eye(3)
        >>> model = gradhealth.Unrolled(lambda x, h: ((h @ W.to(x) + x),) * 2, input_size=3,
        ...                             init_state=lambda b, dtype, device: torch.zeros(b, 3, dtype=dtype))
        >>> report = gradhealth.audit(model, seq_len=50, batch_size=2, probes="quick")
        >>> report.metrics.horizon
        44.0
    """

    def __init__(
        self,
        step: StepFunction,
        *,
        init_state: Any = None,
        input_size: int | None = None,
    ) -> None:
        if not callable(step):
            raise TypeError(f"Unrolled needs a callable step (x_t, state) -> (y_t, state), got {type(step).__name__}")
        self.step = step
        self.init_state = init_state
        self.input_size = input_size

    def to_probe(self, dtype: torch.dtype, device: torch.device) -> Unrolled:
        """Cast the step module and any tensor initial state (called on a deep copy)."""
        owner = owning_module(self.step)
        if owner is not None:
            cast_module(owner, dtype, device)
        if isinstance(self.init_state, torch.Tensor):
            self.init_state = cast_tensor(self.init_state, dtype, device)
        return self

    def initial_state(self, batch_size: int, dtype: torch.dtype, device: torch.device) -> Any:
        """The state passed to the first step."""
        if callable(self.init_state):
            return self.init_state(batch_size, dtype, device)
        return self.init_state

    def __repr__(self) -> str:
        return f"Unrolled({getattr(self.step, '__qualname__', type(self.step).__name__)})"


class UnrolledAdapter(Adapter):
    """Drives an :class:`Unrolled` step function.

    The same guarantees as a module: a step that is an ``nn.Module`` or a bound method of one is probed on a
    deep copy, in eval mode, in the probe dtype; ``layout.reset`` (or the module's own reset method) runs
    before and after every sequence.
    """

    family = "gradhealth.Unrolled"

    @property
    def module(self) -> nn.Module | None:
        return owning_module(self.model.step)

    @property
    def input_size(self) -> int | None:
        if self.model.input_size is not None:
            return int(self.model.input_size)
        module = self.module
        return infer_input_size(module) if module is not None else None

    @property
    def input_size_source(self) -> str | None:
        if self.model.input_size is not None:
            return "Unrolled(input_size=...)"
        module = self.module
        return input_size_source(module)[1] if module is not None else None

    def reset_state(self) -> None:
        reset = self.layout.reset
        if callable(reset):
            reset(self.module if self.module is not None else self.model)
            return
        super().reset_state()

    def _forward(self, inputs: torch.Tensor) -> AdapterOutput:
        self.reset_state()
        try:
            state = self.model.initial_state(inputs.shape[0], inputs.dtype, inputs.device)
            return AdapterOutput(inputs, self._unroll(inputs, state)[0])
        finally:
            self.reset_state()

    @property
    def has_state_handover(self) -> bool:
        return True

    def _final_state(self, inputs: torch.Tensor) -> Any:
        # reset before the burn-in and after the window, never between: a stateful step carries on
        self.reset_state()
        try:
            state = self.model.initial_state(inputs.shape[0], inputs.dtype, inputs.device)
            return self._unroll(inputs, state)[1]
        except BaseException:
            self.reset_state()
            raise

    def _forward_from(self, inputs: torch.Tensor, state: Any) -> AdapterOutput:
        try:
            return AdapterOutput(inputs, self._unroll(inputs, state)[0])
        finally:
            self.reset_state()

    def _unroll(self, inputs: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        outputs = []
        for x_t in inputs.unbind(1):  # unbound once: see CellAdapter._unroll
            y, state = self.model.step(x_t, state)
            outputs.append(y)
        return torch.stack(outputs, dim=1), state

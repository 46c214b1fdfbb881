"""The adapter that drives a :class:`~gradhealth_example_plugin.model.DiagonalSSM` as ``x[B, T, D] -> y[B, T, D]``."""

from __future__ import annotations

from typing import Any

import torch
from gradhealth.adapters.base import Adapter, AdapterOutput

from gradhealth_example_plugin.model import DiagonalSSM

__all__ = ["DiagonalSSMAdapter"]


class DiagonalSSMAdapter(Adapter):
    """Calls the module time-major with a zero initial state; the gradient is taken at the input itself."""

    family = "example.DiagonalSSM"
    model: DiagonalSSM

    @property
    def input_size(self) -> int:
        return self.model.size

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["decays"] = [float(a) for a in self.model.decay.detach().cpu()]
        return info

    def _forward(self, inputs: torch.Tensor) -> AdapterOutput:
        h0 = inputs.new_zeros(inputs.shape[0], self.model.size)
        outputs, _ = self.model(inputs.transpose(0, 1), h0)
        return AdapterOutput(grad_input=inputs, output=outputs.transpose(0, 1))

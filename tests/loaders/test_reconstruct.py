"""Rebuilding recurrent layers from parameter names and shapes: every option round-trips to the same module."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from gradhealth.errors import CheckpointError
from gradhealth.loaders.reconstruct import layer_specs, reconstruct_layers


def _round_trip(module: nn.Module, prefix: str) -> nn.Module:
    state = {f"{prefix}.{k}" if prefix else k: v for k, v in module.state_dict().items()}
    (found,) = reconstruct_layers(state, nonlinearity=getattr(module, "nonlinearity", "tanh"))
    assert found.name == (prefix or "rnn")
    return found.module


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (nn.RNN, {}),
        (nn.RNN, {"nonlinearity": "relu", "num_layers": 3}),
        (nn.GRU, {"bidirectional": True, "bias": False}),
        (nn.LSTM, {"num_layers": 2, "bidirectional": True, "proj_size": 2}),
        (nn.LSTM, {"bias": False}),
        (nn.RNNCell, {}),
        (nn.GRUCell, {"bias": False}),
        (nn.LSTMCell, {}),
    ],
)
@pytest.mark.parametrize("prefix", ["", "model.encoder.rnn"])
def test_rebuilt_layer_equals_original(cls: type[nn.Module], kwargs: dict[str, Any], prefix: str) -> None:
    torch.manual_seed(0)
    original = cls(3, 5, **kwargs)
    rebuilt = _round_trip(original, prefix)
    assert type(rebuilt) is cls
    for key in ("hidden_size", "input_size", "num_layers", "bidirectional", "proj_size", "bias", "nonlinearity"):
        assert getattr(rebuilt, key, None) == getattr(original, key, None), key
    assert rebuilt.state_dict().keys() == original.state_dict().keys()
    x = torch.randn(2, 3) if isinstance(original, nn.RNNCellBase) else torch.randn(4, 2, 3)
    if isinstance(original, nn.RNNBase):
        x = x.transpose(0, 1)  # rebuilt layers are batch_first
        expected = original(x.transpose(0, 1))[0].transpose(0, 1)
        assert torch.equal(rebuilt(x)[0], expected)
    else:
        assert torch.equal(torch.cat(list(_as_tuple(rebuilt(x)))), torch.cat(list(_as_tuple(original(x)))))


def _as_tuple(value: Any) -> tuple[torch.Tensor, ...]:
    return value if isinstance(value, tuple) else (value,)


def test_float64_weights_stay_exact() -> None:
    gru = nn.GRU(2, 3).double()
    (found,) = reconstruct_layers(gru.state_dict())
    assert found.module.weight_hh_l0.dtype == torch.float64
    assert torch.equal(found.module.weight_hh_l0, gru.weight_hh_l0)


def test_several_layers_and_other_parameters() -> None:
    model = nn.ModuleDict(
        {"emb": nn.Embedding(5, 3), "a": nn.GRU(3, 4), "b": nn.LSTMCell(4, 2), "head": nn.Linear(2, 1)}
    )
    specs = layer_specs(model.state_dict())
    assert [(s.prefix, s.family, s.is_cell) for s in specs] == [("a", "GRU", False), ("b", "LSTM", True)]


def test_shapes_that_fit_no_family_are_explained() -> None:
    state = {"x.weight_ih_l0": torch.zeros(10, 3), "x.weight_hh_l0": torch.zeros(10, 5)}
    with pytest.raises(CheckpointError, match=r"x: weight_hh has 10 rows for hidden size 5, not 1, 3 or 4"):
        reconstruct_layers(state)


def test_missing_layer_is_explained() -> None:
    gru = nn.GRU(2, 3, num_layers=3)
    state = {k: v for k, v in gru.state_dict().items() if "_l1" not in k}
    with pytest.raises(CheckpointError, match=r"layers \[0, 2\] are not numbered 0..2"):
        reconstruct_layers(state)

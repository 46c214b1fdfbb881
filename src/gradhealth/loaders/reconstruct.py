"""Rebuild standard ``nn.RNN/LSTM/GRU`` layers and ``*Cell`` modules from parameter names and shapes.

A bare state_dict needs no code: PyTorch's recurrent layers name their parameters ``weight_ih_l{k}[_reverse]``,
``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}`` and ``weight_hr_l{k}`` (projections), and cells
``weight_ih``/``weight_hh``/``bias_ih``/``bias_hh``, under any prefix. The family follows from the number of gate
blocks in ``weight_hh``: 1 hidden size for ``RNN``, 3 for ``GRU``, 4 for ``LSTM``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gradhealth.errors import CheckpointError

__all__ = ["FoundLayer", "LayerSpec", "reconstruct_layers"]

_LAYER_KEY = re.compile(r"^(?:(?P<prefix>.*)\.)?weight_hh_l(?P<layer>\d+)(?P<reverse>_reverse)?$")
_CELL_KEY = re.compile(r"^(?:(?P<prefix>.*)\.)?weight_hh$")
_FAMILIES = {1: "RNN", 3: "GRU", 4: "LSTM"}
# More digits than this cannot number a real stack of layers (and int() refuses over 4300 digits).
_MAX_LAYER_DIGITS = 6


@dataclass(frozen=True)
class LayerSpec:
    """What the parameter shapes say about one recurrent layer."""

    prefix: str
    family: str
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    bias: bool = True
    proj_size: int = 0
    is_cell: bool = False

    def describe(self) -> str:
        """Short human description, e.g. ``LSTM(8, 16, num_layers=2, bidirectional)``."""
        kind = self.family + ("Cell" if self.is_cell else "")
        extras = [f"num_layers={self.num_layers}"] if self.num_layers > 1 else []
        extras += ["bidirectional"] if self.bidirectional else []
        extras += [f"proj_size={self.proj_size}"] if self.proj_size else []
        extras += [] if self.bias else ["bias=False"]
        return f"{kind}({', '.join([str(self.input_size), str(self.hidden_size), *extras])})"


@dataclass
class FoundLayer:
    """A reconstructed layer with its weights loaded."""

    name: str
    spec: LayerSpec
    module: nn.Module


def _key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _gate_family(rows: int, hidden: int, where: str) -> str:
    multiple, rest = divmod(rows, hidden)
    if rest or multiple not in _FAMILIES:
        raise CheckpointError(
            f"{where}: weight_hh has {rows} rows for hidden size {hidden}, not 1, 3 or 4 gate blocks (RNN/GRU/LSTM); "
            "pass --model package.module:factory to build this architecture"
        )
    return _FAMILIES[multiple]


def _matrix(state: dict[str, torch.Tensor], prefix: str, name: str) -> torch.Tensor | None:
    """``prefix.name`` if present, checked to be a matrix with no empty side; ``None`` if absent."""
    where = prefix or "<root>"
    tensor = state.get(_key(prefix, name))
    if tensor is None:
        return None
    if tensor.dim() != 2:
        raise CheckpointError(
            f"{where}: {name} has shape {tuple(tensor.shape)}, not a matrix; cannot rebuild the layer; "
            "pass --model package.module:factory if this is not a standard recurrent layer"
        )
    if 0 in tensor.shape:
        raise CheckpointError(f"{where}: {name} has shape {tuple(tensor.shape)}, an empty side; nothing to audit")
    return tensor


def _required_matrix(state: dict[str, torch.Tensor], prefix: str, name: str) -> torch.Tensor:
    tensor = _matrix(state, prefix, name)
    if tensor is None:
        raise CheckpointError(f"{prefix or '<root>'}: {name} is missing; cannot rebuild the layer")
    return tensor


def _layer_numbers(where: str, layers: set[int]) -> int:
    # Compared by count first: a key such as weight_hh_l1000000000 must not build a list of 10**9 numbers.
    num_layers = max(layers) + 1
    if len(layers) != num_layers:
        shown = ", ".join(str(n) for n in sorted(layers)[:8]) + (", ..." if len(layers) > 8 else "")
        raise CheckpointError(f"{where}: layers [{shown}] are not numbered 0..{num_layers - 1}")
    return num_layers


def _layer_spec(prefix: str, state: dict[str, torch.Tensor], layers: set[int], reverse: bool) -> LayerSpec:
    where = prefix or "<root>"
    num_layers = _layer_numbers(where, layers)
    w_ih = _required_matrix(state, prefix, "weight_ih_l0")
    w_hh = _required_matrix(state, prefix, "weight_hh_l0")
    w_hr = _matrix(state, prefix, "weight_hr_l0")
    proj_size = int(w_hr.shape[0]) if w_hr is not None else 0
    hidden = int(w_hr.shape[1]) if w_hr is not None else int(w_hh.shape[1])
    family = _gate_family(int(w_hh.shape[0]), hidden, where)
    return LayerSpec(
        prefix=prefix,
        family=family,
        input_size=int(w_ih.shape[1]),
        hidden_size=hidden,
        num_layers=num_layers,
        bidirectional=reverse,
        bias=_key(prefix, "bias_ih_l0") in state,
        proj_size=proj_size,
    )


def _cell_spec(prefix: str, state: dict[str, torch.Tensor]) -> LayerSpec | None:
    w_ih = state.get(_key(prefix, "weight_ih"))
    if w_ih is None or w_ih.dim() != 2 or state[_key(prefix, "weight_hh")].dim() != 2:
        return None
    _required_matrix(state, prefix, "weight_ih")
    w_hh = _required_matrix(state, prefix, "weight_hh")
    hidden = int(w_hh.shape[1])
    return LayerSpec(
        prefix=prefix,
        family=_gate_family(int(w_hh.shape[0]), hidden, prefix or "<root>"),
        input_size=int(w_ih.shape[1]),
        hidden_size=hidden,
        bias=_key(prefix, "bias_ih") in state,
        is_cell=True,
    )


def layer_specs(state: dict[str, torch.Tensor]) -> list[LayerSpec]:
    """Every recurrent layer the parameter names describe, in state_dict order.

    Raises:
        CheckpointError: a layer's shapes fit none of RNN, GRU and LSTM.
    """
    layers: dict[str, set[int]] = {}
    reverse: dict[str, bool] = {}
    cells: list[str] = []
    for name in state:
        if m := _LAYER_KEY.match(name):
            prefix = m["prefix"] or ""
            if len(m["layer"]) > _MAX_LAYER_DIGITS:
                raise CheckpointError(f"{name[:80]}: layer index {m['layer'][:12]} is not a plausible layer number")
            layers.setdefault(prefix, set()).add(int(m["layer"]))
            reverse[prefix] = reverse.get(prefix, False) or bool(m["reverse"])
        elif m := _CELL_KEY.match(name):
            cells.append(m["prefix"] or "")
    specs = [_layer_spec(p, state, ls, reverse[p]) for p, ls in layers.items()]
    specs += [s for s in (_cell_spec(p, state) for p in cells) if s is not None]
    return specs


def _build(spec: LayerSpec, nonlinearity: str) -> nn.Module:
    kwargs: dict[str, Any] = {"bias": spec.bias}
    if spec.is_cell:
        cell_cls: Any = getattr(nn, spec.family + "Cell")
        if spec.family == "RNN":
            kwargs["nonlinearity"] = nonlinearity
        return cell_cls(spec.input_size, spec.hidden_size, **kwargs)
    kwargs.update(num_layers=spec.num_layers, bidirectional=spec.bidirectional, batch_first=True)
    if spec.family == "RNN":
        kwargs["nonlinearity"] = nonlinearity
    if spec.proj_size:
        kwargs["proj_size"] = spec.proj_size
    layer_cls: Any = getattr(nn, spec.family)
    return layer_cls(spec.input_size, spec.hidden_size, **kwargs)


def reconstruct_layers(state: dict[str, torch.Tensor], *, nonlinearity: str = "tanh") -> list[FoundLayer]:
    """Rebuild and load every standard recurrent layer found in ``state``.

    Args:
        state: a state_dict (any prefixes; other parameters are ignored).
        nonlinearity: ``"tanh"`` or ``"relu"`` for ``RNN`` layers (the weights cannot tell).

    Raises:
        CheckpointError: a layer's parameters do not fit the module its shapes suggest.
    """
    if nonlinearity not in {"tanh", "relu"}:
        raise CheckpointError(f"nonlinearity {nonlinearity!r} is not supported; use tanh or relu")
    found = []
    for spec in layer_specs(state):
        try:
            module = _build(spec, nonlinearity)
        except (ValueError, RuntimeError) as exc:  # e.g. proj_size not below hidden_size
            raise CheckpointError(
                f"{spec.prefix or '<root>'}: cannot build {spec.describe()}: {(str(exc).splitlines() or [''])[0]}"
            ) from exc
        dtype = state[_key(spec.prefix, "weight_hh" if spec.is_cell else "weight_hh_l0")].dtype
        if dtype.is_floating_point:
            module = module.to(dtype)  # keep float64 weights exact instead of rounding them into float32
        own = {k[len(spec.prefix) + 1 :] if spec.prefix else k: v for k, v in state.items() if _owned(k, spec)}
        try:
            module.load_state_dict(own, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(
                f"{spec.prefix or '<root>'}: the parameters do not fit {spec.describe()}: {str(exc).splitlines()[-1]}"
            ) from exc
        found.append(FoundLayer(spec.prefix or "rnn", spec, module.eval()))
    return found


def _owned(key: str, spec: LayerSpec) -> bool:
    local = key[len(spec.prefix) + 1 :] if spec.prefix else key
    if spec.prefix and not key.startswith(spec.prefix + "."):
        return False
    if spec.is_cell:
        return local in {"weight_ih", "weight_hh", "bias_ih", "bias_hh"}
    return re.fullmatch(r"(weight|bias)_(ih|hh|hr)_l\d+(_reverse)?", local) is not None

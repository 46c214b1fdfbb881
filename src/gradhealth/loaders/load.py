"""Load a checkpoint safely: weights through ``torch.load(weights_only=True)`` or safetensors, code only on trust.

Nothing here falls back to a full unpickle on its own: a file holding globals outside torch's allowlist is
refused with :class:`~gradhealth.errors.UnsafeCheckpointError` naming them, unless the user passed ``--trust``
or allowlisted each one with ``--allow-global``.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import torch
from torch import nn

from gradhealth.errors import CheckpointError, GradhealthError
from gradhealth.loaders.detect import CODE_FORMATS, detect_format, hf_weight_files
from gradhealth.loaders.safety import refusal, resolve_allowed_globals, unsafe_globals

__all__ = ["STATE_DICT_KEYS", "Checkpoint", "LoadOptions", "extract_state_dict", "load_checkpoint"]

#: Keys under which training frameworks store the weights (Lightning, common training loops), tried in order.
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "model_state", "weights")


class LoadOptions(TypedDict, total=False):
    """Options of the ``gradhealth_load_checkpoint`` hook."""

    trust: bool
    allow_globals: tuple[str, ...]


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        path: where it came from.
        format: the detected format (see :data:`gradhealth.loaders.detect.FORMATS`).
        state_dict: every tensor, by name.
        module: the module itself when the file held one (trusted pickles, TorchScript), else ``None``.
        key: the key the weights sat under in a training checkpoint (``"state_dict"``...), if any.
        metadata: extra information, e.g. a Hugging Face folder's ``config.json``.
    """

    path: Path
    format: str
    state_dict: dict[str, torch.Tensor]
    module: nn.Module | None = None
    key: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def load_checkpoint(path: Path, options: LoadOptions | None = None) -> Checkpoint:
    """Load a checkpoint file or folder on the CPU.

    Raises:
        UnsafeCheckpointError: loading would run code and the user did not trust the file.
        CheckpointError: the file is missing, corrupt, of an unknown format, or holds no tensors.
    """
    options = options or {}
    trust = bool(options.get("trust", False))
    allowed = tuple(options.get("allow_globals", ()))
    fmt = detect_format(path)
    if fmt in CODE_FORMATS and not trust:
        raise refusal(path, fmt, [])
    try:
        if fmt == "hf_folder":
            return _load_folder(path, trust, allowed)
        if fmt == "safetensors":
            return Checkpoint(path, fmt, _load_safetensors(path))
        obj = _load_object(path, fmt, trust, allowed)
    except GradhealthError:
        raise
    except Exception as exc:  # torch and pickle raise anything on a damaged file
        raise CheckpointError(
            f"{path} could not be read as {fmt} (truncated or corrupt?): {type(exc).__name__}: {_first_line(exc)}",
            path=path,
        ) from exc
    state_dict, module, key = extract_state_dict(obj, path)
    return Checkpoint(path, fmt, state_dict, module, key)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else ""


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return dict(load_file(str(path), device="cpu"))


def _load_object(path: Path, fmt: str, trust: bool, allowed: tuple[str, ...]) -> Any:
    if fmt == "torchscript":
        return torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    if fmt == "torch_export":
        return torch.export.load(str(path)).state_dict
    if fmt == "pickle":
        with path.open("rb") as f:
            return pickle.load(f)  # only reached with --trust: the user vouched for the file
    if trust:
        return torch.load(path, map_location="cpu", weights_only=False)
    unsafe = unsafe_globals(path, fmt, allowed)
    if unsafe:
        raise refusal(path, fmt, unsafe)
    with torch.serialization.safe_globals(resolve_allowed_globals(allowed)):
        return torch.load(path, map_location="cpu", weights_only=True)


def _load_folder(path: Path, trust: bool, allowed: tuple[str, ...]) -> Checkpoint:
    try:
        config = json.loads((path / "config.json").read_text())
    except ValueError as exc:
        raise CheckpointError(f"{path / 'config.json'} is not valid JSON ({exc})", path=path) from exc
    merged: dict[str, torch.Tensor] = {}
    for file in hf_weight_files(path):
        merged.update(load_checkpoint(file, {"trust": trust, "allow_globals": allowed}).state_dict)
    return Checkpoint(path, "hf_folder", merged, metadata={"config": config})


def _is_tensor_mapping(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _named_tensors(obj: Mapping[Any, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    odd = next((key for key in obj if not isinstance(key, str)), None)
    if odd is not None:
        raise CheckpointError(
            f"{path} holds a tensor under the {type(odd).__name__} key {str(odd)[:40]!r}; a state_dict names "
            "its tensors with strings",
            path=path,
        )
    return dict(obj)


def extract_state_dict(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], nn.Module | None, str | None]:
    """Find the weights in a loaded object: a module, a bare state_dict, or a training checkpoint holding one.

    Returns:
        The state_dict, the module if ``obj`` held one, and the key the weights were found under.

    Raises:
        CheckpointError: no tensors found.
    """
    if isinstance(obj, nn.Module):
        return dict(obj.state_dict()), obj, None
    if _is_tensor_mapping(obj):
        return _named_tensors(obj, path), None, None
    if isinstance(obj, Mapping):
        for key in (*STATE_DICT_KEYS, *obj.keys()):
            value = obj.get(key)
            if isinstance(value, nn.Module) or _is_tensor_mapping(value):
                state_dict, module, _ = extract_state_dict(value, path)
                return state_dict, module, str(key)
        tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors, None, None
    raise CheckpointError(
        f"{path} holds no weights: found a {type(obj).__name__} without tensors or a 'state_dict' entry",
        path=path,
    )

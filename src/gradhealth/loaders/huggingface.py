"""Build a Hugging Face folder's model from its ``config.json`` with the library's own classes, no code needed.

The folder is untrusted: only classes that ship with ``transformers`` are used (the config's ``model_type`` must be
one the library knows; ``auto_map`` and ``trust_remote_code`` are never honoured), and the weights are the tensors
gradhealth already loaded safely (safetensors, or ``torch.load(weights_only=True)``). Weights the file leaves out
because the library ties them (an LM head tied to the embedding) are tied as the library ties them; anything else
missing is an error. The model is audited with its inference cache off (``use_cache=False``): a cache that is
updated in place breaks the backward pass.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import torch
from torch import nn

from gradhealth.errors import CheckpointError

__all__ = ["build_hf_model", "has_transformers", "is_library_model_type"]


def has_transformers() -> bool:
    """Whether the ``transformers`` package is importable."""
    return importlib.util.find_spec("transformers") is not None


def is_library_model_type(model_type: object) -> bool:
    """Whether transformers is installed and ``model_type`` is one of its own model types."""
    if not isinstance(model_type, str) or not has_transformers():
        return False
    transformers: Any = importlib.import_module("transformers")
    return model_type in transformers.CONFIG_MAPPING


def build_hf_model(config: dict[str, Any], state_dict: dict[str, torch.Tensor], *, where: str) -> tuple[str, nn.Module]:
    """The folder's model, built from ``config`` by ``transformers`` and loaded with ``state_dict``.

    Returns:
        The model's class name and the model, in eval mode, with ``use_cache`` off.

    Raises:
        CheckpointError: transformers is not installed, the ``model_type`` is not one of the library's, or the
            weights do not fit the model it describes.
    """
    model_type = config.get("model_type")
    if not has_transformers():
        raise CheckpointError(
            f"{where} is a Hugging Face folder (model_type {model_type!r}): install transformers to build it from "
            "config.json with no code (pip install transformers), or pass --model package.module:factory",
            path=where,
        )
    transformers: Any = importlib.import_module("transformers")
    hf_config = _config(transformers, config, where)
    model_cls = _model_class(transformers, hf_config, config, where)
    try:
        model = model_cls(hf_config)
    except Exception as exc:  # the library's constructors raise anything on an odd config
        raise CheckpointError(
            f"{where}: transformers could not build {model_cls.__name__} from config.json: "
            f"{type(exc).__name__}: {_first_line(exc)}",
            path=where,
        ) from exc
    _load_weights(model, state_dict, where)
    return model_cls.__name__, model.eval()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


def _config(transformers: Any, config: dict[str, Any], where: str) -> Any:
    model_type = config.get("model_type")
    known = transformers.CONFIG_MAPPING
    if not isinstance(model_type, str) or model_type not in known:
        raise CheckpointError(
            f"{where}/config.json: model_type {model_type!r} is not a model type of the installed transformers "
            f"{transformers.__version__} (remote code is never run); pass --model package.module:factory",
            path=where,
        )
    safe = {k: v for k, v in config.items() if k != "auto_map"}
    try:
        hf_config = known[model_type].from_dict(safe)
    except Exception as exc:  # a malformed config raises anything
        raise CheckpointError(
            f"{where}/config.json does not describe a valid {model_type} model: {type(exc).__name__}: "
            f"{_first_line(exc)}",
            path=where,
        ) from exc
    hf_config.use_cache = False  # an inference cache updated in place breaks the backward pass
    return hf_config


def _model_class(transformers: Any, hf_config: Any, config: dict[str, Any], where: str) -> Any:
    """The first of ``architectures`` that is one of the library's models for this config, else ``AutoModel``'s."""
    base = transformers.PreTrainedModel
    for name in config.get("architectures") or ():
        if not isinstance(name, str) or not name.isidentifier():
            continue
        cls = getattr(transformers, name, None)
        if isinstance(cls, type) and issubclass(cls, base) and getattr(cls, "config_class", None) is type(hf_config):
            return cls
    mapping = transformers.MODEL_MAPPING
    try:
        return mapping[type(hf_config)]
    except KeyError as exc:
        raise CheckpointError(
            f"{where}: transformers has no model class for model_type {hf_config.model_type!r}; pass --model "
            "package.module:factory",
            path=where,
        ) from exc


def _load_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], where: str) -> None:
    expected = model.state_dict()
    shapes = [
        f"{k} {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if shapes:
        raise CheckpointError(
            f"{where}: weights do not fit config.json: mis-shaped {', '.join(shapes[:5])}", path=where
        )
    result = model.load_state_dict(state_dict, strict=False)
    tie = getattr(model, "tie_weights", None)
    if callable(tie):
        tie()  # what from_pretrained does: tied parameters follow the loaded ones
    loaded = {t.data_ptr() for k, t in model.state_dict().items() if k in state_dict}
    params = model.state_dict()
    missing = [
        k
        for k in result.missing_keys
        if params[k].data_ptr() not in loaded and not _ignored(model, "_keys_to_ignore_on_load_missing", k)
    ]
    unexpected = [k for k in result.unexpected_keys if not _ignored(model, "_keys_to_ignore_on_load_unexpected", k)]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {', '.join(missing[:5])}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)}: {', '.join(unexpected[:5])}")
    if problems:
        raise CheckpointError(f"{where}: weights do not fit config.json: {'; '.join(problems)}", path=where)


def _ignored(model: nn.Module, attribute: str, key: str) -> bool:
    """Keys the library itself ignores when loading this class (regular expressions on the class)."""
    import re

    patterns = getattr(model, attribute, None) or ()
    return any(isinstance(p, str) and re.search(p, key) for p in patterns)

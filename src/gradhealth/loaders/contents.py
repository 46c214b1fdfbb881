"""What a loaded training checkpoint holds besides its weights: saved hyperparameters, wrapped modules.

Plain data only: nothing here imports or calls anything named in the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

__all__ = ["HYPER_PARAMETER_KEYS", "hyper_parameters", "module_attributes"]

#: Keys under which training frameworks save a model's constructor arguments (Lightning first).
HYPER_PARAMETER_KEYS = ("hyper_parameters", "hparams", "hyperparameters")


def hyper_parameters(obj: Any) -> tuple[str, dict[str, Any]] | None:
    """``(key, arguments)`` of a checkpoint dict's saved constructor arguments, or ``None``.

    Lightning saves ``self.save_hyperparameters()`` under ``hyper_parameters`` (a dict, or a mapping subclass).
    """
    if not isinstance(obj, Mapping):
        return None
    for key in HYPER_PARAMETER_KEYS:
        value = obj.get(key)
        if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
            return key, dict(value)
    return None


def module_attributes(obj: Any, *, limit: int = 8) -> list[str]:
    """Where an object that is not an ``nn.Module`` holds one: ``["model (NHITS)", "models[0] (LSTM)"]``.

    Looks at the object's attributes and one level into lists, tuples and dicts among them.
    """
    try:
        items = list(vars(obj).items())
    except TypeError:
        return []
    found: list[str] = []
    for name, value in items:
        if isinstance(value, nn.Module):
            found.append(f"{name} ({type(value).__name__})")
        elif isinstance(value, (list, tuple)):
            found += [f"{name}[{i}] ({type(v).__name__})" for i, v in enumerate(value) if isinstance(v, nn.Module)]
        elif isinstance(value, Mapping):
            found += [f"{name}[{k!r}] ({type(v).__name__})" for k, v in value.items() if isinstance(v, nn.Module)]
        if len(found) >= limit:
            break
    return found[:limit]

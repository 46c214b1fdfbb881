"""Build the user's model from ``--model package.module:factory`` and load a checkpoint into it strictly."""

from __future__ import annotations

import inspect
import json
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gradhealth.errors import CheckpointError, ConfigError
from gradhealth.loaders._imports import import_object

if TYPE_CHECKING:
    from gradhealth.adapters.base import Layout

__all__ = [
    "build_from_factory",
    "build_with_layout",
    "factory_arguments",
    "load_strict",
    "parse_model_kwargs",
    "state_dict_diff",
]


def parse_model_kwargs(text: str | None, *, source: str = "--model-kwargs") -> dict[str, Any]:
    """Parse ``--model-kwargs`` (a JSON object).

    Raises:
        ConfigError: not a JSON object.
    """
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError("model_kwargs", text, f"not valid JSON ({exc})", source=source) from exc
    if not isinstance(value, dict):
        raise ConfigError("model_kwargs", text, "must be a JSON object such as '{\"hidden\": 16}'", source=source)
    return value


def build_from_factory(spec: str, kwargs: dict[str, Any]) -> nn.Module:
    """Import ``package.module:factory`` and call it with ``kwargs``; the module it builds (a layout it also
    returns is dropped: see :func:`build_with_layout`).

    Raises:
        ConfigError: the spec is malformed, cannot be imported, or the factory fails or returns no module.
    """
    return build_with_layout(spec, kwargs)[0]


def build_with_layout(spec: str, kwargs: dict[str, Any]) -> tuple[nn.Module, Layout | None]:
    """Import ``package.module:factory`` and call it with ``kwargs``.

    The factory returns an ``nn.Module``, or ``(module, gradhealth.Layout)`` to say how the module takes its
    sequence (a time-major model, an input argument, an output to pick).

    Raises:
        ConfigError: the spec is malformed, cannot be imported, or the factory fails or returns no module.
    """
    from gradhealth.adapters.base import Layout

    factory = _import_factory(spec)
    try:
        made = factory(**kwargs)
    except Exception as exc:  # the user's factory may raise anything
        raise ConfigError("model", spec, f"the factory raised {type(exc).__name__}: {exc}") from exc
    layout = None
    if isinstance(made, tuple) and len(made) == 2 and isinstance(made[1], Layout):
        made, layout = made
    if not isinstance(made, nn.Module):
        raise ConfigError(
            "model", spec, f"the factory returned a {type(made).__name__}, not an nn.Module or (nn.Module, Layout)"
        )
    return made, layout


def _import_factory(spec: str) -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError("model", spec, "use package.module:factory (a callable returning an nn.Module)")
    try:
        return import_object(module_name, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError("model", spec, f"cannot import it ({exc}); is the package on PYTHONPATH?") from exc


def factory_arguments(spec: str, saved: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The factory's keyword arguments: a checkpoint's saved hyperparameters, then ``--model-kwargs`` on top.

    Saved names the factory does not take are left out (as Lightning's ``load_from_checkpoint`` does), unless it
    takes ``**kwargs``.
    """
    if not saved:
        return dict(given)
    try:
        params = inspect.signature(_import_factory(spec)).parameters.values()
    except (TypeError, ValueError):
        return {**saved, **given}
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        saved = {k: v for k, v in saved.items() if k in names}
    return {**saved, **given}


def state_dict_diff(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor]) -> list[str]:
    """Readable differences between a model's state_dict and a checkpoint's: missing, unexpected, mis-shaped."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [
        f"{k} {tuple(given[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in given and tuple(given[k].shape) != tuple(expected[k].shape)
    ]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes)):
        if items:
            shown = ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")
            parts.append(f"{label} {len(items)}: {shown}")
    return parts


def _strip_common_prefix(expected: dict[str, Any], given: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop a wrapper prefix such as ``model.`` or ``module.`` (Lightning, DataParallel) when that makes keys match."""
    if set(given) == set(expected):
        return given
    for prefix in {k.split(".", 1)[0] + "." for k in given if "." in k}:
        stripped = {k[len(prefix) :]: v for k, v in given.items() if k.startswith(prefix)}
        if set(stripped) == set(expected):
            return stripped
    return given


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], *, where: str) -> nn.Module:
    """Load ``state`` into ``model`` strictly.

    Raises:
        CheckpointError: keys or shapes differ; the message lists them.
    """
    expected = model.state_dict()
    state = _strip_common_prefix(expected, state)
    diff = state_dict_diff(expected, state)
    if diff:
        raise CheckpointError(f"{where} does not fit the --model architecture: {'; '.join(diff)}", path=where)
    model.load_state_dict(state, strict=True)
    return model.eval()

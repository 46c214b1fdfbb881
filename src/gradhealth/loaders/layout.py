"""The layout the command line declares for a model (``--batch-first/--no-batch-first``, ``--input-arg``,
``--model-output``, ``--embedding``, ``--forecast-step``, ``--step-per-call``), merged over a ``--model`` factory's
own :class:`Layout`, and checked against the module's own ``batch_first``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from torch import nn

from gradhealth.adapters.base import Layout
from gradhealth.errors import ConfigError

__all__ = ["LAYOUT_SETTINGS", "declared_layout", "layout_fields"]

#: Setting name -> Layout field.
LAYOUT_SETTINGS = {
    "batch_first": "batch_first",
    "input_arg": "input_arg",
    "model_output": "output",
    "embedding": "embedding",
    "forecast_step": "forecast_step",
    "step_per_call": "step_per_call",
}


def _position_or_name(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def layout_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """The Layout fields the settings give (those not set are left out), as plain data."""
    fields: dict[str, Any] = {}
    for name, field_name in LAYOUT_SETTINGS.items():
        value = values.get(name)
        if value is None:
            continue
        fields[field_name] = _position_or_name(value) if name in {"input_arg", "model_output"} else value
    return fields


def declared_layout(module: nn.Module, fields: Mapping[str, Any], base: Layout | None, *, name: str) -> Layout | None:
    """The layout to audit ``module`` with: ``base`` (a factory's) with the command line's ``fields`` on top.

    Raises:
        ConfigError: the declared ``batch_first`` contradicts the module's own ``batch_first`` attribute.
    """
    layout = dataclasses.replace(base or Layout(), **fields) if fields else base
    if layout is None or layout.batch_first is None:
        return layout
    own = getattr(module, "batch_first", None)
    if isinstance(own, bool) and own != layout.batch_first:
        source = "the command line" if "batch_first" in fields else "the --model factory's Layout"
        raise ConfigError(
            "batch_first",
            layout.batch_first,
            f"contradicts {name}'s own batch_first={own}: the module reads its input in its own layout; leave it unset",
            source=source,
        )
    return layout

"""The catch-all adapter, registered ``trylast`` so every other adapter (built-in or plugin) is asked first."""

from __future__ import annotations

from typing import Any

from gradhealth.adapters.base import Adapter, Layout
from gradhealth.adapters.sequence import SequenceAdapter
from gradhealth.hookspecs import hookimpl


@hookimpl(trylast=True)
def gradhealth_adapt_model(model: Any, layout: Layout) -> Adapter | None:
    if layout.token_input or not callable(model):
        return None  # token ids asked for but no embedding found, or not callable: the engine explains
    return SequenceAdapter(model, layout)

"""Model adapters: how gradhealth drives any recurrent model as ``x[B, T, D] -> y[B, T, O]``.

Adapters are chosen through the ``gradhealth_adapt_model`` hook (first result wins), so a plugin can teach
gradhealth a new model family. :func:`adapt` is the entry point the engine uses.
"""

from __future__ import annotations

from typing import Any

from gradhealth.adapters.base import Adapter, AdapterOutput, Direction, Layout, select_output
from gradhealth.adapters.recurrent import Unrolled
from gradhealth.errors import AdapterError

__all__ = ["Adapter", "AdapterOutput", "Direction", "Layout", "Unrolled", "adapt", "select_output"]


def adapt(model: Any, layout: Layout | None = None) -> Adapter:
    """Return the adapter that drives ``model``.

    Raises:
        AdapterError: no adapter accepts the model; the message lists what was tried and what to pass.
    """
    from gradhealth.adapters.builtin import BUILTIN_ADAPTERS
    from gradhealth.plugins import adapt_model

    layout = layout or Layout()
    adapter = adapt_model(model, layout)
    if adapter is not None:
        return adapter
    tried = "; ".join(f"{name} ({accepts})" for name, accepts in BUILTIN_ADAPTERS)
    if layout.token_input:
        raise AdapterError(
            f"layout.token_input=True but {type(model).__name__} contains no nn.Embedding; pass "
            "layout=gradhealth.Layout(embedding='dotted.name') or token_input=False",
            model=model,
        )
    raise AdapterError(
        f"no adapter can drive an object of type {type(model).__qualname__}; tried: {tried}. Pass an nn.Module "
        "or a callable taking [B, T, D], or wrap a step function in gradhealth.Unrolled(step)",
        model=model,
    )

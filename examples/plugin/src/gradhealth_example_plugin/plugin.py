"""The hook implementations gradhealth finds through the entry point ``gradhealth``.

Only :mod:`gradhealth.hookspecs` is imported here; the model, adapter and probe (which import torch) load when a
hook is first called, so merely having the plugin installed costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gradhealth.hookspecs import hookimpl

if TYPE_CHECKING:
    from gradhealth.adapters import Adapter, Layout
    from gradhealth.probes.base import Probe


@hookimpl
def gradhealth_adapt_model(model: Any, layout: Layout) -> Adapter | None:
    """Drive a DiagonalSSM; pass (``None``) on anything else so the other adapters are asked."""
    if type(model).__name__ != "DiagonalSSM":  # cheap test first: unrelated audits never import our model module
        return None
    from gradhealth_example_plugin.adapter import DiagonalSSMAdapter
    from gradhealth_example_plugin.model import DiagonalSSM

    return DiagonalSSMAdapter(model, layout) if isinstance(model, DiagonalSSM) else None


@hookimpl
def gradhealth_register_probes() -> list[type[Probe]]:
    from gradhealth_example_plugin.probe import DecaySpectrum

    return [DecaySpectrum]


@hookimpl
def gradhealth_build_model(checkpoint: Any, options: dict[str, Any]) -> list[tuple[str, Any]] | None:
    """Rebuild a DiagonalSSM from a bare state_dict holding exactly its three tensors, so that
    ``gradhealth audit ssm.pt`` needs no ``--model``; pass on anything else (and whenever ``--model`` is given)."""
    state = getattr(checkpoint, "state_dict", None)
    if options.get("model") or not isinstance(state, dict) or set(state) != {"decay", "input_scale", "output_scale"}:
        return None
    from gradhealth_example_plugin.model import DiagonalSSM

    model = DiagonalSSM(int(state["decay"].numel()))
    model.load_state_dict(state)
    return [("DiagonalSSM", model)]

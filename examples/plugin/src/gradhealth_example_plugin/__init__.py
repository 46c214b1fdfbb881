"""Example gradhealth plugin: an adapter and a probe for a diagonal state-space recurrence (leaky integrators).

The hook implementations live in :mod:`gradhealth_example_plugin.plugin`, the module named by the entry point
``gradhealth``; it imports nothing heavy, so discovering the plugin costs nothing until an audit runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gradhealth_example_plugin.adapter import DiagonalSSMAdapter
    from gradhealth_example_plugin.model import DiagonalSSM
    from gradhealth_example_plugin.probe import DecaySpectrum

__all__ = ["DecaySpectrum", "DiagonalSSM", "DiagonalSSMAdapter"]

_LAZY = {
    "DecaySpectrum": "gradhealth_example_plugin.probe",
    "DiagonalSSM": "gradhealth_example_plugin.model",
    "DiagonalSSMAdapter": "gradhealth_example_plugin.adapter",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'gradhealth_example_plugin' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)

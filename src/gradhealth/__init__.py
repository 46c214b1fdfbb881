"""gradhealth: does gradient still flow back through time, and how far?

Probe any PyTorch recurrent model with backpropagation through time and measure its per-lag gradient profile,
decay rate, effective memory horizon and verdict::

    >>> import torch, gradhealth
    >>> report = gradhealth.audit(torch.nn.GRU(4, 8, batch_first=True), seq_len=32, batch_size=4)
    >>> report.verdict in {"vanishing", "exploding", "healthy", "non_finite"}
    True

The public API resolves lazily: ``import gradhealth`` imports neither torch nor numpy, so the pytest plugin and
``gradhealth --help`` stay cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gradhealth._version import __version__

if TYPE_CHECKING:
    from gradhealth.adapters import Layout, Unrolled
    from gradhealth.engine import audit
    from gradhealth.errors import (
        AdapterError,
        CheckpointError,
        ConfigError,
        GradhealthError,
        ModelCallError,
        PluginError,
        ProbeError,
        UnsafeCheckpointError,
    )
    from gradhealth.report import Finding, Report

__all__ = [
    "AdapterError",
    "CheckpointError",
    "ConfigError",
    "Finding",
    "GradhealthError",
    "Layout",
    "ModelCallError",
    "PluginError",
    "ProbeError",
    "Report",
    "Unrolled",
    "UnsafeCheckpointError",
    "__version__",
    "audit",
]

_LAZY: dict[str, str] = {
    "audit": "gradhealth.engine",
    "Layout": "gradhealth.adapters",
    "Unrolled": "gradhealth.adapters",
    "Report": "gradhealth.report",
    "Finding": "gradhealth.report",
    "AdapterError": "gradhealth.errors",
    "CheckpointError": "gradhealth.errors",
    "ConfigError": "gradhealth.errors",
    "GradhealthError": "gradhealth.errors",
    "ModelCallError": "gradhealth.errors",
    "PluginError": "gradhealth.errors",
    "ProbeError": "gradhealth.errors",
    "UnsafeCheckpointError": "gradhealth.errors",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'gradhealth' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

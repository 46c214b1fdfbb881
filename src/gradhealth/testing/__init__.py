"""Assertion helpers and the auditor of the gradhealth pytest plugin.

    >>> import torch
    >>> import gradhealth.testing as ght
    >>> report = ght.assert_no_exploding(torch.nn.GRU(2, 4, batch_first=True), over=16, batch_size=4)
    >>> report.verdict
    'vanishing'

Every helper audits the model (settings from its keyword arguments, then the running test's
``@pytest.mark.gradhealth`` marker, ``--gradhealth-*`` options, ``GRADHEALTH_*`` variables and ``gradhealth_*``
ini keys), returns the Report when the check passes, and otherwise raises an AssertionError that explains the
verdict, the deciding numbers, the lag profile, the findings and the call that reproduces it.

Names resolve lazily so the pytest plugin can read this package's settings table without importing the engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gradhealth.testing._assertions import (
        assert_finite_gradients,
        assert_healthy,
        assert_memory_horizon,
        assert_no_exploding,
        assert_no_vanishing,
        assert_report,
    )
    from gradhealth.testing._auditor import Auditor
    from gradhealth.testing._message import profile_plot

__all__ = [
    "Auditor",
    "assert_finite_gradients",
    "assert_healthy",
    "assert_memory_horizon",
    "assert_no_exploding",
    "assert_no_vanishing",
    "assert_report",
    "profile_plot",
]

_LAZY: dict[str, str] = {
    "Auditor": "gradhealth.testing._auditor",
    "profile_plot": "gradhealth.testing._message",
    **{name: "gradhealth.testing._assertions" for name in __all__ if name.startswith("assert_")},
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'gradhealth.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

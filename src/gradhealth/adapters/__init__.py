"""Model adapters: how gradhealth drives any recurrent model as ``x[B, T, D] -> y[B, T, O]``.

Adapters are chosen through the ``gradhealth_adapt_model`` hook (first result wins), so a plugin can teach
gradhealth a new model family; the built-ins register in :mod:`gradhealth.adapters.builtin`. The engine asks for
one through :func:`gradhealth.plugins.adapt`.
"""

from __future__ import annotations

from gradhealth.adapters.base import Adapter, AdapterOutput, Direction, Layout, select_output
from gradhealth.adapters.recurrent import Unrolled

__all__ = ["Adapter", "AdapterOutput", "Direction", "Layout", "Unrolled", "select_output"]

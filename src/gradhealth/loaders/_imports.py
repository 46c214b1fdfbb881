"""Resolve ``module`` + ``attr.path`` to a Python object (for ``--model`` factories and ``--allow-global``)."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["import_object"]


def import_object(module_name: str, attr: str) -> Any:
    """Import ``module_name`` and follow the dotted ``attr`` inside it.

    Raises:
        ImportError: the module cannot be imported.
        AttributeError: the module has no such attribute path.
    """
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj

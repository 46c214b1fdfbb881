"""The built-in loader hook implementations, registered like any plugin's (``trylast``: plugins go first).

Imports nothing heavy at module level: building the plugin manager must not import torch for commands that only
read reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gradhealth.hookspecs import hookimpl

__all__ = ["gradhealth_build_model", "gradhealth_load_checkpoint"]


@hookimpl(trylast=True)
def gradhealth_load_checkpoint(path: Path, options: dict[str, Any]) -> Any:
    """Load any format :func:`gradhealth.loaders.detect.detect_format` knows."""
    from gradhealth.loaders.load import load_checkpoint
    from gradhealth.memory import DEFAULT_LIMIT

    return load_checkpoint(
        path,
        {
            "trust": options.get("trust", False),
            "allow_globals": options.get("allow_globals", ()),
            "memory_limit": options.get("memory_limit", DEFAULT_LIMIT),
            "metadata_only": bool(options.get("metadata_only", False)),
        },
    )


@hookimpl(trylast=True)
def gradhealth_build_model(checkpoint: Any, options: dict[str, Any]) -> Any:
    """Models to audit as ``[(name, module), ...]`` (see :mod:`gradhealth.loaders.models`)."""
    from gradhealth.loaders.models import models_in_checkpoint

    return models_in_checkpoint(checkpoint, options)

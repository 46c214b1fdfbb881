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
    """Models to audit as ``[(name, module), ...]``: the ``--model`` factory, or every recurrent layer found."""
    import torch
    from torch import nn

    from gradhealth.loaders.factory import build_from_factory, load_strict
    from gradhealth.loaders.reconstruct import reconstruct_layers

    spec = options.get("model")
    if spec:
        model = build_from_factory(spec, dict(options.get("model_kwargs") or {}))
        return [(spec.partition(":")[2], load_strict(model, checkpoint.state_dict, where=str(checkpoint.path)))]
    module = checkpoint.module
    if isinstance(module, nn.Module) and not isinstance(module, torch.jit.ScriptModule):
        live = [
            (name or type(module).__name__, sub.eval())
            for name, sub in module.named_modules()
            if isinstance(sub, (nn.RNNBase, nn.RNNCellBase))
        ]
        if live:
            return live
    return [
        (found.name, found.module)
        for found in reconstruct_layers(checkpoint.state_dict, nonlinearity=options.get("nonlinearity") or "tanh")
    ]

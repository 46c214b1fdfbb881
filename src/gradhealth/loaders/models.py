"""The models a loaded checkpoint holds, in order of precedence.

1. ``--model package.module:factory``: the user's architecture, called with the checkpoint's saved
   hyperparameters (Lightning's ``hyper_parameters``) and ``--model-kwargs`` on top, loaded strictly (a wrapper
   prefix such as ``model.`` is dropped when that makes the keys fit). The factory may return
   ``(module, gradhealth.Layout)``.
2. A whole module the file held (a trusted pickle): it *is* the model. A container without a ``forward`` of its own
   gives its recurrent layers instead.
3. A Hugging Face folder whose ``config.json`` names a ``model_type`` of the installed ``transformers``: built
   by the library (:mod:`gradhealth.loaders.huggingface`); another model type is rebuilt as in 4 when its weights
   hold standard layers.
4. Standard ``nn.RNN/LSTM/GRU`` layers and cells rebuilt from parameter names and shapes.

What the builder had to assume or was told rides along in ``checkpoint.metadata``: ``layouts`` (a factory's
:class:`~gradhealth.adapters.base.Layout` by model name) and ``assumptions`` (by model name, one sentence each).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gradhealth.loaders.factory import build_with_layout, factory_arguments, load_strict
from gradhealth.loaders.huggingface import build_hf_model, is_library_model_type
from gradhealth.loaders.reconstruct import layer_specs, reconstruct_layers

__all__ = ["ASSUMED_NONLINEARITY", "models_in_checkpoint", "nonlinearity_assumption"]

#: The nonlinearity rebuilt ``nn.RNN`` layers get when the user does not say.
ASSUMED_NONLINEARITY = "tanh"


def nonlinearity_assumption(family: str, given: str | None) -> str | None:
    """The sentence saying what a rebuilt layer's nonlinearity was assumed to be, or ``None`` if nothing was."""
    if family != "RNN" or given is not None:
        return None
    return (
        f"nonlinearity assumed {ASSUMED_NONLINEARITY}: a bare nn.RNN state_dict cannot tell tanh from relu; pass "
        "--nonlinearity relu if the model used ReLU"
    )


def models_in_checkpoint(checkpoint: Any, options: dict[str, Any]) -> list[tuple[str, nn.Module]]:
    """``[(name, module), ...]`` to audit (options: ``model``, ``model_kwargs``, ``nonlinearity``).

    Raises:
        ConfigError: the ``--model`` factory fails.
        CheckpointError: the weights do not fit the architecture.
    """
    metadata = checkpoint.metadata
    spec = options.get("model")
    if spec:
        saved = metadata.get("hyper_parameters") or {}
        kwargs = factory_arguments(spec, saved, dict(options.get("model_kwargs") or {}))
        model, layout = build_with_layout(spec, kwargs)
        name = spec.partition(":")[2]
        if layout is not None:
            metadata.setdefault("layouts", {})[name] = layout
        return [(name, load_strict(model, checkpoint.state_dict, where=str(checkpoint.path)))]
    module = checkpoint.module
    if isinstance(module, nn.Module) and not isinstance(module, torch.jit.ScriptModule):
        whole = _whole_module(module)
        if whole:
            return whole
    config = metadata.get("config")
    # A folder's model: the library's own model type first; else standard layers if the weights hold some; else
    # the one line saying why it cannot be built.
    is_hf = checkpoint.format == "hf_folder" and isinstance(config, dict) and "model_type" in config
    if is_hf and (is_library_model_type(config["model_type"]) or not layer_specs(checkpoint.state_dict)):
        return [build_hf_model(config, checkpoint.state_dict, where=str(checkpoint.path))]
    given = options.get("nonlinearity")
    found = reconstruct_layers(checkpoint.state_dict, nonlinearity=given or ASSUMED_NONLINEARITY)
    for layer in found:
        assumed = nonlinearity_assumption(layer.spec.family, given)
        if assumed:
            metadata.setdefault("assumptions", {})[layer.name] = assumed
    return [(layer.name, layer.module) for layer in found]


def _whole_module(module: nn.Module) -> list[tuple[str, nn.Module]]:
    if type(module).forward is not nn.Module.forward:
        return [(type(module).__name__, module.eval())]
    return [
        (name or type(module).__name__, sub.eval())
        for name, sub in module.named_modules()
        if isinstance(sub, (nn.RNNBase, nn.RNNCellBase))
    ]

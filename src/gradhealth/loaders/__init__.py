"""Checkpoint loading for the CLI: format detection by content, safe loading, and the model to audit.

:func:`open_checkpoint` loads through the ``gradhealth_load_checkpoint`` hook and :func:`models_to_audit` asks the
``gradhealth_build_model`` hook, so a plugin can teach gradhealth a new format or architecture; the built-in
implementations (``gradhealth.loaders.builtin``) cover torch.save (zip and legacy), safetensors, TorchScript,
torch.export archives, pickles and Hugging Face-style folders, and rebuild standard recurrent layers from a bare
state_dict.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradhealth.errors import CheckpointError
from gradhealth.loaders.detect import CODE_FORMATS, FORMATS, detect_format

if TYPE_CHECKING:
    from torch import nn

    from gradhealth.loaders.load import Checkpoint

__all__ = ["CODE_FORMATS", "FORMATS", "detect_format", "models_to_audit", "open_checkpoint"]


def open_checkpoint(path: Path, options: dict[str, Any]) -> Checkpoint:
    """Load a checkpoint through the plugin hook (options: ``trust``, ``allow_globals``).

    Raises:
        CheckpointError: missing, corrupt, refused as unsafe (:class:`~gradhealth.errors.UnsafeCheckpointError`).
    """
    from gradhealth import plugins

    checkpoint = plugins.load_checkpoint(path, options)
    if checkpoint is None:
        raise CheckpointError(f"{path}: no loader accepted this checkpoint", path=path)
    return checkpoint


def models_to_audit(checkpoint: Checkpoint, options: dict[str, Any]) -> list[tuple[str, nn.Module]]:
    """The named models to audit in a checkpoint (options: ``model``, ``model_kwargs``, ``nonlinearity``).

    Raises:
        CheckpointError: no recurrent layer found and no ``--model`` given.
    """
    from gradhealth import plugins

    models = plugins.build_model(checkpoint, options)
    if not models:
        raise CheckpointError(
            f"{checkpoint.path}: no standard RNN/LSTM/GRU layer or cell found among {len(checkpoint.state_dict)} "
            "tensors; pass --model package.module:factory to build the architecture",
            path=checkpoint.path,
        )
    return list(models)

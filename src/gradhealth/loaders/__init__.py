"""Checkpoint loading for the CLI: format detection by content, safe loading, and the model to audit.

The built-in implementations of the ``gradhealth_load_checkpoint`` and ``gradhealth_build_model`` hooks
(:mod:`gradhealth.loaders.builtin`) cover torch.save (zip and legacy), safetensors, TorchScript, torch.export
archives, pickles and Hugging Face-style folders, and rebuild standard recurrent layers from a bare state_dict. The
CLI loads through the hooks (:func:`gradhealth.plugins.open_checkpoint`, :func:`gradhealth.plugins.models_to_audit`),
so a plugin can teach gradhealth a new format or architecture.
"""

from __future__ import annotations

from gradhealth.loaders.detect import CODE_FORMATS, FORMATS, detect_format

__all__ = ["CODE_FORMATS", "FORMATS", "detect_format"]

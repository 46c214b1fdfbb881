"""What kind of sequence model an adapter drives, so findings and advice fit the architecture.

The lag profile is measured the same way on any model, but what a short horizon *means* depends on what carries
information across time: in a recurrence it is a product of Jacobians that can vanish (gated cells and
initialisation are the remedies); in a convolution or a per-step layer it is a finite receptive field (nothing to
vanish: the gradient is exactly zero beyond the field); in attention every position reaches the output directly,
so a small g(k) reflects small attention weights, not a vanishing product.

:func:`classify_architecture` answers from the module tree, conservatively: a model is ``recurrent`` if it holds
a torch recurrent layer or cell or is driven step by step, ``attention`` if it holds an attention layer and no
recurrence, ``convolutional`` if it holds convolutions and neither, ``feedforward`` if it is built only from
torch's own layers (no user ``forward`` that could hide a loop), and ``unknown`` otherwise (a hand-written
``forward`` may be a recurrence). A model can say what it is with a ``gradhealth_architecture`` attribute.

    >>> from torch import nn
    >>> classify_architecture(nn.Sequential(nn.Linear(4, 8), nn.Tanh()))
    'feedforward'
    >>> classify_architecture(nn.LSTM(4, 8))
    'recurrent'
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn
from torch.nn.modules.conv import _ConvNd

__all__ = ["ARCHITECTURES", "classify_architecture"]

#: Every answer :func:`classify_architecture` can give.
ARCHITECTURES = ("recurrent", "attention", "convolutional", "feedforward", "unknown")

#: Adapter families that drive a recurrence step by step.
_STEP_FAMILIES = ("torch.nn.RNNBase", "torch.nn.RNNCellBase", "gradhealth.Unrolled")

_ATTENTION_NAME = re.compile(r"attention|attn|transformer", re.IGNORECASE)


def _declared(obj: Any) -> str | None:
    value = getattr(obj, "gradhealth_architecture", None)
    return value if isinstance(value, str) and value in ARCHITECTURES else None


def classify_architecture(model: Any, *, family: str | None = None) -> str:
    """The architecture of ``model`` (one of :data:`ARCHITECTURES`); ``family`` is the adapter's family name."""
    declared = _declared(model)
    if declared is not None:
        return declared
    if family is not None and family.startswith(_STEP_FAMILIES):
        return "recurrent"
    if not isinstance(model, nn.Module):
        return "unknown"
    modules = list(model.modules())
    kinds = {_declared(m) for m in modules} - {None}
    if "recurrent" in kinds or any(isinstance(m, (nn.RNNBase, nn.RNNCellBase)) for m in modules):
        return "recurrent"
    if "attention" in kinds or any(
        isinstance(m, nn.MultiheadAttention) or _ATTENTION_NAME.search(type(m).__name__) for m in modules
    ):
        return "attention"
    if any(isinstance(m, _ConvNd) for m in modules):
        return "convolutional"
    if all(type(m).__module__.startswith("torch.nn.") for m in modules):
        return "feedforward"
    return "unknown"

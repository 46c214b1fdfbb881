"""The built-in adapter hook implementations, registered like any plugin's.

Order matters: the specific families are ``tryfirst`` and the catch-all sequence adapter is ``trylast``, so a
plugin's plain implementation is consulted before the catch-all.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from gradhealth.adapters.base import Adapter, Layout
from gradhealth.adapters.recurrent import CellAdapter, RecurrentModuleAdapter, Unrolled, UnrolledAdapter
from gradhealth.adapters.sequence import TokenAdapter, find_embedding
from gradhealth.hookspecs import hookimpl

#: What each built-in adapter accepts, for the "no adapter fits" message.
BUILTIN_ADAPTERS = (
    ("torch.nn.RNN/LSTM/GRU", "a torch.nn.RNNBase module"),
    ("torch.nn.*Cell", "an RNNCell, LSTMCell or GRUCell"),
    ("gradhealth.Unrolled", "a step function (x_t, state) -> (y_t, state) wrapped in gradhealth.Unrolled"),
    ("token-ids", "a module containing an nn.Embedding, or layout.token_input=True"),
    ("sequence", "any module or callable mapping [B, T, D] to [B, T, O]"),
)


@hookimpl(tryfirst=True)
def gradhealth_adapt_model(model: Any, layout: Layout) -> Adapter | None:
    if isinstance(model, nn.RNNBase):
        return RecurrentModuleAdapter(model, layout)
    if isinstance(model, nn.RNNCellBase):
        return CellAdapter(model, layout)
    if isinstance(model, Unrolled):
        return UnrolledAdapter(model, layout)
    if isinstance(model, nn.Module) and layout.token_input is not False:
        embedding = find_embedding(model, layout.embedding)
        if embedding is not None:
            return TokenAdapter(model, layout, embedding)
    return None

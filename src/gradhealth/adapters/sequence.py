"""Adapters for arbitrary sequence models: ``[B, T, D] -> [B, T, O]`` modules and callables, and token-id
models whose gradient is taken at an embedding's output."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gradhealth.adapters.base import Adapter, AdapterOutput, Layout, infer_input_size, select_output
from gradhealth.errors import AdapterError

__all__ = ["SequenceAdapter", "TokenAdapter", "find_embedding"]


def find_embedding(model: nn.Module, name: str | None) -> tuple[str, nn.Embedding] | None:
    """The embedding named ``name``, or the first ``nn.Embedding`` of the model (``None`` if it has none).

    Raises:
        AdapterError: ``name`` does not name an ``nn.Embedding`` of the model.
    """
    if name is not None:
        try:
            sub = model.get_submodule(name)
        except AttributeError as exc:
            raise AdapterError(f"layout.embedding={name!r}: {type(model).__name__} has no such submodule") from exc
        if not isinstance(sub, nn.Embedding):
            raise AdapterError(f"layout.embedding={name!r} is a {type(sub).__name__}, not an nn.Embedding")
        return name, sub
    for sub_name, sub in model.named_modules():
        if isinstance(sub, nn.Embedding):
            return sub_name, sub
    return None


class SequenceAdapter(Adapter):
    """Any module or callable that maps a sequence to a sequence, with the layout the user declares.

    The model is called as ``model(x)`` (or with ``x`` at ``layout.input_arg``), and the output sequence is
    picked out of tuples, dicts and dataclasses by ``layout.output``.
    """

    family = "sequence"

    @property
    def input_size(self) -> int | None:
        return infer_input_size(self.model) if isinstance(self.model, nn.Module) else None

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        kwargs = dict(self.layout.forward_kwargs)
        arg = self.layout.input_arg
        if isinstance(arg, str):
            value = self.model(**{arg: x}, **kwargs)
        else:
            args: list[Any] = [None] * arg + [x]
            value = self.model(*args, **kwargs)
        return select_output(value, self.layout.output)

    def _forward(self, inputs: torch.Tensor) -> AdapterOutput:
        self.reset_state()
        try:
            x = inputs if self.batch_first else inputs.transpose(0, 1)
            out = self._call(x)
        finally:
            self.reset_state()
        return AdapterOutput(inputs, out if self.batch_first else out.transpose(0, 1))


class TokenAdapter(SequenceAdapter):
    """A model whose forward takes token ids: the gradient is taken at the embedding's output.

    A forward hook replaces the embedding's output by a leaf tensor that requires grad (the first call only);
    the hook is removed when the call returns, also when it fails.
    """

    family = "token-ids"

    def __init__(self, model: nn.Module, layout: Layout, embedding: tuple[str, nn.Embedding]) -> None:
        super().__init__(model, layout)
        self.embedding_name = embedding[0]

    @property
    def embedding(self) -> nn.Embedding:
        module = self.model.get_submodule(self.embedding_name) if self.embedding_name else self.model
        assert isinstance(module, nn.Embedding)
        return module

    @property
    def input_size(self) -> int:
        return int(self.embedding.embedding_dim)

    @property
    def vocab_size(self) -> int:
        return int(self.embedding.num_embeddings)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["embedding"] = self.embedding_name
        return info

    def _forward(self, inputs: torch.Tensor) -> AdapterOutput:
        captured: list[torch.Tensor] = []

        def capture(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor | None:
            if captured:
                return None
            leaf = output.detach().requires_grad_(True)
            captured.append(leaf)
            return leaf

        handle = self.embedding.register_forward_hook(capture)
        try:
            result = super()._forward(inputs)
        finally:
            handle.remove()
        if not captured:
            raise AdapterError(
                f"the embedding {self.embedding_name!r} was never called by {type(self.model).__name__}; "
                "pass layout=gradhealth.Layout(embedding=...) naming the one the forward uses"
            )
        return AdapterOutput(captured[0], result.output, is_time_major=not self.batch_first)

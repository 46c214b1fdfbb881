"""The task interface: seeded synthetic inputs (and targets) for probing a recurrent model."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar

import torch

from gradhealth.errors import ConfigError

__all__ = ["Task", "TaskBatch"]


@dataclass(frozen=True)
class TaskBatch:
    """One batch of a task.

    Attributes:
        inputs: ``[B, T, D]`` floats, or ``[B, T]`` token ids for token-input models.
        targets: what a trained model should output (``None`` for pure probing inputs): class ids ``[B, T]`` for
            symbol tasks, values ``[B, T, 1]`` for regression tasks.
        target_mask: ``[B, T]`` booleans, True at the steps where the task's loss is taken.
    """

    inputs: torch.Tensor
    targets: torch.Tensor | None = None
    target_mask: torch.Tensor | None = None

    @property
    def is_classification(self) -> bool:
        """True when ``targets`` holds class ids."""
        return self.targets is not None and not self.targets.is_floating_point()


class Task(abc.ABC):
    """A generator of seeded synthetic sequences.

    Subclasses set ``name``, ``description`` and ``min_input_size`` and implement :meth:`_generate`; the base
    class validates arguments so every task fails the same readable way.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    min_input_size: ClassVar[int] = 1
    supports_tokens: ClassVar[bool] = False

    def generate(
        self,
        batch_size: int,
        seq_len: int,
        input_size: int,
        *,
        generator: torch.Generator,
        scale: float = 1.0,
        dtype: torch.dtype = torch.float32,
        vocab_size: int | None = None,
    ) -> TaskBatch:
        """Draw one batch of ``batch_size`` sequences of length ``seq_len`` (CPU tensors).

        Args:
            batch_size: number of sequences B.
            seq_len: total length T.
            input_size: features per step D (ignored for token inputs).
            generator: the seeded source of randomness; nothing else is drawn from.
            scale: input standard deviation (or amplitude for one-hot tasks).
            dtype: floating dtype of ``inputs``.
            vocab_size: when given, produce token ids in ``[0, vocab_size)`` instead of features.

        Raises:
            ConfigError: the task cannot produce inputs of this size or kind.
        """
        if vocab_size is not None and not self.supports_tokens:
            raise ConfigError(
                "task",
                self.name,
                "this task cannot feed a token-id model; use task='noise'",
            )
        if vocab_size is None and input_size < self.min_input_size:
            raise ConfigError(
                "task",
                self.name,
                f"needs input_size >= {self.min_input_size}, the model takes {input_size}; use task='noise'",
            )
        batch = self._generate(batch_size, seq_len, input_size, generator, scale, vocab_size)
        inputs = batch.inputs if vocab_size is not None else batch.inputs.to(dtype)
        return TaskBatch(inputs, batch.targets, batch.target_mask)

    @abc.abstractmethod
    def _generate(
        self,
        batch_size: int,
        seq_len: int,
        input_size: int,
        generator: torch.Generator,
        scale: float,
        vocab_size: int | None,
    ) -> TaskBatch:
        """Produce the batch in float64 (or int64 ids); the base class casts."""

    def __repr__(self) -> str:
        return f"<Task {self.name!r}>"

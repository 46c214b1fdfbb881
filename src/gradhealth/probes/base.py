"""The probe contract: each probe measures one thing on the probe copy of the model and returns plain data.

A probe never touches the user's model (it gets a copy through :class:`ProbeContext`), never draws from the
global RNG (it draws from :meth:`ProbeContext.generator`, seeded per probe), and restores anything it changes on
the copy in ``finally`` (see :func:`input_gradients_only`).
"""

from __future__ import annotations

import abc
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from gradhealth.errors import ConfigError
from gradhealth.tasks import Task, TaskBatch
from gradhealth.tasks.builtin import BUILTIN_TASKS

if TYPE_CHECKING:
    from gradhealth.adapters import Adapter
    from gradhealth.config import AuditConfig
    from gradhealth.report import Finding

__all__ = ["Probe", "ProbeContext", "input_gradients_only"]


@dataclass
class ProbeContext:
    """What every probe gets: the adapter over the probe copy, the settings, and seeded input generation.

    Attributes:
        adapter: drives the probe copy of the model (already in ``dtype`` on ``device``, in eval mode).
        config: the audit's settings.
        task: the input task.
        dtype: the probe dtype.
        device: the probe device.
        input_size: features per step (the embedding width for token-id models).
        tasks: every task by name, for probes that drive the model with a task of their own (default: the
            built-in tasks; the engine passes the plugin registry).
    """

    adapter: Adapter
    config: AuditConfig
    task: Task
    dtype: torch.dtype
    device: torch.device
    input_size: int
    tasks: Mapping[str, Task] = field(default_factory=lambda: {n: t() for n, t in BUILTIN_TASKS.items()})

    def task_named(self, name: str) -> Task:
        """The task called ``name``.

        Raises:
            ConfigError: no task has that name.
        """
        if name not in self.tasks:
            raise ConfigError("task", name, f"unknown task; known tasks: {', '.join(sorted(self.tasks))}")
        return self.tasks[name]

    @property
    def module(self) -> nn.Module | None:
        """The probe copy as an ``nn.Module`` (``None`` for plain callables)."""
        return self.adapter.module

    @property
    def dtype_name(self) -> str:
        """The probe dtype as a string such as ``"float64"``."""
        return str(self.dtype).removeprefix("torch.")

    def generator(self, stream: str) -> torch.Generator:
        """A CPU generator seeded from the audit seed and a stream name, so probes draw independently and the
        same settings give the same numbers on any device."""
        seed = (self.config.seed * 1_000_003 + zlib.crc32(stream.encode())) % (2**63)
        return torch.Generator().manual_seed(seed)

    def make_batch(
        self,
        stream: str,
        *,
        batch_size: int | None = None,
        total_len: int | None = None,
        task: Task | None = None,
    ) -> TaskBatch:
        """Draw a task batch (on the probe device, in the probe dtype) from the named stream."""
        batch = (task or self.task).generate(
            batch_size or self.config.batch_size,
            total_len or self.config.total_len,
            self.input_size,
            generator=self.generator(stream),
            scale=self.config.input_scale,
            dtype=self.dtype,
            vocab_size=self.adapter.vocab_size,
        )
        device = self.device
        return TaskBatch(
            batch.inputs.to(device),
            None if batch.targets is None else batch.targets.to(device),
            None if batch.target_mask is None else batch.target_mask.to(device),
        )

    def randn(self, stream: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """Gaussian draws from a named stream, drawn in float64 on CPU, cast like ``like``."""
        return torch.randn(shape, generator=self.generator(stream), dtype=torch.float64).to(like)


@contextmanager
def input_gradients_only(module: nn.Module | None) -> Iterator[None]:
    """Turn off ``requires_grad`` on every parameter for the duration (gradients are then taken with respect
    to inputs only, which is cheaper), and restore each flag afterwards, also on error."""
    if module is None:
        yield
        return
    flags = [(p, p.requires_grad) for p in module.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


class Probe(abc.ABC):
    """Base class of every probe, built-in or plugin.

    Subclasses set ``name`` (a noun, used in ``probes=[...]`` and reports) and ``description``, implement
    :meth:`run`, and may override :meth:`skip_reason` and :meth:`findings`.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""

    def skip_reason(self, adapter: Adapter) -> str | None:
        """Why this probe does not apply to the model, or ``None`` if it does."""
        return None

    @abc.abstractmethod
    def run(self, ctx: ProbeContext) -> Any:
        """Measure and return the result: a dataclass, an object with ``to_dict()``, or a plain dict."""

    def findings(self, result: Any, ctx: ProbeContext) -> list[Finding]:
        """Findings (with advice) the result calls for."""
        return []

    def __repr__(self) -> str:
        return f"<Probe {self.name!r}>"

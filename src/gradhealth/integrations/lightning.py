"""A Lightning callback that watches the gradient horizon form during ``trainer.fit``.

It runs a :class:`gradhealth.monitor.Monitor` over the LightningModule (or a submodule of it) and sends each audit's
scalars through the trainer's own loggers (TensorBoard, CSV, W&B... whatever ``Trainer(logger=...)`` holds), at the
trainer's global step. Audits run on the global-rank-zero process only, after every ``every``-th optimiser step.
Like the monitor, it never changes the training run. Needs ``lightning`` (the ``lightning`` extra)::

    from gradhealth.integrations.lightning import GradhealthCallback

    trainer = lightning.Trainer(callbacks=[GradhealthCallback(every=200, select="encoder", seq_len=128)])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

try:
    from lightning.pytorch import LightningModule, Trainer
    from lightning.pytorch.callbacks import Callback
except ImportError as exc:  # pragma: no cover - exercised only where lightning is missing
    raise ImportError(
        f"gradhealth.integrations.lightning needs Lightning ({exc}); install the lightning extra"
    ) from None

from gradhealth.errors import ConfigError
from gradhealth.monitor import DEFAULT_EVERY, Monitor

__all__ = ["GradhealthCallback"]


class GradhealthCallback(Callback):  # type: ignore[misc, unused-ignore]
    """Audit the model every ``every`` optimiser steps of ``trainer.fit`` and log through the trainer's loggers.

    Args:
        every: audit after every ``every``-th optimiser step (the trainer's ``global_step``).
        history: a JSON-lines history file to append to (see :mod:`gradhealth.history`).
        select: what to audit: ``None`` for the LightningModule itself, a submodule's dotted name
            (``"encoder.rnn"``), or a function of the LightningModule returning the model.
        audit_at_start: also audit at step 0, before the first optimiser step.
        tag: prefix of the logged scalars' names.
        **settings: audit settings (``seq_len``, ``batch_size``...; see :func:`gradhealth.audit`).

    Attributes:
        monitor: the :class:`~gradhealth.monitor.Monitor` of the current fit (``None`` before it starts); its
            ``records`` hold the audits.
    """

    def __init__(
        self,
        *,
        every: int = DEFAULT_EVERY,
        history: str | Path | None = None,
        select: str | Callable[[LightningModule], Any] | None = None,
        audit_at_start: bool = False,
        tag: str = "gradhealth",
        **settings: Any,
    ) -> None:
        super().__init__()
        self.every, self.history, self.select, self.tag = every, history, select, tag
        self.audit_at_start = audit_at_start
        self.settings = settings
        self.monitor: Monitor | None = None
        self._last_step = -1
        Monitor(None, every=every, wandb=False, **settings)  # validate the settings now, not mid-fit

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self.monitor = Monitor(
            self._target(pl_module),
            every=self.every,
            history=self.history,
            wandb=False,  # W&B, like every logger, is reached through the trainer's loggers
            loggers=[_trainer_logger(trainer)],
            tag=self.tag,
            **self.settings,
        )
        self._last_step = -1
        if self.audit_at_start:
            self._audit(trainer.global_step)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        # with gradient accumulation several batches end at the same global step: audit it once
        if self.monitor is not None and step > 0 and step % self.every == 0 and step != self._last_step:
            self._audit(step)

    def _audit(self, step: int) -> None:
        assert self.monitor is not None
        self._last_step = step
        self.monitor.audit(step)

    def _target(self, pl_module: LightningModule) -> Any:
        if self.select is None:
            return pl_module
        if callable(self.select):
            return self.select(pl_module)
        try:
            return pl_module.get_submodule(self.select)
        except AttributeError:
            names = ", ".join(name for name, _ in pl_module.named_modules() if name) or "none"
            raise ConfigError(
                "select", self.select, f"{type(pl_module).__name__} has no such submodule; its submodules: {names}"
            ) from None


def _trainer_logger(trainer: Trainer) -> Callable[[Mapping[str, float], int], None]:
    def log(metrics: Mapping[str, float], step: int) -> None:
        for logger in trainer.loggers:
            logger.log_metrics(dict(metrics), step=step)

    return log

"""Watch the gradient horizon form during training: audit every N steps, write a history, log the numbers.

:class:`Monitor` wraps a plain PyTorch training loop. Every ``every`` optimiser steps it audits a deep copy of the
model (the engine probes a copy in the probe dtype, float32 by default) on the SAME probe inputs each time (the
audit is seeded), so successive points differ only because the weights changed. The live model is never touched:
its gradients, train/eval modes, hooks and ``requires_grad`` flags, and the torch, NumPy and Python random streams
are all as they were, so a run with the monitor is bit-identical to the same run without it. Hooks registered on
the model are copied with it, since some are part of what it computes (``weight_norm``); a hook with side effects
outside the model also sees the probe copy's calls.

Each audit becomes one :class:`~gradhealth.history.HistoryRecord` (appended to a JSON-lines file if ``history`` is
given, read back with ``gradhealth history``), and its scalars go to TensorBoard (a ``SummaryWriter`` or a log
directory), to Weights & Biases when it is installed and a run is active (never required), and to any extra
``loggers`` (callables ``(metrics, step)``, which is how the Lightning callback logs through the trainer).

    >>> import torch, gradhealth.monitor
    >>> model = torch.nn.GRU(4, 8, batch_first=True)
    >>> monitor = gradhealth.monitor.Monitor(model, every=2, seq_len=20, batch_size=4)
    >>> for step in range(4):
    ...     report = monitor.step()   # after optimizer.step() in a real loop
    >>> [record.step for record in monitor.records]
    [2, 4]
"""

from __future__ import annotations

import contextlib
import random
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradhealth.errors import ConfigError
from gradhealth.history import HistoryRecord, append_record, record_from_report
from gradhealth.report import VERDICTS

if TYPE_CHECKING:
    from gradhealth.adapters import Layout
    from gradhealth.report import Report

__all__ = ["DEFAULT_DTYPE", "DEFAULT_EVERY", "DEFAULT_PROBES", "Monitor", "history_metrics"]

#: Audit every this many optimiser steps unless told otherwise (the overhead budget, benchmarks/bench_monitor.py).
DEFAULT_EVERY = 500
#: The probes a monitor runs unless told otherwise: the lag profile only, the cheapest that gives the horizon.
DEFAULT_PROBES = "quick"
#: The probe dtype a monitor uses unless told otherwise. float32 costs a fifth of float64 on a CPU, and its
#: resolution floor (about 1e-31 of g(0)) lies far below any horizon threshold, so trends are unaffected; pass
#: ``dtype="float64"`` (or ``None``: the audit's automatic choice) to match a default ``gradhealth audit``.
DEFAULT_DTYPE = "float32"

#: ``(metrics, step)``: where a monitor's scalars go besides TensorBoard and W&B.
MetricsLogger = Callable[[Mapping[str, float], int], None]


class Monitor:
    """Audit a model every ``every`` training steps without changing the training run.

    Args:
        model: the model being trained (anything :func:`gradhealth.audit` accepts).
        every: audit after every ``every``-th optimiser step.
        history: a JSON-lines file to append one record per audit to (created if missing).
        writer: a ``torch.utils.tensorboard.SummaryWriter`` (or anything with ``add_scalar``), or a log directory
            to open one in (needs the ``tensorboard`` package).
        wandb: log to Weights & Biases: ``None`` when ``wandb`` is importable and a run is active, ``True``
            always (an error if it is not installed), ``False`` never.
        loggers: more callables ``(metrics, step)`` that receive the scalars.
        tag: the prefix of every scalar's name (``gradhealth/horizon``).
        layout: how to call the model, where gradhealth cannot tell (see :func:`gradhealth.audit`).
        **settings: audit settings (``seq_len``, ``batch_size``, ``task``, ``seed``, ``probes``...; see
            :func:`gradhealth.audit`); ``probes`` defaults to ``"quick"`` (the lag profile) and ``dtype`` to
            ``"float32"`` (:data:`DEFAULT_DTYPE`).

    Raises:
        ConfigError: a setting is invalid, or ``wandb=True`` without W&B installed.
    """

    def __init__(
        self,
        model: Any,
        *,
        every: int = DEFAULT_EVERY,
        history: str | Path | None = None,
        writer: Any = None,
        wandb: bool | None = None,
        loggers: Sequence[MetricsLogger] = (),
        tag: str = "gradhealth",
        layout: Layout | None = None,
        **settings: Any,
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ConfigError("every", every, "audit interval must be a positive integer number of steps")
        self.model = model
        self.every = every
        self.history = Path(history) if history is not None else None
        self.tag = tag
        self.layout = layout
        self.config = _audit_config(settings)
        self.records: list[HistoryRecord] = []
        self.last_report: Report | None = None
        self._steps = 0
        self._owns_writer = isinstance(writer, (str, Path))
        self._writer = _open_writer(writer) if self._owns_writer else writer
        self._loggers: list[MetricsLogger] = list(loggers)
        self._wandb = _wandb_module(wandb)

    def step(self, step: int | None = None) -> Report | None:
        """Count one optimiser step (call it after ``optimizer.step()``) and audit if the interval is reached.

        Args:
            step: the global step, where the loop keeps its own count; ``None`` counts the calls.

        Returns:
            The report when this step was audited, else ``None``.
        """
        self._steps = self._steps + 1 if step is None else int(step)
        if self._steps % self.every:
            return None
        return self.audit(self._steps)

    def audit(self, step: int) -> Report:
        """Audit the model now, record it as ``step`` and log it (e.g. ``monitor.audit(0)`` before training)."""
        from gradhealth.engine import run_audit

        with _preserved_python_and_numpy_rng():
            report = run_audit(self.model, self.config, self.layout)
        record = record_from_report(report, step=step)
        self.records.append(record)
        self.last_report = report
        if self.history is not None:
            append_record(self.history, record)
        self._log(history_metrics(record, tag=self.tag), step)
        return report

    def close(self) -> None:
        """Flush and close a writer the monitor opened itself (one passed in stays the caller's)."""
        if self._writer is not None:
            self._writer.flush()
            if self._owns_writer:
                self._writer.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _log(self, metrics: dict[str, float], step: int) -> None:
        if self._writer is not None:
            for name, value in metrics.items():
                self._writer.add_scalar(name, value, step)
        if self._wandb is not None and getattr(self._wandb, "run", None) is not None:
            # commit=False: the numbers join the user's next log call instead of advancing W&B's step counter.
            self._wandb.log({**metrics, f"{self.tag}/step": step}, commit=False)
        for logger in self._loggers:
            logger(metrics, step)


def history_metrics(record: HistoryRecord, *, tag: str = "gradhealth") -> dict[str, float]:
    """The scalars logged for one audit: horizon (and its interval), decay rate, and the verdict as its index in
    :data:`gradhealth.report.VERDICTS`, which orders them from healthy (0) to non-finite (the worst)."""
    metrics = {f"{tag}/horizon": record.horizon, f"{tag}/verdict": float(VERDICTS.index(record.verdict))}
    if record.horizon_interval is not None:
        metrics[f"{tag}/horizon_low"], metrics[f"{tag}/horizon_high"] = record.horizon_interval
    if record.decay_rate is not None:
        metrics[f"{tag}/decay_rate"] = record.decay_rate
    return metrics


def _audit_config(settings: dict[str, Any]) -> Any:
    from gradhealth.config import AuditConfig

    given = {name: value for name, value in settings.items() if value is not None}
    given.setdefault("probes", DEFAULT_PROBES)
    if "dtype" not in settings:
        given["dtype"] = DEFAULT_DTYPE
    if isinstance(given["probes"], list):
        given["probes"] = tuple(given["probes"])
    try:
        return AuditConfig(**given)
    except TypeError:
        known = set(AuditConfig.__dataclass_fields__)
        unknown = sorted(set(given) - known)
        raise ConfigError(
            unknown[0] if unknown else "settings",
            settings.get(unknown[0]) if unknown else settings,
            f"not an audit setting; known settings: {', '.join(sorted(known))}",
        ) from None


def _open_writer(logdir: str | Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise ConfigError(
            "writer", str(logdir), f"TensorBoard logging needs the tensorboard package ({exc}); pip install tensorboard"
        ) from None
    return SummaryWriter(log_dir=str(logdir))


def _wandb_module(wanted: bool | None) -> Any:
    if wanted is False:
        return None
    try:
        import wandb  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        if wanted:
            raise ConfigError("wandb", True, "Weights & Biases is not installed; pip install wandb") from None
        return None
    return wandb


@contextlib.contextmanager
def _preserved_python_and_numpy_rng() -> Iterator[None]:
    """The engine restores torch's streams; these two are restored here so no random stream moves at all."""
    python_state = random.getstate()
    numpy = sys.modules.get("numpy")
    numpy_state = numpy.random.get_state() if numpy is not None else None
    try:
        yield
    finally:
        random.setstate(python_state)
        if numpy is not None:
            numpy.random.set_state(numpy_state)

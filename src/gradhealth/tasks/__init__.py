"""Synthetic long-dependency tasks: seeded generators usable on their own or as probe inputs.

The built-in tasks register through :mod:`gradhealth.tasks.builtin`; look a task up by name with
:func:`gradhealth.plugins.get_task` (which sees plugins' tasks too).

>>> import torch
>>> from gradhealth.tasks import AddingTask
>>> batch = AddingTask().generate(2, 20, 2, generator=torch.Generator().manual_seed(0))
>>> tuple(batch.inputs.shape), tuple(batch.targets.shape)
((2, 20, 2), (2, 20, 1))
"""

from __future__ import annotations

from gradhealth.tasks.base import Task, TaskBatch
from gradhealth.tasks.synthetic import AddingTask, CopyTask, DelayedRecallTask, ImpulseTask, NoiseTask

__all__ = [
    "AddingTask",
    "CopyTask",
    "DelayedRecallTask",
    "ImpulseTask",
    "NoiseTask",
    "Task",
    "TaskBatch",
]

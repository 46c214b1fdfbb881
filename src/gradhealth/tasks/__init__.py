"""Synthetic long-dependency tasks: seeded generators usable on their own or as probe inputs.

>>> import torch
>>> from gradhealth.tasks import get_task
>>> batch = get_task("adding").generate(2, 20, 2, generator=torch.Generator().manual_seed(0))
>>> tuple(batch.inputs.shape), tuple(batch.targets.shape)
((2, 20, 2), (2, 20, 1))
"""

from __future__ import annotations

from gradhealth.errors import ConfigError
from gradhealth.hookspecs import hookimpl
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
    "get_task",
]


@hookimpl
def gradhealth_register_tasks() -> list[Task]:
    return [NoiseTask(), ImpulseTask(), CopyTask(), AddingTask(), DelayedRecallTask()]


def get_task(name: str) -> Task:
    """Return the registered task called ``name``.

    Raises:
        ConfigError: no task has that name; the message lists the known ones.
    """
    from gradhealth.plugins import task_registry

    tasks = task_registry()
    if name not in tasks:
        raise ConfigError("task", name, f"unknown task; known tasks: {', '.join(sorted(tasks))}")
    return tasks[name]

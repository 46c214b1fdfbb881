"""Registers the built-in tasks through the same hook as third-party plugins."""

from __future__ import annotations

from gradhealth.hookspecs import hookimpl
from gradhealth.tasks.base import Task
from gradhealth.tasks.synthetic import AddingTask, CopyTask, DelayedRecallTask, ImpulseTask, NoiseTask

__all__ = ["BUILTIN_TASKS", "gradhealth_register_tasks"]

#: The built-in tasks, by the name they register under.
BUILTIN_TASKS: dict[str, type[Task]] = {
    task.name: task for task in (NoiseTask, ImpulseTask, CopyTask, AddingTask, DelayedRecallTask)
}


@hookimpl
def gradhealth_register_tasks() -> list[Task]:
    return [task() for task in BUILTIN_TASKS.values()]

"""Tasks: one module per family of methods on the one training path (:mod:`.base`).

:data:`TASKS` is the one registry of methods: ``config.method`` → the task that trains it.
"""

from __future__ import annotations

from contrastkit.config import Config
from contrastkit.errors import unknown_name
from contrastkit.tasks.base import IN_MEMORY, Step, Task
from contrastkit.tasks.image import ImageTask
from contrastkit.tasks.timeseries import AutoTCLTask, COMETTask, TS2VecTask

__all__ = [
    "IN_MEMORY",
    "TASKS",
    "AutoTCLTask",
    "COMETTask",
    "ImageTask",
    "Step",
    "TS2VecTask",
    "Task",
    "build_task",
]

#: method name → the task class that trains it
TASKS: dict[str, type[Task]] = {
    method: task
    for task in (ImageTask, TS2VecTask, AutoTCLTask, COMETTask)
    for method in task.methods
}


def build_task(config: Config) -> Task:
    """The task of ``config.method``, with its config section checked."""
    if config.method not in TASKS:
        raise unknown_name("method", config.method, TASKS)
    return TASKS[config.method](config)

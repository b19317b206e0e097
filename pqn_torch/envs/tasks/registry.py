"""Task registry: task name -> Task class. Domain files register their classes with ``@register``."""

from __future__ import annotations

from typing import TypeVar

from pqn_torch.envs.tasks.base import Task

TASKS: dict[str, type[Task]] = {}

T = TypeVar("T", bound=type[Task])


def register(task_class: T) -> T:
    """Add a Task subclass to :data:`TASKS` under its ``name``."""
    if task_class.name in TASKS:
        raise ValueError(f"task {task_class.name!r} registered twice")
    TASKS[task_class.name] = task_class
    return task_class


def get_task_class(name: str) -> type[Task]:
    """The Task class called ``name``; one clear error listing the valid names otherwise."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]

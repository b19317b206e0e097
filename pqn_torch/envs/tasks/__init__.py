"""Tasks: one file per domain. Importing this package registers every task module in the folder."""

import importlib
import pkgutil

from pqn_torch.envs.tasks.base import StartStates, Task, TaskConfig
from pqn_torch.envs.tasks.registry import TASKS, get_task_class

_NOT_DOMAINS = {"base", "common", "registry", "rewards", "robots"}
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _NOT_DOMAINS:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["TASKS", "StartStates", "Task", "TaskConfig", "get_task_class"]

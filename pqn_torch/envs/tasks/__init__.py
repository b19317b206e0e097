"""Tasks, grouped by domain as MuJoCo Playground groups them: ``dm_control/`` (one file per DM Control Suite
domain) and ``locomotion/`` (one file per robot family). Importing this package imports every module of
every domain folder, which registers its tasks; the shared pieces (base classes, registry, reward
functions, scene and noise helpers) sit beside the folders."""

import importlib
import pkgutil

from pqn_torch.envs.tasks.base import StartStates, Task, TaskConfig
from pqn_torch.envs.tasks.registry import TASKS, get_task_class

DOMAINS = ("dm_control", "locomotion")
for _domain in DOMAINS:
    _package = importlib.import_module(f"{__name__}.{_domain}")
    for _module in pkgutil.iter_modules(_package.__path__):
        importlib.import_module(f"{_package.__name__}.{_module.name}")

__all__ = ["DOMAINS", "TASKS", "StartStates", "Task", "TaskConfig", "get_task_class"]

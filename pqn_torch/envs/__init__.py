"""Batched MuJoCo environments as torch tensors: ``make_env`` and ``list_tasks``; ``VecEnv``, what the agent needs."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import torch

from pqn_torch.envs.core import BatchedEnv
from pqn_torch.envs.interface import VecEnv
from pqn_torch.envs.physics import PhysicsConfig, make_physics, resolve_backend
from pqn_torch.envs.physics.mujoco_warnings import capture_mujoco_warnings
from pqn_torch.envs.randomization import randomized_fields
from pqn_torch.envs.tasks import TASKS, get_task_class
from pqn_torch.envs.tasks.base import TaskConfig


def list_tasks() -> list[str]:
    """Names of every registered task, sorted."""
    return sorted(TASKS)


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` -> ``cuda:0`` when CUDA is available, else ``cpu``; explicit CUDA without CUDA is an error."""
    if str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; valid: auto, cpu, cuda, cuda:<index>") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} requested but this PyTorch has no usable CUDA; use device=cpu")
        index = resolved.index if resolved.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
        return torch.device("cuda", index)
    if resolved.type != "cpu":
        raise ValueError(f"unsupported device {str(device)!r}; valid: auto, cpu, cuda, cuda:<index>")
    return resolved


def physics_config(task_config: TaskConfig, substeps: int, num_threads: int | None = None) -> PhysicsConfig:
    """The backend's config: every ``PhysicsConfig`` field that a task config also has, plus the two that only
    the env knows (``substeps``, from ``ctrl_dt / sim_dt``, and the native backend's ``num_threads``)."""
    task_fields = {field.name for field in dataclasses.fields(task_config)}
    shared = {
        field.name: getattr(task_config, field.name)
        for field in dataclasses.fields(PhysicsConfig)
        if field.name in task_fields
    }
    return PhysicsConfig(substeps=substeps, num_threads=num_threads, **shared)


def make_env(
    task: str,
    num_envs: int,
    device: str | torch.device = "auto",
    backend: str = "auto",
    seed: int = 0,
    *,
    reset_pool_size: int | None = None,
    num_threads: int | None = None,
    host_shortcuts: bool | None = None,
    **task_overrides: Any,
) -> BatchedEnv:
    """``num_envs`` worlds of ``task`` on ``device`` with physics ``backend`` (``auto``, ``warp``, ``mujoco``).

    ``task_overrides`` change the task's config (``episode_length``, ``ctrl_dt``, ``action_repeat``, ...; robot
    tasks also ``obs_noise_level``, ``randomize``, ``randomize_every_reset`` and, for the joystick tasks,
    ``perturbations``).
    ``reset_pool_size`` sets how many start states are pre-sampled (default ``max(num_envs, 1024)``),
    ``num_threads`` the native MuJoCo backend's worker threads (default: all cores), ``host_shortcuts``
    whether steps may skip masked per-world work after a host check (default: on the CPU; off is the
    CUDA-graph-safe path, same results).
    """
    task_class = get_task_class(task)
    capture_mujoco_warnings()  # counted and rate-limited on stderr, never MUJOCO_LOG.TXT in the working directory
    if not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
    torch_device = resolve_device(device)
    backend_name = resolve_backend(backend, torch_device)
    task_instance = task_class(**task_overrides)
    spec = task_instance.build_spec()
    spec.option.timestep = task_instance.config.sim_dt
    with warnings.catch_warnings():
        # The DM suite's cheetah.xml uses `settotalmass`, which MuJoCo 4 flags as deprecated; harmless here.
        warnings.filterwarnings("ignore", message=".*settotalmass.*")
        mj_model = spec.compile()
    config = physics_config(task_instance.config, task_instance.substeps, num_threads)
    if task_instance.config.randomize:
        config = dataclasses.replace(config, per_world_fields=randomized_fields(task_instance.randomization))
    physics = make_physics(backend_name, mj_model, num_envs, torch_device, config)
    task_instance.bind(mj_model, physics.device, physics.dtype)
    return BatchedEnv(task_instance, physics, seed=seed, reset_pool_size=reset_pool_size, host_shortcuts=host_shortcuts)


__all__ = ["BatchedEnv", "VecEnv", "list_tasks", "make_env", "resolve_device"]

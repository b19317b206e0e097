"""What a task is: a model, a start-state distribution, an observation, a reward, a termination.

A task never steps physics and never resets worlds itself; the batched env (``envs/core.py``) does
that for every task the same way. Task methods are pure tensor functions of a :class:`Physics` view, so
the same code runs on MuJoCo Warp (GPU or CPU) and on the native MuJoCo backend, inside CUDA graphs.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics


@dataclass
class StartStates:
    """A batch of initial states drawn from a task's reset distribution (``None`` = model default)."""

    qpos: torch.Tensor
    qvel: torch.Tensor
    mocap_pos: torch.Tensor | None = None
    mocap_quat: torch.Tensor | None = None


@dataclass
class TaskConfig:
    """Per-task settings a user may override through ``make_env(..., **task_overrides)``."""

    ctrl_dt: float
    sim_dt: float
    episode_length: int = 1000
    naconmax: int | None = None
    njmax: int | None = None

    def __post_init__(self) -> None:
        for name in ("ctrl_dt", "sim_dt"):
            value = getattr(self, name)
            if not _is_real(value) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if not _is_integer(self.episode_length) or self.episode_length < 1:
            raise ValueError(f"episode_length must be a positive integer (control steps), got {self.episode_length!r}")
        for name in ("naconmax", "njmax"):
            value = getattr(self, name)
            if value is not None and (not _is_integer(value) or value < 0):
                raise ValueError(f"{name} must be an integer >= 0 or null, got {value!r}")


class Task(ABC):
    """Base class of every task. Subclasses set ``name`` and ``default_config`` and fill the hooks.

    ``settle_steps``: zero-action physics steps run after sampling a start state (e.g. CheetahRun
    lets the body fall onto the floor); ``time`` is reset to 0 afterwards. The env runs them once
    when it builds its pool of start states, never at autoreset.
    """

    name: ClassVar[str]
    default_config: ClassVar[TaskConfig]
    settle_steps: ClassVar[int] = 0
    observation_layout: ClassVar[tuple[tuple[str, int], ...]] = ()
    """The actor observation's consecutive parts as ``(name, size)``, where the task documents them; an
    exported policy's sidecar carries it for the program that assembles observations on a robot."""

    def __init__(self, **overrides: Any) -> None:
        valid = {f.name for f in dataclasses.fields(self.default_config)}
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for task {self.name}; valid: {sorted(valid)}")
        self.config = dataclasses.replace(self.default_config, **overrides)
        substeps = self.config.ctrl_dt / self.config.sim_dt
        if abs(substeps - round(substeps)) > 1e-6 or round(substeps) < 1:
            raise ValueError(
                f"ctrl_dt ({self.config.ctrl_dt}) must be a positive multiple of sim_dt ({self.config.sim_dt})"
            )
        self.substeps = int(round(substeps))

    @abstractmethod
    def build_spec(self) -> mujoco.MjSpec:
        """The model: the MJCF with this task's edits (solver options, sensors the task reads, ...).

        ``opt.timestep`` is set to ``config.sim_dt`` by the env after this returns.
        """

    def bind(self, mj_model: mujoco.MjModel) -> None:
        """Look up ids and sensor slices in the compiled model (called once, before any other hook)."""

    @abstractmethod
    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        """``num`` start states from the reset distribution, on ``physics.device`` in ``physics.dtype``."""

    @abstractmethod
    def observation(self, physics: Physics) -> torch.Tensor:
        """Actor observation [N, obs_dim]."""

    def critic_observation(self, physics: Physics) -> torch.Tensor:
        """Privileged critic observation [N, critic_obs_dim]; the actor's for tasks without one."""
        return self.observation(physics)

    @abstractmethod
    def reward(self, physics: Physics, action: torch.Tensor) -> torch.Tensor:
        """Reward [N] of the step that just ended (physics already advanced)."""

    def terminated(self, physics: Physics) -> torch.Tensor:
        """Task-specific termination [N] bool. Non-finite physics state is handled by the env."""
        return torch.zeros(physics.num_worlds, dtype=torch.bool, device=physics.device)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)

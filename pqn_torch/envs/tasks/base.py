"""What a task is: a model, a start-state distribution, an observation, a reward, a termination.

A task never steps physics and never resets worlds itself; the batched env (``envs/core.py``) does
that for every task the same way. Task methods are pure tensor functions of a :class:`Physics` view, so
the same code runs on MuJoCo Warp (GPU or CPU) and on the native MuJoCo backend, inside CUDA graphs.

Two levels of hooks. The DM Control Suite tasks implement the stateless ones (``observation``,
``reward``, ``terminated``; actions are the controls). Robot tasks also use the stateful ones:
per-world *task state* (commands, timers, last actions, ...) that :meth:`Task.initial_state` samples and
the env keeps, replaces at autoreset and passes to every hook; :meth:`Task.control` (actions in [-1, 1]
mapped to controls, perturbations written before the physics step); :meth:`Task.transition` (reward,
its terms, observations and termination of one step, in whatever order the task needs, updating the
state in place); :meth:`Task.after_reset` (task state seeded from the state a world resets to);
:meth:`Task.observe` (reads task state, never writes it). Their defaults reduce to the stateless hooks,
so a DM task is unchanged. Randomness inside a step (observation noise, command resampling) comes from
the env's ``generator``, which every stateful hook receives. ``docs/adding_a_task.md`` gives the order of
the hooks in a step and a reset and the rules they follow.
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
from pqn_torch.envs.randomization import Draw


@dataclass
class StartStates:
    """A batch of initial states drawn from a task's reset distribution (``None`` = model default)."""

    qpos: torch.Tensor
    qvel: torch.Tensor
    mocap_pos: torch.Tensor | None = None
    mocap_quat: torch.Tensor | None = None


@dataclass
class Transition:
    """What one task step produces (all [N], observations [N, dim]).

    ``reward_terms``: the reward's parts, name -> [N], in the order of :attr:`Task.reward_term_names`,
    adding up to ``reward`` (the env sums them per episode for the ``reward_terms/<name>`` logs).
    """

    reward: torch.Tensor
    obs: torch.Tensor
    critic_obs: torch.Tensor
    terminated: torch.Tensor
    reward_terms: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)


TaskState = dict[str, torch.Tensor]
"""Per-world task state: name -> tensor with the world as first dim (Playground's ``state.info`` names)."""


@dataclass
class TaskConfig:
    """Per-task settings a user may override through ``make_env(..., **task_overrides)``.

    ``action_repeat``: task steps (each ``ctrl_dt`` long, with its own reward) per agent step; the env
    sums their rewards. ``episode_length`` counts agent steps. ``contacts_per_world``: MuJoCo Warp contact
    buffer per world (robot tasks); when ``None`` the DM-suite reading of ``naconmax`` applies.
    ``randomize``: draw each world's model parameters from the task's :attr:`Task.randomization` table
    (tasks that have one); ``randomize_every_reset``: draw them again whenever a world resets.
    """

    ctrl_dt: float
    sim_dt: float
    episode_length: int = 1000
    naconmax: int | None = None
    njmax: int | None = None
    action_repeat: int = 1
    contacts_per_world: int | None = None
    randomize: bool = False
    randomize_every_reset: bool = False

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
        if not _is_integer(self.action_repeat) or self.action_repeat < 1:
            raise ValueError(f"action_repeat must be a positive integer, got {self.action_repeat!r}")
        if self.contacts_per_world is not None and (
            not _is_integer(self.contacts_per_world) or self.contacts_per_world < 0
        ):
            raise ValueError(f"contacts_per_world must be an integer >= 0 or null, got {self.contacts_per_world!r}")
        for name in ("randomize", "randomize_every_reset"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.randomize_every_reset and not self.randomize:
            raise ValueError("randomize_every_reset=true needs randomize=true")


CONTROL_FORMULAS = {
    "action": "ctrl = clip(action, action_low, action_high)",
    "motor_torque": "ctrl = clip({scale:g} * action, -max_torque / gear, max_torque / gear) (torque = gear * ctrl)",
    "default_pose_offset": "ctrl = default_joint_pos + {scale:g} * action",
    "joint_pos_offset": "ctrl = joint_pos + {scale:g} * action",
    "ctrl_increment": "ctrl = previous ctrl + {scale:g} * action (the first previous ctrl: joint_pos at the start)",
    "cartesian_increment": (
        "gripper tip target += {scale:g} * (0, action[0], action[1]), kept in the task's workspace; arm ctrl = the "
        "arm's inverse kinematics of that target (unchanged where out of reach); gripper ctrl -= 0.02 where "
        "action[2] < 0, else += 0.02"
    ),
}
"""How an action becomes the actuators' ``ctrl``, per :attr:`ControlMapping.mode`. ``joint_pos``: the actuated
joints' current angles; MuJoCo clamps a ``ctrl`` outside the actuators' ``ctrlrange`` where they are limited."""


@dataclass(frozen=True)
class ControlMapping:
    """How a task turns an action into controls, described for a program that runs the policy without the env.

    ``mode`` names a :data:`CONTROL_FORMULAS` entry, ``scale`` its action scale, ``default_pose_keyframe``
    the keyframe holding the robot's default joint pose (robot tasks); ``clipped``: the result is clipped to
    the actuators' ``ctrlrange`` (``ctrl_low``, ``ctrl_high``) before it is applied and remembered.
    """

    mode: str = "action"
    scale: float = 1.0
    default_pose_keyframe: str | None = None
    clipped: bool = False

    def __post_init__(self) -> None:
        if self.mode not in CONTROL_FORMULAS:
            raise ValueError(f"control mode must be one of {sorted(CONTROL_FORMULAS)}, got {self.mode!r}")

    @property
    def formula(self) -> str:
        """The mapping in words, e.g. ``ctrl = default_joint_pos + 0.5 * action``."""
        formula = CONTROL_FORMULAS[self.mode].format(scale=self.scale)
        return formula + ", clipped to [ctrl_low, ctrl_high]" if self.clipped else formula


class Task(ABC):
    """Base class of every task. Subclasses set ``name`` and ``default_config`` and fill the hooks.

    ``settle_steps``: zero-action physics steps run after sampling a start state (e.g. CheetahRun
    lets the body fall onto the floor); ``time`` is reset to 0 afterwards. The env runs them once
    when it builds its pool of start states, never at autoreset.
    """

    name: ClassVar[str]
    default_config: ClassVar[TaskConfig]
    config: TaskConfig
    """``default_config`` with this instance's overrides."""
    settle_steps: int = 0
    observation_layout: ClassVar[tuple[tuple[str, int], ...]] = ()
    """The actor observation's consecutive parts as ``(name, size)``, where the task documents them; an
    exported policy's sidecar carries it for the program that assembles observations on a robot."""
    normalized_actions: ClassVar[bool] = False
    """True: actions live in [-1, 1] and :meth:`control` maps them to controls (robot tasks); False: actions
    are the controls, clipped to the actuators' ``ctrlrange``."""
    action_size: ClassVar[int | None] = None
    """Actions per step where they are not one per actuator (normalized actions in [-1, 1] that
    :meth:`control` maps onto the actuators: PandaRobotiqPushCube's 7 arm torques, its gripper held shut);
    ``None``: one per actuator."""
    reward_term_names: tuple[str, ...] = ()
    """The names of the parts of the reward that :meth:`transition` reports in ``Transition.reward_terms``;
    none for the DM tasks, whose reward is one product of tolerances (the episode return says it all)."""
    randomization: ClassVar[tuple[Draw, ...]] = ()
    """Domain randomization table (``randomize=true``), see :mod:`pqn_torch.envs.randomization`."""

    def __init__(self, **overrides: Any) -> None:
        valid = {f.name for f in dataclasses.fields(self.default_config)}
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for task {self.name}; valid: {sorted(valid)}")
        common = {f.name for f in dataclasses.fields(TaskConfig)}  # checked by TaskConfig itself
        for key, value in overrides.items():
            if key not in common:
                _check_option_type(self.name, key, value, getattr(self.default_config, key))
        self.config = dataclasses.replace(self.default_config, **overrides)
        if self.config.randomize and not self.randomization:
            raise ValueError(f"task {self.name} has no domain randomization; randomize must be false")
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

    def bind(  # noqa: B027 (optional hook: a no-op for tasks without ids)
        self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype
    ) -> None:
        """Look up ids and sensor slices in the compiled model and put the task's constants on ``device`` in the
        physics ``dtype`` (called once, before any other hook): a captured step then reads no host data."""

    @abstractmethod
    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        """``num`` start states from the reset distribution, on ``physics.device`` in ``physics.dtype``."""

    def observation(self, physics: Physics) -> torch.Tensor:
        """Actor observation [N, obs_dim] (stateless tasks; stateful ones override :meth:`observe`)."""
        raise NotImplementedError(f"task {self.name} implements neither observation() nor observe()")

    def critic_observation(self, physics: Physics) -> torch.Tensor:
        """Privileged critic observation [N, critic_obs_dim]; the actor's for tasks without one."""
        return self.observation(physics)

    def reward(self, physics: Physics, action: torch.Tensor) -> torch.Tensor:
        """Reward [N] of the step that just ended (physics already advanced; stateless tasks)."""
        raise NotImplementedError(f"task {self.name} implements neither reward() nor transition()")

    def terminated(self, physics: Physics) -> torch.Tensor:
        """Task-specific termination [N] bool. Non-finite physics state is handled by the env."""
        return torch.zeros(physics.num_worlds, dtype=torch.bool, device=physics.device)

    # ----------------------------------------------------------------- stateful hooks (robot tasks)
    def initial_state(self, generator: torch.Generator, num: int, physics: Physics) -> TaskState:
        """Fresh task state for ``num`` worlds (at every reset); the stateless tasks have none."""
        return {}

    def start_ctrl(self, qpos: torch.Tensor) -> torch.Tensor | None:
        """``ctrl`` [N, nu] of worlds starting at ``qpos``, during settling and until the first action;
        ``None`` = zeros."""
        return None

    def control_mapping(self) -> ControlMapping:
        """What :meth:`control` computes, for an exported policy's metadata (a test checks the two agree): by
        default the action is the control."""
        return ControlMapping()

    def control(self, physics: Physics, action: torch.Tensor, state: TaskState, generator: torch.Generator) -> None:
        """Write what the physics step needs: ``ctrl`` from ``action`` and any perturbation (``xfrc_applied``,
        ``qvel``). Default: the action is the control."""
        physics.ctrl.copy_(action)

    def transition(
        self, physics: Physics, action: torch.Tensor, state: TaskState, generator: torch.Generator
    ) -> Transition:
        """Reward, observations and termination after the physics step; updates ``state`` in place."""
        reward = self.reward(physics, action)
        obs, critic_obs = self.observe(physics, state, generator)
        return Transition(reward=reward, obs=obs, critic_obs=critic_obs, terminated=self.terminated(physics))

    def after_reset(  # noqa: B027 (optional hook: most tasks draw all their state in initial_state)
        self, physics: Physics, state: TaskState, reset: torch.Tensor, generator: torch.Generator
    ) -> None:
        """Seed task state from the state the worlds in ``reset`` [N] bool start from (an observation history
        filled with the first frame, ...); runs after their physics state and fresh :meth:`initial_state`
        are written, before their first observation.

        Write only the rows of ``reset`` (``torch.where``), compute on every world with fixed shapes, no host
        sync: the env calls it on every step (an all-false ``reset`` when no world finished), so the random
        numbers drawn here must not depend on ``reset`` either.
        """

    def observe(
        self, physics: Physics, state: TaskState, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(actor, critic) observations of the current state (at reset and after autoreset). Runs for every
        world on every step and at every reset, so it reads task state and never writes it."""
        obs = self.observation(physics)
        return obs, (obs if self.critic_sees_actor_obs else self.critic_observation(physics))

    @property
    def critic_sees_actor_obs(self) -> bool:
        """True when the critic gets the actor's observation (no privileged one)."""
        return type(self).critic_observation is Task.critic_observation and type(self).observe is Task.observe


def _check_option_type(task: str, key: str, value: Any, default: Any) -> None:
    """One clear error when a task's own option has the wrong type (bool for a switch, a number for a number);
    an option whose default is ``None`` is checked by its task's config."""
    if default is None:
        return
    if isinstance(default, bool):
        valid = isinstance(value, bool)
    elif isinstance(default, int):
        valid = _is_integer(value)
    else:
        valid = _is_real(value) and math.isfinite(value)
    if not valid:
        kind = {bool: "bool", int: "int"}.get(type(default), "a finite number")
        raise ValueError(f"task {task}: option {key} must be {kind}, got {value!r}")


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)

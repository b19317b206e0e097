"""The robot layer (:class:`RobotTask`): what every MuJoCo Playground robot task does the same way.

A robot family's file (``locomotion/go1.py``, ...) adds its scene, its sensors and its task logic; this
base does the generic half:

- **Actions to controls** (:class:`ActionMapping`, the task's :attr:`RobotTask.action_mapping`): actions live
  in [-1, 1]; ``ctrl = reference + scale * action``, where the reference is ``"home"`` (the home keyframe's
  joint angles: Go1 joystick), ``"joints"`` (the current joint angles: Go1Getup) or ``"ctrl"`` (the current
  ``ctrl``, so the position targets integrate the actions: Go1Handstand).
- **Constants** (home pose, joint limits, anything a subclass adds with :meth:`RobotTask.constant`) are put
  on the physics device and dtype in :meth:`RobotTask.bind`: a captured step reads no host data.
- **Readings** by sensor name (:meth:`RobotTask.read`; the names in :attr:`RobotTask.sensors`), the
  actuated joints, actuator forces (``<actuator>_force`` sensors) and, for legged robots, the feet (floor
  contact, height, velocity; :attr:`RobotTask.feet`).
- **Task state bookkeeping**: the last actions (``last_act``, with ``remembered_actions=2`` also
  ``last_last_act``), :class:`FeetAirTime`, :class:`TrunkPushes` (force kicks: Go1) and
  :class:`VelocityPushes` (root velocity pushes: the humanoids) for legged robots, and
  :func:`advance_gait_phase` (the humanoids' gait clock).
- **Joystick tasks** (:class:`JoystickTask`, :class:`JoystickConfig`): the ``fixed_command`` option, the velocity
  tracking reward terms and the command tracking error, both from the same two readings; those whose reward
  follows the feet's swings share one step (:class:`FeetContactJoystickTask`) and change it through its hooks.
- **Observation noise** ``x + U(-1, 1) * obs_noise_level * noise_scales[kind]`` (Playground's).
- **Reward**: :meth:`RobotTask.total_reward` turns the task's unscaled terms into Playground's
  ``dt * sum(scale * term)``, clipped to :attr:`RobotTask.reward_clip`, and reports each term's share
  ``dt * scale * term`` (plus ``clipping``, what the clip changed), so the shares add up to the reward.
  The terms themselves are written once, in :mod:`pqn_torch.envs.tasks.reward_terms`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import mujoco
import numpy as np
import torch

from pqn_torch.envs.physics.base import Physics, sensor_slice
from pqn_torch.envs.tasks import reward_terms
from pqn_torch.envs.tasks.base import ControlMapping, StartStates, Task, TaskConfig, TaskState, Transition
from pqn_torch.envs.tasks.common import normal, uniform
from pqn_torch.envs.tasks.robots import noisy, quat_multiply, yaw_quaternion

ACTION_REFERENCES = ("home", "joints", "ctrl")
CONTROL_MODES = {"home": "default_pose_offset", "joints": "joint_pos_offset", "ctrl": "ctrl_increment"}
"""The exported metadata's ``control_mode`` of each action reference."""
FREE_JOINT_QPOS, FREE_JOINT_QVEL = 7, 6


@dataclass(frozen=True)
class ActionMapping:
    """How an action in [-1, 1] becomes the position targets: ``ctrl = reference + scale * action``.

    ``reference``: ``"home"`` (the home keyframe's joint angles), ``"joints"`` (the joint angles before the
    step) or ``"ctrl"`` (the targets before the step: the policy integrates them). ``clip``: the targets are
    clipped to the actuators' ``ctrlrange`` (Panda: an integrated target must not wind up past the limits).
    A description a deployed policy needs as much as the task: the same numbers turn a policy's output into
    motor targets on a robot.
    """

    scale: float
    reference: str
    clip: bool = False

    def __post_init__(self) -> None:
        if self.reference not in ACTION_REFERENCES:
            raise ValueError(f"action reference must be one of {ACTION_REFERENCES}, got {self.reference!r}")

    def described(self, home_keyframe: str, start_ctrl: str) -> ControlMapping:
        """The same mapping as an exported policy's metadata states it (a ``ControlMapping``)."""
        mode = CONTROL_MODES[self.reference]
        return ControlMapping(
            mode, self.scale, default_pose_keyframe=home_keyframe, clipped=self.clip, start_ctrl=start_ctrl
        )


@dataclass
class RobotConfig(TaskConfig):
    """Robot task options: ``obs_noise_level`` scales the actor observation's noise (0 = clean)."""

    obs_noise_level: float = 1.0


class RobotTask(Task):
    """Base of the robot tasks (see the module docstring); subclasses set the ClassVars and the task hooks."""

    default_config: ClassVar[RobotConfig]
    config: RobotConfig
    normalized_actions = True
    action_mapping: ClassVar[ActionMapping]
    """How :meth:`control` turns an action into ``ctrl``; read it to describe a policy's outputs elsewhere."""
    home_keyframe: ClassVar[str] = "home"
    """The keyframe whose joint angles are the home pose (``default_pose``) and whose ``qpos`` starts episodes."""
    start_ctrl_source: ClassVar[str] = "joint_pos"
    """An episode's ``ctrl`` before the first action (:meth:`start_ctrl`, a ``START_CTRL_SOURCES`` key): the
    joint angles (Playground's Go1), the home keyframe's ``ctrl`` (ALOHA, whose hand-over's left gripper target
    is not its finger position) or zeros (Playground's Spot joysticks, Barkour, OP3, Apollo)."""
    sensors: ClassVar[tuple[str, ...]] = ()
    """Sensors :meth:`read` returns by name (Playground's ``gyro``, ``local_linvel``, ...)."""
    sensor_aliases: ClassVar[dict[str, str]] = {}
    """More names :meth:`read` accepts, each for a model sensor: shared code reads a role (``"gyro"``) that a
    robot's model names otherwise (G1's ``gyro_pelvis``)."""
    feet: ClassVar[tuple[str, ...]] = ()
    """Feet named as in their ``<foot>_floor_found``, ``<foot>_world_pos`` and ``<foot>_global_linvel`` sensors."""
    foot_geoms: ClassVar[tuple[str | tuple[str, ...], ...]] = ()
    """Where the contact sensors are named after the foot geoms, not the feet (Berkeley's ``l_foot1_floor_found``
    for the foot site ``l_foot``): per foot, in :attr:`feet` order, one geom or several (T1's four spheres: the
    foot touches the floor when any of them does); empty: the names in :attr:`feet`."""
    noise_scales: ClassVar[dict[str, float]]
    reward_scales: ClassVar[dict[str, float]]
    reward_clip: ClassVar[tuple[float, float] | None] = (0.0, 1e4)
    """Playground clips most robot rewards to [0, 1e4]; ``None``: no clip (and no ``clipping`` term)."""
    reward_per_second: ClassVar[bool] = True
    """Playground scales most robot rewards by ``ctrl_dt``; False: the plain sum (the Panda tasks)."""
    remembered_actions: ClassVar[int] = 1
    """1: task state ``last_act``; 2: also ``last_last_act`` (second differences of the action)."""

    def __init__(self, **overrides) -> None:
        super().__init__(**overrides)
        if self.config.obs_noise_level < 0:
            raise ValueError(f"obs_noise_level must be >= 0 (0 = no noise), got {self.config.obs_noise_level!r}")
        self.dt = self.config.ctrl_dt
        self.reward_term_names = tuple(self.reward_scales) + (("clipping",) if self.reward_clip else ())

    # ----------------------------------------------------------------- model
    def control_mapping(self) -> ControlMapping:
        return self.action_mapping.described(self.home_keyframe, self.start_ctrl_source)

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        self.device, self.dtype = device, dtype
        transmissions = zip(mj_model.actuator_trnid[:, 0], mj_model.actuator_trntype, strict=True)
        joints = [int(joint) for joint, kind in transmissions if kind == mujoco.mjtTrn.mjTRN_JOINT]
        self.joint_qpos = _columns(mj_model.jnt_qposadr[joints], device)
        self.joint_qvel = _columns(mj_model.jnt_dofadr[joints], device)
        home = np.asarray(mj_model.keyframe(self.home_keyframe).qpos, dtype=np.float64)
        self.home_qpos = self.constant(home)
        self.default_pose = self.constant(home[mj_model.jnt_qposadr[joints]])
        self.home_ctrl = self.constant(mj_model.keyframe(self.home_keyframe).ctrl)
        ranges = torch.as_tensor(mj_model.jnt_range[joints], dtype=torch.float64)
        self.joint_range = ranges[:, 0], ranges[:, 1]
        """Joint limits in float64 on the host, to derive constants from (soft limits, ...)."""
        self.joint_low, self.joint_high = self.constant(ranges[:, 0]), self.constant(ranges[:, 1])
        self.ctrl_low, self.ctrl_high = (self.constant(limits) for limits in mj_model.actuator_ctrlrange.T)
        self._columns = {name: sensor_slice(mj_model, name) for name in self.sensors}
        self._columns.update({alias: sensor_slice(mj_model, name) for alias, name in self.sensor_aliases.items()})
        self._forces = _actuator_force_columns(mj_model)
        contacts = [(geoms,) if isinstance(geoms, str) else geoms for geoms in self.foot_geoms or self.feet]
        found = [[sensor_slice(mj_model, f"{geom}_floor_found").start for geom in geoms] for geoms in contacts]
        self._feet_found = torch.tensor(found, dtype=torch.int64, device=device)
        self._feet_position = [sensor_slice(mj_model, f"{foot}_world_pos") for foot in self.feet]
        self._feet_velocity = [sensor_slice(mj_model, f"{foot}_global_linvel") for foot in self.feet]

    def constant(self, values: torch.Tensor | np.ndarray | tuple[float, ...]) -> torch.Tensor:
        """``values`` (computed in float64) on the physics device in the physics dtype."""
        return torch.as_tensor(values, dtype=torch.float64).to(device=self.device, dtype=self.dtype)

    # ----------------------------------------------------------------- readings
    def read(self, physics: Physics, name: str) -> torch.Tensor:
        """Sensor ``name`` (one of :attr:`sensors` or :attr:`sensor_aliases`) as [N, dim]."""
        return physics.sensordata[:, self._columns[name]]

    def joints(self, physics: Physics) -> tuple[torch.Tensor, torch.Tensor]:
        """Angles and velocities of the actuated joints, [N, nu] each."""
        return physics.qpos[:, self.joint_qpos], physics.qvel[:, self.joint_qvel]

    def actuator_force(self, physics: Physics) -> torch.Tensor:
        """Force of each actuator [N, nu] (Playground's ``data.actuator_force``)."""
        if self._forces is None:
            raise ValueError(f"task {self.name}: call add_actuator_force_sensors(spec) in build_spec to read forces")
        return physics.sensordata[:, self._forces]

    def feet_contact(self, physics: Physics) -> torch.Tensor:
        """Whether each foot of :attr:`feet` touches the floor, [N, feet] bool."""
        return (physics.sensordata[:, self._feet_found] > 0).any(-1)

    def feet_position(self, physics: Physics) -> torch.Tensor:
        """World position of each foot, [N, feet, 3]."""
        return torch.stack([physics.sensordata[:, columns] for columns in self._feet_position], dim=1)

    def feet_height(self, physics: Physics) -> torch.Tensor:
        """World height of each foot, [N, feet]."""
        return self.feet_position(physics)[..., 2]

    def feet_velocity(self, physics: Physics) -> torch.Tensor:
        """World linear velocity of each foot, [N, feet, 3]."""
        return torch.stack([physics.sensordata[:, columns] for columns in self._feet_velocity], dim=1)

    def noise(self, generator: torch.Generator, value: torch.Tensor, kind: str) -> torch.Tensor:
        """``value + U(-1, 1) * obs_noise_level * noise_scales[kind]``."""
        return noisy(generator, value, self.config.obs_noise_level * self.noise_scales[kind])

    # ----------------------------------------------------------------- reset
    def start_ctrl(self, qpos: torch.Tensor) -> torch.Tensor | None:
        """As :attr:`start_ctrl_source` says (``None``: zeros); the exported metadata states the same."""
        if self.start_ctrl_source == "joint_pos":
            return qpos[:, self.joint_qpos].clone()
        if self.start_ctrl_source == "keyframe_ctrl":
            return self.home_ctrl.to(qpos).expand(qpos.shape[0], -1).clone()
        return None

    def home_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        """Home pose moved by U(-0.5, 0.5) in x and y, turned by yaw U(-3.14, 3.14), root velocity U(-0.5, 0.5)
        (Playground's floating-base reset)."""
        qpos = self.home_qpos.repeat(num, 1)
        qpos[:, :2] += uniform(generator, (num, 2), -0.5, 0.5, like=qpos)
        yaw = uniform(generator, (num,), -3.14, 3.14, like=qpos)
        qpos[:, 3:7] = quat_multiply(qpos[:, 3:7], yaw_quaternion(yaw))
        return StartStates(qpos=qpos, qvel=self.random_root_velocity(generator, num, physics))

    def drop_or_home(
        self,
        generator: torch.Generator,
        num: int,
        like: torch.Tensor,
        probability: float,
        height: float,
        joint_range: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        """``qpos`` [num, nq] of Playground's getup resets: with ``probability`` a drop (trunk at ``height`` with a
        uniformly random orientation, a normalized Gaussian quaternion, joints uniform in ``joint_range``), else
        the home pose."""
        drop = uniform(generator, (num, 1), 0.0, 1.0, like=like) < probability
        dropped = like.new_zeros(num, like.shape[1])
        dropped[:, 2] = height
        quaternion = normal(generator, (num, 4), 1.0, like=like)
        dropped[:, 3:7] = quaternion / (torch.linalg.vector_norm(quaternion, dim=-1, keepdim=True) + 1e-6)
        dropped[:, self.joint_qpos] = uniform(generator, (num, self.joint_low.numel()), *joint_range, like=like)
        return torch.where(drop, dropped, self.home_qpos.expand(num, -1))

    def random_root_velocity(self, generator: torch.Generator, num: int, physics: Physics) -> torch.Tensor:
        """``qvel`` [num, nv]: the free joint's 6 dofs U(-0.5, 0.5), the rest 0."""
        qvel = torch.zeros(num, physics.qvel.shape[1], dtype=physics.dtype, device=physics.device)
        qvel[:, :FREE_JOINT_QVEL] = uniform(generator, (num, FREE_JOINT_QVEL), -0.5, 0.5, like=qvel)
        return qvel

    def initial_state(self, generator: torch.Generator, num: int, physics: Physics) -> TaskState:
        """The last actions, zero; subclasses add their own entries to this dict."""
        zeros = physics.qpos.new_zeros
        state = {"last_act": zeros(num, physics.ctrl.shape[1])}
        if self.remembered_actions == 2:
            state["last_last_act"] = zeros(num, physics.ctrl.shape[1])
        return state

    # ----------------------------------------------------------------- step
    def control(self, physics: Physics, action: torch.Tensor, state: TaskState, generator: torch.Generator) -> None:
        targets = self.motor_targets(physics, action)
        if self.action_mapping.clip:
            targets = torch.clamp(targets, self.ctrl_low, self.ctrl_high)
        physics.ctrl.copy_(targets)

    def motor_targets(self, physics: Physics, action: torch.Tensor) -> torch.Tensor:
        """``reference + scale * action`` as :attr:`action_mapping` says."""
        mapping = self.action_mapping
        if mapping.reference == "home":
            reference = self.default_pose
        elif mapping.reference == "joints":
            reference = physics.qpos[:, self.joint_qpos]
        else:
            reference = physics.ctrl
        return reference + mapping.scale * action

    def remember_action(self, state: TaskState, action: torch.Tensor) -> None:
        """Shift the last actions (after the reward, which compares ``action`` with them)."""
        if self.remembered_actions == 2:
            state["last_last_act"].copy_(state["last_act"])
        state["last_act"].copy_(action)

    def total_reward(self, terms: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Playground's ``clip(dt * sum(scale * term))`` over the unscaled ``terms`` (one per name of
        :attr:`reward_scales`; summed in the order given), and each term's share ``dt * scale * term``, in
        :attr:`reward_term_names` order, with ``clipping`` = the reward minus the unclipped sum (``dt`` = 1 where
        :attr:`reward_per_second` is False)."""
        if terms.keys() != self.reward_scales.keys():
            raise ValueError(
                f"task {self.name}: reward terms {sorted(terms)} differ from reward_scales {sorted(self.reward_scales)}"
            )
        total = sum(self.reward_scales[name] * value for name, value in terms.items())
        assert isinstance(total, torch.Tensor)  # every robot task has reward terms
        dt = self.dt if self.reward_per_second else 1.0
        reward = total * dt
        shares = {name: dt * self.reward_scales[name] * terms[name] for name in self.reward_scales}
        if self.reward_clip is not None:
            unclipped, reward = reward, reward.clamp(*self.reward_clip)
            shares["clipping"] = reward - unclipped
        return reward, shares


class FeetAirTime:
    """Playground's per-foot swing bookkeeping: task state ``feet_air_time`` (seconds since the foot left the
    floor), ``last_contact`` and ``swing_peak`` (highest foot height of the swing), [N, feet] each.

    A step calls :meth:`before_reward` (which also returns the feet landing in this step), computes the
    reward, then :meth:`after_reward`.
    """

    def __init__(self, num_feet: int, dt: float) -> None:
        self.num_feet, self.dt = num_feet, dt

    def initial_state(self, num: int, like: torch.Tensor) -> TaskState:
        return {
            "feet_air_time": like.new_zeros(num, self.num_feet),
            "last_contact": like.new_zeros(num, self.num_feet, dtype=torch.bool),
            "swing_peak": like.new_zeros(num, self.num_feet),
        }

    def before_reward(self, state: TaskState, contact: torch.Tensor, height: torch.Tensor) -> torch.Tensor:
        """Advance the air time by ``dt`` and the swing peak; [N, feet] bool: feet touching down this step
        (Playground's ``first_contact``, with the previous step's contact filtering sensor chatter)."""
        first_contact = (state["feet_air_time"] > 0) & (contact | state["last_contact"])
        state["feet_air_time"].add_(self.dt)
        torch.maximum(state["swing_peak"], height, out=state["swing_peak"])
        return first_contact

    def after_reward(self, state: TaskState, contact: torch.Tensor) -> None:
        """Feet on the floor restart their air time and swing peak."""
        state["feet_air_time"].mul_(~contact)
        state["last_contact"].copy_(contact)
        state["swing_peak"].mul_(~contact)


@dataclass(frozen=True)
class PushRanges:
    """Playground's kicks: ``wait`` seconds between pushes, pushes lasting ``duration`` seconds and worth
    ``velocity`` m/s, each drawn uniformly from its (low, high) range."""

    wait: tuple[float, float]
    duration: tuple[float, float]
    velocity: tuple[float, float]


def checked_command(command: Any, option: str = "fixed_command") -> list[float]:
    """A joystick command option ``[vx, vy, yaw rate]`` as three finite floats, or one clear error naming it."""
    valid = (
        isinstance(command, (list, tuple))
        and len(command) == 3
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in command)
    )
    if not valid:
        raise ValueError(f"{option} must be [vx, vy, yaw rate]: three finite numbers, got {command!r}")
    return [float(v) for v in command]


@dataclass
class JoystickConfig(RobotConfig):
    """Adds ``fixed_command``: ``[vx, vy, yaw rate]`` held in every world for whole episodes instead of the
    task's random commands (evaluation at a chosen command: ``evaluate.py command=[1.0,0,0]``); ``None``: the
    task's own commands."""

    fixed_command: list[float] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.fixed_command is not None:
            self.fixed_command = checked_command(self.fixed_command)


class JoystickTask(RobotTask):
    """What every velocity-command (joystick) task shares: the held ``fixed_command`` (:meth:`held`, applied by
    each family where it draws a command), the velocity-tracking reward terms (:meth:`tracking_terms`) and
    :meth:`command_tracking_error`, both from the same two readings.

    Put it before the family's own base (``class H1JoystickGaitTracking(JoystickTask, H1GaitTracking)``) or
    derive the family's base from it; the config must be a :class:`JoystickConfig`. A task whose reward follows
    the feet's swings takes :class:`FeetContactJoystickTask` instead, with its step.
    """

    config: JoystickConfig
    forward_velocity_sensor: ClassVar[str] = "local_linvel"
    """The sensor whose x and y are the forward and sideways speed the command asks for."""
    yaw_rate_sensor: ClassVar[str] = "gyro"
    """The sensor whose z is the yaw rate the command asks for (the angular tracking reward's reading)."""

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        super().bind(mj_model, device, dtype)
        fixed = self.config.fixed_command
        self.fixed_command = None if fixed is None else self.constant(tuple(fixed))

    def held(self, command: torch.Tensor) -> torch.Tensor:
        """``command`` [N, 3], or the ``fixed_command`` in every world when one is set (the draws still happen, so
        a seed's random stream, and the physics under the same actions, do not depend on the option)."""
        return command if self.fixed_command is None else self.fixed_command.expand_as(command).clone()

    def tracking_terms(self, physics: Physics, command: torch.Tensor, sigma: float) -> dict[str, torch.Tensor]:
        """Playground's unscaled ``tracking_lin_vel`` and ``tracking_ang_vel`` of ``command`` [N, 3], from the
        readings :meth:`command_tracking_error` compares it with."""
        forward, yaw = self.read(physics, self.forward_velocity_sensor), self.read(physics, self.yaw_rate_sensor)
        return {
            "tracking_lin_vel": reward_terms.tracking_lin_vel(command, forward, sigma),
            "tracking_ang_vel": reward_terms.tracking_ang_vel(command, yaw, sigma),
        }

    def commanded_and_measured(self, physics: Physics, state: TaskState) -> tuple[torch.Tensor, torch.Tensor]:
        """The command and what the robot does, [N, 3] each: forward and sideways speed (m/s,
        :attr:`forward_velocity_sensor`'s frame) and yaw rate (rad/s, :attr:`yaw_rate_sensor`), the readings the
        tracking rewards compare the command with."""
        measured = torch.cat(
            [self.read(physics, self.forward_velocity_sensor)[:, :2], self.read(physics, self.yaw_rate_sensor)[:, 2:]],
            dim=-1,
        )
        return state["command"], measured

    def command_tracking_error(self, physics: Physics, state: TaskState) -> torch.Tensor:
        """|command - measured| [N, 3] (:meth:`commanded_and_measured`)."""
        command, measured = self.commanded_and_measured(physics, state)
        return (command - measured).abs()


class FeetContactJoystickTask(JoystickTask):
    """A joystick task whose reward follows the feet's swings (:class:`FeetAirTime`, ``self.feet_air_time``): the
    Go1 joysticks, SpotFlatTerrainJoystick, Barkour and the humanoid joysticks. :meth:`transition` is the step they
    share, in Playground's order: feet contact, air time before the reward, :meth:`before_observe`, the
    observation, :meth:`terminated`, the reward of :meth:`reward_terms`, the last actions, :meth:`advance_clocks`,
    air time after the reward. The order fixes the order of the generator's draws (observation noise first, then
    the command's), so a family changes the step through these hooks, never by reordering it.

    Put it first among the task's bases (``class BarkourJoystick(FeetContactJoystickTask, HistoryJoystick)``); the
    task sets :attr:`RobotTask.feet` and adds ``self.feet_air_time.initial_state(...)`` to its task state.
    """

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        super().bind(mj_model, device, dtype)
        self.feet_air_time = FeetAirTime(len(self.feet), self.dt)

    def transition(
        self, physics: Physics, action: torch.Tensor, state: TaskState, generator: torch.Generator
    ) -> Transition:
        contact = self.feet_contact(physics)
        first_contact = self.feet_air_time.before_reward(state, contact, self.feet_height(physics))
        self.before_observe(physics, state, generator)
        obs, critic_obs = self.observe(physics, state, generator)
        terminated = self.terminated(physics)
        reward, shares = self.total_reward(
            self.reward_terms(physics, action, state, contact, first_contact, terminated)
        )
        self.remember_action(state, action)
        self.advance_clocks(state, terminated, generator)
        self.feet_air_time.after_reward(state, contact)
        return Transition(reward=reward, obs=obs, critic_obs=critic_obs, terminated=terminated, reward_terms=shares)

    def before_observe(self, physics: Physics, state: TaskState, generator: torch.Generator) -> None:
        """Record what this step's observation shows from the task state (Spot's joint-error history, Barkour's
        frame stack: :meth:`observe` only reads); nothing by default."""

    def terminated(self, physics: Physics) -> torch.Tensor:
        """[N] bool: the trunk's up axis (the ``upvector`` sensor) points down."""
        return self.read(physics, "upvector")[:, 2] < 0

    def reward_terms(
        self,
        physics: Physics,
        action: torch.Tensor,
        state: TaskState,
        contact: torch.Tensor,
        first_contact: torch.Tensor,
        terminated: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """The unscaled reward terms [N], one per :attr:`RobotTask.reward_scales` name (``contact``: the feet on
        the floor; ``first_contact``: the feet landing this step; the last actions are still the previous ones)."""
        raise NotImplementedError

    def advance_clocks(self, state: TaskState, terminated: torch.Tensor, generator: torch.Generator) -> None:
        """After the reward, which reads this step's command (and gait phase): move the command schedule (and the
        gait clock) on, restarting it in ``terminated`` worlds where the family does."""
        raise NotImplementedError


def control_steps(seconds: torch.Tensor, dt: float) -> torch.Tensor:
    """Seconds rounded to control steps of ``dt``, as int64."""
    return torch.round(seconds / dt).long()


def exponential_control_steps(
    generator: torch.Generator, num: int, mean_seconds: float, dt: float, like: torch.Tensor
) -> torch.Tensor:
    """[num] durations Exp(mean ``mean_seconds``) in control steps of ``dt`` (Playground's command periods)."""
    exponential = torch.empty(num, dtype=torch.float32, device=like.device).exponential_(generator=generator)
    return control_steps(exponential.to(like.dtype) * mean_seconds, dt)


def resample_command(
    generator: torch.Generator, command: torch.Tensor, amplitude: torch.Tensor, nonzero: torch.Tensor
) -> torch.Tensor:
    """Playground's per-component command update ``x' = x - w (x - y z)`` (Go1, Apollo): w ~ Bern(0.5),
    y ~ U(-amplitude, amplitude), z ~ Bern(nonzero)."""
    target = uniform(generator, tuple(command.shape), -amplitude, amplitude, like=command)
    keep_nonzero = uniform(generator, tuple(command.shape), 0.0, 1.0, like=command) < nonzero
    replace = uniform(generator, tuple(command.shape), 0.0, 1.0, like=command) < 0.5
    return torch.where(replace, target * keep_nonzero, command)


class TrunkPushes:
    """Horizontal half-sine pushes on one body, written to ``xfrc_applied`` before the physics step.

    Task state (Playground's names): ``steps_until_next_pert``, ``pert_duration_seconds``, ``pert_duration``,
    ``steps_since_last_pert``, ``pert_steps``, ``pert_dir`` [N, 3], ``pert_mag``.
    """

    def __init__(self, mj_model: mujoco.MjModel, body: str, ranges: PushRanges, dt: float) -> None:
        self.body = mj_model.body(body).id
        self.mass = float(mj_model.body_subtreemass[self.body])
        self.ranges, self.dt = ranges, dt

    def draw_duration(self, generator: torch.Generator, num: int, like: torch.Tensor) -> torch.Tensor:
        """[num] push durations in seconds, for :meth:`initial_state` (a separate draw: the Go1 joystick draws it
        before its command, and keeping that order keeps its seeded trajectories)."""
        return uniform(generator, (num,), *self.ranges.duration, like=like)

    def initial_state(
        self, generator: torch.Generator, num: int, like: torch.Tensor, duration_seconds: torch.Tensor
    ) -> TaskState:
        """A fresh schedule: no push yet, the first after the drawn wait."""
        wait = control_steps(uniform(generator, (num,), *self.ranges.wait, like=like), self.dt)
        zeros = like.new_zeros
        return {
            "steps_until_next_pert": wait,
            "pert_duration_seconds": duration_seconds,
            "pert_duration": control_steps(duration_seconds, self.dt),
            "steps_since_last_pert": zeros(num, dtype=torch.int64),
            "pert_steps": zeros(num, dtype=torch.int64),
            "pert_dir": zeros(num, 3),
            "pert_mag": uniform(generator, (num,), *self.ranges.velocity, like=like),
        }

    @staticmethod
    def pushing(state: TaskState) -> torch.Tensor:
        """[N] bool: worlds whose push is on (Playground's ``pert`` flag)."""
        return state["steps_since_last_pert"] >= state["steps_until_next_pert"]

    def force(self, physics: Physics) -> torch.Tensor:
        """The push force on the body [N, 3] (what the critic sees)."""
        return physics.xfrc_applied[:, self.body, :3]

    def apply(self, physics: Physics, state: TaskState, generator: torch.Generator) -> None:
        """Wait ``steps_until_next_pert`` steps, then push for ``pert_duration`` steps with a half-sine force
        worth ``pert_mag`` m/s in the direction armed when the wait ended."""
        pushing = self.pushing(state)
        elapsed = state["pert_steps"].to(physics.dtype) * self.dt
        seconds = state["pert_duration_seconds"]
        force = 0.5 * torch.sin(math.pi * elapsed / seconds) * self.mass * state["pert_mag"] / seconds
        physics.xfrc_applied[:, self.body].zero_()
        physics.xfrc_applied[:, self.body, :3] = torch.where(
            pushing.unsqueeze(-1), force.unsqueeze(-1) * state["pert_dir"], 0.0
        )
        # Pushing worlds: count push steps, restart the wait once the push has lasted its duration.
        finished = pushing & (state["pert_steps"] >= state["pert_duration"])
        state["steps_since_last_pert"].masked_fill_(finished, 0)
        state["pert_steps"].add_(pushing.long())
        # Waiting worlds: count waiting steps; when the wait is over, arm the next push in a new direction.
        waiting = ~pushing
        state["steps_since_last_pert"].add_(waiting.long())
        armed = waiting & (state["steps_since_last_pert"] >= state["steps_until_next_pert"])
        state["pert_steps"].masked_fill_(armed, 0)
        angle = uniform(generator, (physics.num_worlds,), 0.0, 2 * math.pi, like=state["pert_dir"])
        direction = torch.stack([torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)], dim=-1)
        state["pert_dir"].copy_(torch.where(armed.unsqueeze(-1), direction, state["pert_dir"]))


@dataclass(frozen=True)
class VelocityPushes:
    """Playground's humanoid pushes (G1, T1, Berkeley): every ``interval`` seconds (drawn once per episode,
    U(low, high), rounded to control steps of ``dt``) add ``U(speed)`` m/s in a random horizontal direction to
    the root's linear velocity, before the physics step.

    Task state (Playground's names): ``push`` [N, 2] (this step's push direction, 0 when none),
    ``push_step`` (control steps since the reset) and ``push_interval_steps``.
    """

    interval: tuple[float, float]
    speed: tuple[float, float]
    dt: float

    def initial_state(self, generator: torch.Generator, num: int, like: torch.Tensor) -> TaskState:
        return {
            "push": like.new_zeros(num, 2),
            "push_step": like.new_zeros(num, dtype=torch.int64),
            "push_interval_steps": control_steps(uniform(generator, (num,), *self.interval, like=like), self.dt),
        }

    def apply(self, physics: Physics, state: TaskState, generator: torch.Generator) -> None:
        """Push the worlds whose next step completes an interval; advance every world's step count."""
        angle = uniform(generator, (physics.num_worlds,), 0.0, 2 * math.pi, like=state["push"])
        speed = uniform(generator, (physics.num_worlds,), *self.speed, like=state["push"])
        due = torch.remainder(state["push_step"] + 1, state["push_interval_steps"]) == 0
        direction = torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1) * due.unsqueeze(-1)
        physics.qvel[:, :2] += direction * speed.unsqueeze(-1)
        state["push"].copy_(direction)
        state["push_step"].add_(1)


def advance_gait_phase(phase: torch.Tensor, phase_dt: torch.Tensor) -> torch.Tensor:
    """Gait phases [N, feet] moved on by ``phase_dt`` [N] and wrapped into [-pi, pi) (Playground's humanoids)."""
    return torch.fmod(phase + phase_dt.unsqueeze(-1) + math.pi, 2 * math.pi) - math.pi


def _actuator_force_columns(mj_model: mujoco.MjModel) -> slice | None:
    """The ``sensordata`` columns of the ``<actuator>_force`` sensors (one per actuator, in actuator order), or
    ``None`` when the model has none."""
    names = [f"{mj_model.actuator(i).name}_force" for i in range(mj_model.nu)]
    if mujoco.mj_name2id(mj_model, mujoco.mjtObj.mjOBJ_SENSOR, names[0]) < 0:
        return None
    forces = [sensor_slice(mj_model, name) for name in names]
    if forces[-1].stop - forces[0].start != mj_model.nu:
        raise ValueError("the actuator force sensors must be consecutive, one per actuator in actuator order")
    return slice(forces[0].start, forces[-1].stop)


def _columns(addresses: np.ndarray, device: torch.device) -> slice | torch.Tensor:
    """The actuated joints' columns: a slice where they are consecutive (most robots), else their indices on
    ``device`` (Aloha: each gripper's actuator drives one of its two coupled fingers)."""
    start = int(addresses[0]) if len(addresses) else 0
    if list(addresses) == list(range(start, start + len(addresses))):
        return slice(start, start + len(addresses))
    return torch.as_tensor(np.asarray(addresses, dtype=np.int64), device=device)

"""The half of MuJoCo Playground 0.2.0's humanoid joystick tasks that Berkeley Humanoid, G1 and T1 share
(:class:`HumanoidJoystick`); each family's file adds its scene, its sensors and its reward terms.

- Control: ``ctrl = home_pose + action_scale * action``; with ``perturbations`` (on by default, as Playground)
  every U(5, 10) s (drawn per episode) the root's horizontal velocity gets a push in a random direction.
- Reset: the home keyframe, x and y shifted by U(-0.5, 0.5), yaw U(-3.14, 3.14), every joint angle multiplied
  by U(0.5, 1.5), root velocity U(-0.5, 0.5) in all 6 dofs; ``ctrl`` = the joint angles. Gait frequency drawn
  per episode, the feet's phases starting at 0 and pi.
- Command ``[vx, vy, yaw rate]`` U(-r, r) per component (:attr:`HumanoidJoystick.command_range`), all zero with
  probability 0.1; resampled after 500 steps (Playground's ``step > 500``: every 501 steps).
- Observation: local linear velocity, gyro, gravity (IMU frame), command, joint angles - home, joint velocities
  (noisy but the command), last action, cos and sin of the feet's gait phases. The critic adds the clean gyro,
  accelerometer, gravity, local linear velocity, global angular velocity, joint angles - home, joint velocities,
  root height, actuator forces, feet contacts, feet linear velocities and feet air time. As in Playground, the
  observation of a step shows the command, last action and gait phase from before that step's update.

The IMU readings go by role (``gyro``, ``local_linvel``, ``accelerometer``, ``global_linvel``,
``global_angvel``, ``upvector``, ``gravity_up``): a family whose model names them otherwise maps the roles to its
sensors with :attr:`RobotTask.sensor_aliases`.

Task state (``env.task_state``, Playground's ``state.info`` names): ``command`` [N, 3], ``step`` (steps since
the last command), ``last_act``, ``feet_air_time``, ``last_contact``, ``swing_peak``, ``phase`` [N, 2],
``phase_dt``, ``push`` [N, 2], ``push_step``, ``push_interval_steps``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics
from pqn_torch.envs.randomization import Draw
from pqn_torch.envs.tasks.base import StartStates, TaskState
from pqn_torch.envs.tasks.common import uniform
from pqn_torch.envs.tasks.robot_task import (
    FREE_JOINT_QPOS,
    FREE_JOINT_QVEL,
    FeetContactJoystickTask,
    JoystickConfig,
    VelocityPushes,
    advance_gait_phase,
)
from pqn_torch.envs.tasks.robots import PLAYGROUND_DIR, soft_limits

HEIGHTFIELD = PLAYGROUND_DIR / "locomotion" / "go1" / "xmls" / "assets" / "hfield.png"
"""The rough scenes' ``assets/hfield.png``: Playground ships identical copies beside every robot's rough scene;
pqn_torch keeps Go1's once and points the others at it."""
CTRL_DT, SIM_DT = 0.02, 0.002  # 10 physics steps per control step
ZERO_COMMAND_PROBABILITY = 0.1
COMMAND_STEPS = 500  # a new command once the step count exceeds this
JOINT_SCALE = (0.5, 1.5)  # reset: joint angles times U(0.5, 1.5)
PUSH_INTERVAL = (5.0, 10.0)  # s
SOFT_LIMIT_FACTOR = 0.95
AIR_TIME = (0.2, 0.5)  # s: steps shorter than 0.2 s cost, what one step earns stops at 0.5 s
NOISE_SCALES = {"joint_vel": 1.5, "gravity": 0.05, "linvel": 0.1, "gyro": 0.2}


@dataclass
class HumanoidJoystickConfig(JoystickConfig):
    """Adds ``perturbations``: velocity pushes on the root (on by default, as Playground)."""

    perturbations: bool = True


def joystick_layout(num_joints: int) -> tuple[tuple[str, int], ...]:
    """The actor observation's parts for a robot with ``num_joints`` actuated joints."""
    return (
        ("local linear velocity (noisy)", 3),
        ("gyro (noisy)", 3),
        ("gravity in the IMU frame (noisy)", 3),
        ("command: vx, vy, yaw rate", 3),
        ("joint angles - home pose (noisy)", num_joints),
        ("joint velocities (noisy)", num_joints),
        ("last action", num_joints),
        ("cos of the feet's gait phases", 2),
        ("sin of the feet's gait phases", 2),
    )


def humanoid_randomization(
    torso: str, frictionloss: tuple[float, float], link_mass: tuple[float, float]
) -> tuple[Draw, ...]:
    """The draws MuJoCo Playground 0.2.0's humanoid randomizers (Berkeley Humanoid, G1, T1) share, each family
    adding its floor friction first: every joint's friction loss x U(``frictionloss``), armature x U(1, 1.05),
    every link's mass x U(``link_mass``), then the ``torso`` body's + U(-1, 1) kg, and the joints' reference pose
    ``qpos0`` + U(-0.05, 0.05) rad."""
    joints = slice(FREE_JOINT_QVEL, None)
    return (
        Draw("dof_frictionloss", "scale", *frictionloss, rows=joints),
        Draw("dof_armature", "scale", 1.0, 1.05, rows=joints),
        Draw("body_mass", "scale", *link_mass),
        Draw("body_mass", "add", -1.0, 1.0, rows=torso),
        Draw("qpos0", "add", -0.05, 0.05, rows=slice(FREE_JOINT_QPOS, None)),
    )


def with_heightfield(spec: mujoco.MjSpec) -> mujoco.MjSpec:
    """``spec`` with its heightfields (the rough scene's) read from the one shipped PNG."""
    for heightfield in spec.hfields:
        heightfield.file = str(HEIGHTFIELD)
    return spec


class HumanoidJoystick(FeetContactJoystickTask):
    """Follow a joystick velocity command stepping to a gait clock (see the module docstring); a family sets
    the ClassVars below, ``build_spec``, ``reward_terms`` and, where it differs, ``terminated``, ``next_phase``,
    the command schedule (``initial_command``, ``update_command``) and the critic's extras (``privileged``)."""

    config: HumanoidJoystickConfig
    noise_scales = NOISE_SCALES
    command_range: ClassVar[tuple[float, float, float]]
    """Half-widths of the uniform command draws: vx, vy, yaw rate."""
    gait_frequency: ClassVar[tuple[float, float]]
    """Hz, drawn per episode."""
    push_speed: ClassVar[tuple[float, float]]
    """m/s added by a push."""
    joint_noise: ClassVar[tuple[float, ...]]
    """Noise scale of each joint angle (rad), one per actuated joint."""
    still_command: ClassVar[float | None] = None
    """While ``|command|`` is at most this, both feet's gait phases are held at pi (feet down); ``None``: the
    clock always runs."""

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        super().bind(mj_model, device, dtype)
        soft_low, soft_high = soft_limits(*self.joint_range, SOFT_LIMIT_FACTOR)
        self.soft_low, self.soft_high = self.constant(soft_low), self.constant(soft_high)
        self.joint_noise_scale = self.constant(self.joint_noise) * self.config.obs_noise_level
        self.command_half_range = self.constant(self.command_range)
        self.initial_phase = self.constant((0.0, math.pi))
        self.feet_down = self.constant((math.pi, math.pi))
        self.pushes = VelocityPushes(PUSH_INTERVAL, self.push_speed, self.dt)

    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        start = self.home_start(generator, num, physics)
        joints = start.qpos[:, FREE_JOINT_QPOS:]
        joints *= uniform(generator, tuple(joints.shape), *JOINT_SCALE, like=joints)
        return start

    # ----------------------------------------------------------------- task state
    def initial_state(self, generator: torch.Generator, num: int, physics: Physics) -> TaskState:
        like = physics.qpos
        state = super().initial_state(generator, num, physics)
        state.update(self.initial_command(generator, num, like))
        state.update(self.feet_air_time.initial_state(num, like))
        frequency = uniform(generator, (num,), *self.gait_frequency, like=like)
        state["phase"] = self.initial_phase.repeat(num, 1)
        state["phase_dt"] = 2 * math.pi * self.dt * frequency
        state.update(self.pushes.initial_state(generator, num, like))
        return state

    def initial_command(self, generator: torch.Generator, num: int, like: torch.Tensor) -> TaskState:
        """The command at reset (:meth:`sample_command`) and its clock ``step`` (0)."""
        return {"command": self.sample_command(generator, num, like), "step": like.new_zeros(num, dtype=torch.int64)}

    def update_command(self, state: TaskState, terminated: torch.Tensor, generator: torch.Generator) -> None:
        """After the reward: count the step; a new command once the count exceeds 500, the count restarting
        then and at a termination."""
        state["step"].add_(1)
        due = state["step"] > COMMAND_STEPS
        new_command = self.sample_command(generator, len(due), state["command"])
        state["command"].copy_(torch.where(due.unsqueeze(-1), new_command, state["command"]))
        state["step"].masked_fill_(due | terminated, 0)

    def sample_command(self, generator: torch.Generator, num: int, like: torch.Tensor) -> torch.Tensor:
        """[num, 3] commands U(-r, r) per component (:attr:`command_range`), all three zero with probability
        0.1 (or the held ``fixed_command``)."""
        command = uniform(generator, (num, 3), -self.command_half_range, self.command_half_range, like=like)
        zero = uniform(generator, (num, 1), 0.0, 1.0, like=like) < ZERO_COMMAND_PROBABILITY
        return self.held(command.masked_fill(zero, 0.0))

    # ----------------------------------------------------------------- step
    def control(self, physics: Physics, action: torch.Tensor, state: TaskState, generator: torch.Generator) -> None:
        if self.config.perturbations:
            self.pushes.apply(physics, state, generator)
        super().control(physics, action, state, generator)

    def next_phase(self, state: TaskState) -> torch.Tensor:
        """The gait phases after this step: moved on by ``phase_dt`` (or held down, see :attr:`still_command`)."""
        phase = advance_gait_phase(state["phase"], state["phase_dt"])
        if self.still_command is None:
            return phase
        commanded = torch.linalg.vector_norm(state["command"], dim=-1, keepdim=True) > self.still_command
        return torch.where(commanded, phase, self.feet_down)

    def advance_clocks(self, state: TaskState, terminated: torch.Tensor, generator: torch.Generator) -> None:
        """The gait phase first (:meth:`next_phase` reads the command the step was paid for), then the command."""
        state["phase"].copy_(self.next_phase(state))
        self.update_command(state, terminated, generator)

    def gravity(self, physics: Physics) -> torch.Tensor:
        """Gravity direction in the IMU frame, [0, 0, -1] when level."""
        return -self.read(physics, "gravity_up")

    def observe(
        self, physics: Physics, state: TaskState, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q, qd = self.joints(physics)
        noisy_q = q + uniform(generator, tuple(q.shape), -1.0, 1.0, like=q) * self.joint_noise_scale
        phase = state["phase"]
        obs = torch.cat(
            [
                self.noise(generator, self.read(physics, "local_linvel"), "linvel"),
                self.noise(generator, self.read(physics, "gyro"), "gyro"),
                self.noise(generator, self.gravity(physics), "gravity"),
                state["command"],
                noisy_q - self.default_pose,
                self.noise(generator, qd, "joint_vel"),
                state["last_act"],
                torch.cos(phase),
                torch.sin(phase),
            ],
            dim=-1,
        )
        return obs, torch.cat([obs, *self.privileged(physics, state)], dim=-1)

    def privileged(self, physics: Physics, state: TaskState) -> list[torch.Tensor]:
        """What the critic observation adds to the actor's, all clean (see the module docstring)."""
        q, qd = self.joints(physics)
        return [
            self.read(physics, "gyro"),
            self.read(physics, "accelerometer"),
            self.gravity(physics),
            self.read(physics, "local_linvel"),
            self.read(physics, "global_angvel"),
            q - self.default_pose,
            qd,
            physics.qpos[:, 2:3],
            self.actuator_force(physics),
            self.feet_contact(physics).to(q.dtype),
            self.feet_velocity(physics).flatten(1),
            state["feet_air_time"],
        ]

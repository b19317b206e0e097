"""Unitree Go1 joystick (MuJoCo Playground 0.2.0 semantics): follow a velocity command on flat or rough ground.

Shared by the five Go1 tasks (:class:`Go1Task`): Playground's Go1 scenes (third-party model data, see
``pqn_torch/third_party/playground/NOTICE``) without visual meshes, Playground's in-code model edits
(position gain Kp 35, joint damping Kd 0.5, 20 convex-collision iterations), physics at 4 ms, control
every 20 ms (5 substeps), actions in [-1, 1], observation noise ``x + U(-1, 1) * level * scale``
(``obs_noise_level``, default 1.0 as Playground), and the sensors the tasks read, added in code: the
gravity direction in the IMU frame, the feet's world positions and each actuator's force.

Go1JoystickFlatTerrain / Go1JoystickRoughTerrain (feet-only collisions; the rough scene's floor is
Playground's 20 m x 20 m heightfield):

- Control: ``ctrl = home_pose + 0.5 * action``.
- Reset: the "home" keyframe, x and y shifted by U(-0.5, 0.5), yaw U(-3.14, 3.14), root velocity
  U(-0.5, 0.5) in all 6 dofs; ``ctrl`` = the joint angles.
- Command ``[vx, vy, yaw rate]`` drawn U(-a, a) with a = (1.5, 0.8, 1.2) at reset; after Exp(mean 5 s)
  it is resampled per component: kept with probability 0.5, else replaced by U(-a, a) (probability
  b = (0.9, 0.25, 0.5)) or by 0.
- Observation (48): local linear velocity, gyro, gravity (IMU frame), joint angles - home, joint
  velocities (all noisy), last action, command. Critic (123) adds the clean gyro, accelerometer, gravity,
  local linear velocity, global angular velocity, joint angles - home, joint velocities, actuator forces,
  last foot contacts, feet linear velocities, feet air time, the push force on the trunk and the push flag.
- Reward: ``clip(dt * sum(scale * term), 0, 1e4)`` with Playground's 16 terms and scales
  (:data:`JOYSTICK_REWARD_SCALES`); termination when the trunk's up axis points down.
- Perturbations (``perturbations``, default off as Playground): every U(1, 3) s a horizontal push on the
  trunk in a random direction, a half-sine force over U(0.05, 0.2) s worth U(0, 3) m/s, written to
  ``xfrc_applied`` before the physics step.

Task state (``env.task_state``, Playground's ``state.info`` names): ``command`` [N, 3],
``steps_until_next_cmd``, ``last_act``, ``last_last_act`` [N, 12], ``feet_air_time``, ``last_contact``,
``swing_peak`` [N, 4], and the push schedule ``steps_until_next_pert``, ``pert_duration_seconds``,
``pert_duration``, ``steps_since_last_pert``, ``pert_steps``, ``pert_dir`` [N, 3], ``pert_mag``.
As in Playground, the observation of a step shows the command and last action from before that step's
update (the policy sees the command one step after it changes).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics, sensor_slice
from pqn_torch.envs.randomization import Draw
from pqn_torch.envs.tasks.base import ControlMapping, StartStates, Task, TaskConfig, TaskState, Transition
from pqn_torch.envs.tasks.common import uniform
from pqn_torch.envs.tasks.registry import register
from pqn_torch.envs.tasks.robots import (
    add_actuator_force_sensors,
    add_gravity_sensor,
    add_site_position_sensor,
    limit_violation,
    load_playground_scene,
    noisy,
    quat_multiply,
    set_position_gains,
    yaw_quaternion,
)

SCENES = "locomotion/go1/xmls/"
FEET = ("FR", "FL", "RR", "RL")
KP, KD = 35.0, 0.5
FREE_JOINT_QPOS, FREE_JOINT_QVEL = 7, 6
PROPRIOCEPTION_LAYOUT = (
    ("gyro (noisy)", 3),
    ("gravity in the IMU frame (noisy)", 3),
    ("joint angles - home pose (noisy)", 12),
    ("joint velocities (noisy)", 12),
)
LINVEL_LAYOUT = (("local linear velocity (noisy)", 3),)
IMU_SENSORS = (
    "gyro",
    "local_linvel",
    "accelerometer",
    "position",
    "upvector",
    "forwardvector",
    "global_linvel",
    "global_angvel",
    "gravity_up",
)

JOYSTICK_REWARD_SCALES = {
    "tracking_lin_vel": 1.0,
    "tracking_ang_vel": 0.5,
    "lin_vel_z": -0.5,
    "ang_vel_xy": -0.05,
    "orientation": -5.0,
    "dof_pos_limits": -1.0,
    "pose": 0.5,
    "termination": -1.0,
    "stand_still": -1.0,
    "torques": -0.0002,
    "action_rate": -0.01,
    "energy": -0.001,
    "feet_clearance": -2.0,
    "feet_height": -0.2,
    "feet_slip": -0.1,
    "feet_air_time": 0.1,
}
TRACKING_SIGMA = 0.25
MAX_FOOT_HEIGHT = 0.1
POSE_WEIGHTS = (1.0, 1.0, 0.1) * 4
COMMAND_AMPLITUDE = (1.5, 0.8, 1.2)
COMMAND_NONZERO_PROBABILITY = (0.9, 0.25, 0.5)
COMMAND_MEAN_PERIOD = 5.0  # seconds between command resamplings, exponentially distributed
MOVING_COMMAND = 0.01  # |command| above which the robot is asked to move
PUSH_WAIT = (1.0, 3.0)  # seconds between pushes
PUSH_DURATION = (0.05, 0.2)  # seconds
PUSH_VELOCITY = (0.0, 3.0)  # m/s the push is worth
JOYSTICK_NOISE = {"joint_pos": 0.03, "joint_vel": 1.5, "gyro": 0.2, "gravity": 0.05, "linvel": 0.1}


@dataclass
class Go1Config(TaskConfig):
    """Go1 task options: ``obs_noise_level`` scales the actor observation's noise (0 = clean)."""

    obs_noise_level: float = 1.0


@dataclass
class Go1JoystickConfig(Go1Config):
    """Adds ``perturbations``: random pushes on the trunk (off by default, as Playground)."""

    perturbations: bool = False


class Go1Task(Task):
    """Model, sensors, noise and shared readings of the Go1 tasks (see the module docstring)."""

    default_config: ClassVar[Go1Config]
    config: Go1Config
    scene: ClassVar[str]
    normalized_actions = True
    noise_scales: ClassVar[dict[str, float]]
    reward_scales: ClassVar[dict[str, float]]

    def __init__(self, **overrides) -> None:
        super().__init__(**overrides)
        if self.config.obs_noise_level < 0:
            raise ValueError(f"obs_noise_level must be >= 0 (0 = no noise), got {self.config.obs_noise_level!r}")

    def build_spec(self) -> mujoco.MjSpec:
        spec = load_playground_scene(SCENES + self.scene, "unitree_go1")
        spec.option.ccd_iterations = 20
        set_position_gains(spec, KP, KD)
        add_gravity_sensor(spec, "gravity_up", "imu")
        for foot in FEET:
            add_site_position_sensor(spec, f"{foot}_world_pos", foot)
        self._force_sensors = add_actuator_force_sensors(spec)
        return spec

    def bind(self, mj_model: mujoco.MjModel) -> None:
        self.dt = self.config.ctrl_dt
        self._home_qpos = torch.as_tensor(mj_model.keyframe("home").qpos, dtype=torch.float64)
        ranges = torch.as_tensor(mj_model.jnt_range[1:], dtype=torch.float64)
        self.joint_low, self.joint_high = ranges[:, 0], ranges[:, 1]
        self._constants = {"default_pose": self._home_qpos[FREE_JOINT_QPOS:]}
        self._placed: dict[tuple, torch.Tensor] = {}
        self._columns = {name: sensor_slice(mj_model, name) for name in IMU_SENSORS}
        self._feet_found = [sensor_slice(mj_model, f"{foot}_floor_found").start for foot in FEET]
        self._feet_z = [sensor_slice(mj_model, f"{foot}_world_pos").start + 2 for foot in FEET]
        self._feet_velocity = [sensor_slice(mj_model, f"{foot}_global_linvel") for foot in FEET]
        forces = [sensor_slice(mj_model, name) for name in self._force_sensors]
        self._forces = slice(forces[0].start, forces[-1].stop)
        if self._forces.stop - self._forces.start != mj_model.nu:
            raise ValueError("actuator force sensors must be contiguous")
        self._trunk = mj_model.body("trunk").id
        self._trunk_mass = float(mj_model.body_subtreemass[self._trunk])

    def const(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """Model constant ``name`` on ``like``'s device and dtype, converted once: a captured step reads no
        host data."""
        key = (name, like.device, like.dtype)
        if key not in self._placed:
            self._placed[key] = self._constants[name].to(like)
        return self._placed[key]

    # ----------------------------------------------------------------- readings
    def read(self, physics: Physics, name: str) -> torch.Tensor:
        """One of the IMU sensors (``IMU_SENSORS``) as [N, 3]; ``gravity`` is minus ``gravity_up``."""
        return physics.sensordata[:, self._columns[name]]

    def gravity(self, physics: Physics) -> torch.Tensor:
        """Gravity direction in the IMU frame, [0, 0, -1] when level (Playground's ``get_gravity``)."""
        return -self.read(physics, "gravity_up")

    def torso_height(self, physics: Physics) -> torch.Tensor:
        """World height of the IMU site [N, 1]."""
        return self.read(physics, "position")[:, 2:3]

    def actuator_force(self, physics: Physics) -> torch.Tensor:
        return physics.sensordata[:, self._forces]

    def feet_contact(self, physics: Physics) -> torch.Tensor:
        """Whether each foot (FR, FL, RR, RL) touches the floor, [N, 4] bool."""
        return torch.stack([physics.sensordata[:, column] for column in self._feet_found], dim=-1) > 0

    def feet_height(self, physics: Physics) -> torch.Tensor:
        return torch.stack([physics.sensordata[:, column] for column in self._feet_z], dim=-1)

    def feet_velocity(self, physics: Physics) -> torch.Tensor:
        """World linear velocity of each foot, [N, 4, 3]."""
        return torch.stack([physics.sensordata[:, columns] for columns in self._feet_velocity], dim=1)

    def joints(self, physics: Physics) -> tuple[torch.Tensor, torch.Tensor]:
        return physics.qpos[:, FREE_JOINT_QPOS:], physics.qvel[:, FREE_JOINT_QVEL:]

    def noise(self, generator: torch.Generator, value: torch.Tensor, kind: str) -> torch.Tensor:
        return noisy(generator, value, self.config.obs_noise_level * self.noise_scales[kind])

    def start_ctrl(self, qpos: torch.Tensor) -> torch.Tensor:
        """Playground starts every Go1 episode with the position targets at the joint angles."""
        return qpos[:, FREE_JOINT_QPOS:].clone()

    def home_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        """Home pose moved by U(-0.5, 0.5) in x and y, turned by yaw U(-3.14, 3.14), root velocity U(-0.5, 0.5)."""
        qpos = self._home_qpos.to(physics.qpos).repeat(num, 1)
        qpos[:, :2] += uniform(generator, (num, 2), -0.5, 0.5, like=qpos)
        yaw = uniform(generator, (num,), -3.14, 3.14, like=qpos)
        qpos[:, 3:7] = quat_multiply(qpos[:, 3:7], yaw_quaternion(yaw))
        qvel = torch.zeros(num, physics.qvel.shape[1], dtype=physics.dtype, device=physics.device)
        qvel[:, :FREE_JOINT_QVEL] = uniform(generator, (num, FREE_JOINT_QVEL), -0.5, 0.5, like=qvel)
        return StartStates(qpos=qpos, qvel=qvel)

    def proprioception(self, physics: Physics, generator: torch.Generator, linvel: bool) -> list[torch.Tensor]:
        """Noisy ``[local linvel], gyro, gravity, joint angles - home, joint velocities`` (Playground's order)."""
        q, qd = self.joints(physics)
        parts = [self.noise(generator, self.read(physics, "local_linvel"), "linvel")] if linvel else []
        return parts + [
            self.noise(generator, self.read(physics, "gyro"), "gyro"),
            self.noise(generator, self.gravity(physics), "gravity"),
            self.noise(generator, q, "joint_pos") - self.const("default_pose", q),
            self.noise(generator, qd, "joint_vel"),
        ]

    def privileged(self, physics: Physics) -> list[torch.Tensor]:
        """What the Getup/Handstand critic adds to the actor's observation, all clean: gyro, accelerometer,
        local linvel, global angvel, joint angles, joint velocities, actuator forces, IMU height."""
        q, qd = self.joints(physics)
        return [
            self.read(physics, "gyro"),
            self.read(physics, "accelerometer"),
            self.read(physics, "local_linvel"),
            self.read(physics, "global_angvel"),
            q,
            qd,
            self.actuator_force(physics),
            self.torso_height(physics),
        ]

    def total_reward(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """Playground's ``clip(dt * sum(scale * term), 0, 1e4)`` over the task's ``reward_scales``."""
        total = sum(self.reward_scales[name] * value for name, value in terms.items())
        assert isinstance(total, torch.Tensor)  # every task has reward terms
        return (total * self.dt).clamp(0.0, 1e4)


@register
class Go1JoystickFlatTerrain(Go1Task):
    """Follow a joystick velocity command on flat ground (see the module docstring)."""

    config: Go1JoystickConfig
    name = "Go1JoystickFlatTerrain"
    scene = "scene_mjx_feetonly_flat_terrain.xml"
    default_config = Go1JoystickConfig(ctrl_dt=0.02, sim_dt=0.004, episode_length=1000, contacts_per_world=4, njmax=40)
    noise_scales = JOYSTICK_NOISE
    reward_scales = JOYSTICK_REWARD_SCALES
    observation_layout = LINVEL_LAYOUT + PROPRIOCEPTION_LAYOUT + (("last action", 12), ("command: vx, vy, yaw rate", 3))
    control_mapping = ControlMapping("default_pose_offset", 0.5, default_pose_keyframe="home")

    def bind(self, mj_model: mujoco.MjModel) -> None:
        super().bind(mj_model)
        self._constants.update(
            {
                "soft_low": 0.95 * self.joint_low,
                "soft_high": 0.95 * self.joint_high,  # Playground's scaling
                "pose_weights": torch.tensor(POSE_WEIGHTS, dtype=torch.float64),
                "amplitude": torch.tensor(COMMAND_AMPLITUDE, dtype=torch.float64),
                "nonzero": torch.tensor(COMMAND_NONZERO_PROBABILITY, dtype=torch.float64),
            }
        )

    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        return self.home_start(generator, num, physics)

    # ----------------------------------------------------------------- task state
    def initial_state(self, generator: torch.Generator, num: int, physics: Physics) -> TaskState:
        like = physics.qpos
        amplitude = self.const("amplitude", like)
        pert_duration_seconds = uniform(generator, (num,), *PUSH_DURATION, like=like)
        zeros = like.new_zeros
        return {
            "command": uniform(generator, (num, 3), -amplitude, amplitude, like=like),
            "steps_until_next_cmd": self._command_period(generator, num, like),
            "last_act": zeros(num, 12),
            "last_last_act": zeros(num, 12),
            "feet_air_time": zeros(num, 4),
            "last_contact": zeros(num, 4, dtype=torch.bool),
            "swing_peak": zeros(num, 4),
            "steps_until_next_pert": self._steps(uniform(generator, (num,), *PUSH_WAIT, like=like)),
            "pert_duration_seconds": pert_duration_seconds,
            "pert_duration": self._steps(pert_duration_seconds),
            "steps_since_last_pert": zeros(num, dtype=torch.int64),
            "pert_steps": zeros(num, dtype=torch.int64),
            "pert_dir": zeros(num, 3),
            "pert_mag": uniform(generator, (num,), *PUSH_VELOCITY, like=like),
        }

    def _steps(self, seconds: torch.Tensor) -> torch.Tensor:
        return torch.round(seconds / self.dt).long()

    def _command_period(self, generator: torch.Generator, num: int, like: torch.Tensor) -> torch.Tensor:
        exponential = torch.empty(num, dtype=torch.float32, device=like.device).exponential_(generator=generator)
        return self._steps(exponential.to(like.dtype) * COMMAND_MEAN_PERIOD)

    def resample_command(self, generator: torch.Generator, command: torch.Tensor) -> torch.Tensor:
        """Playground's rule ``x' = x - w (x - y z)``: w ~ Bern(0.5), y ~ U(-a, a), z ~ Bern(b), per component."""
        amplitude, nonzero = self.const("amplitude", command), self.const("nonzero", command)
        target = uniform(generator, tuple(command.shape), -amplitude, amplitude, like=command)
        keep_nonzero = uniform(generator, tuple(command.shape), 0.0, 1.0, like=command) < nonzero
        replace = uniform(generator, tuple(command.shape), 0.0, 1.0, like=command) < 0.5
        return torch.where(replace, target * keep_nonzero, command)

    # ----------------------------------------------------------------- step
    def control(self, physics: Physics, action: torch.Tensor, state: TaskState, generator: torch.Generator) -> None:
        if self.config.perturbations:
            self._push(physics, state, generator)
        physics.ctrl.copy_(self.const("default_pose", action) + 0.5 * action)

    def _push(self, physics: Physics, state: TaskState, generator: torch.Generator) -> None:
        """Playground's kick schedule: wait ``steps_until_next_pert`` steps, then a half-sine push."""
        pushing = state["steps_since_last_pert"] >= state["steps_until_next_pert"]
        elapsed = state["pert_steps"].to(physics.dtype) * self.dt
        seconds = state["pert_duration_seconds"]
        force = 0.5 * torch.sin(math.pi * elapsed / seconds) * self._trunk_mass * state["pert_mag"] / seconds
        physics.xfrc_applied[:, self._trunk].zero_()
        physics.xfrc_applied[:, self._trunk, :3] = torch.where(
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

    def transition(
        self, physics: Physics, action: torch.Tensor, state: TaskState, generator: torch.Generator
    ) -> Transition:
        contact = self.feet_contact(physics)
        first_contact = (state["feet_air_time"] > 0) & (contact | state["last_contact"])
        state["feet_air_time"].add_(self.dt)
        torch.maximum(state["swing_peak"], self.feet_height(physics), out=state["swing_peak"])
        obs, critic_obs = self.observe(physics, state, generator)
        terminated = self.read(physics, "upvector")[:, 2] < 0
        reward = self.total_reward(self.reward_terms(physics, action, state, contact, first_contact, terminated))

        state["last_last_act"].copy_(state["last_act"])
        state["last_act"].copy_(action)
        state["steps_until_next_cmd"].sub_(1)
        due = state["steps_until_next_cmd"] <= 0
        state["command"].copy_(
            torch.where(due.unsqueeze(-1), self.resample_command(generator, state["command"]), state["command"])
        )
        period = self._command_period(generator, physics.num_worlds, physics.qpos)
        state["steps_until_next_cmd"].copy_(torch.where(due | terminated, period, state["steps_until_next_cmd"]))
        state["feet_air_time"].mul_(~contact)
        state["last_contact"].copy_(contact)
        state["swing_peak"].mul_(~contact)
        return Transition(reward=reward, obs=obs, critic_obs=critic_obs, terminated=terminated)

    def reward_terms(
        self,
        physics: Physics,
        action: torch.Tensor,
        state: TaskState,
        contact: torch.Tensor,
        first_contact: torch.Tensor,
        terminated: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Playground's unscaled joystick reward terms [N] (``first_contact``: feet landing this step)."""
        command = state["command"]
        moving = (torch.linalg.vector_norm(command, dim=-1) > MOVING_COMMAND).to(command.dtype)
        q, qd = self.joints(physics)
        offset = q - self.const("default_pose", q)
        linvel, gyro = self.read(physics, "local_linvel"), self.read(physics, "gyro")
        global_angvel = self.read(physics, "global_angvel")
        torques = self.actuator_force(physics)
        feet_speed_xy = torch.linalg.vector_norm(self.feet_velocity(physics)[..., :2], dim=-1)
        landing = first_contact.to(q.dtype)
        return {
            "tracking_lin_vel": torch.exp(-((command[:, :2] - linvel[:, :2]) ** 2).sum(-1) / TRACKING_SIGMA),
            "tracking_ang_vel": torch.exp(-((command[:, 2] - gyro[:, 2]) ** 2) / TRACKING_SIGMA),
            "lin_vel_z": self.read(physics, "global_linvel")[:, 2] ** 2,
            "ang_vel_xy": (global_angvel[:, :2] ** 2).sum(-1),
            "orientation": (self.read(physics, "upvector")[:, :2] ** 2).sum(-1),
            "stand_still": offset.abs().sum(-1) * (1.0 - moving),
            "termination": terminated.to(q.dtype),
            "pose": torch.exp(-(offset**2 * self.const("pose_weights", q)).sum(-1)),
            "torques": torch.linalg.vector_norm(torques, dim=-1) + torques.abs().sum(-1),
            "action_rate": ((action - state["last_act"]) ** 2).sum(-1),
            "energy": (qd.abs() * torques.abs()).sum(-1),
            "feet_slip": (feet_speed_xy**2 * contact).sum(-1) * moving,
            "feet_clearance": ((self.feet_height(physics) - MAX_FOOT_HEIGHT).abs() * feet_speed_xy.sqrt()).sum(-1),
            "feet_height": (((state["swing_peak"] / MAX_FOOT_HEIGHT - 1.0) ** 2) * landing).sum(-1) * moving,
            "feet_air_time": ((state["feet_air_time"] - 0.1) * landing).sum(-1) * moving,
            "dof_pos_limits": limit_violation(q, self.const("soft_low", q), self.const("soft_high", q)),
        }

    def observe(
        self, physics: Physics, state: TaskState, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        obs = torch.cat(
            self.proprioception(physics, generator, linvel=True) + [state["last_act"], state["command"]], dim=-1
        )
        q, qd = self.joints(physics)
        pushing = state["steps_since_last_pert"] >= state["steps_until_next_pert"]
        critic_obs = torch.cat(
            [
                obs,
                self.read(physics, "gyro"),
                self.read(physics, "accelerometer"),
                self.gravity(physics),
                self.read(physics, "local_linvel"),
                self.read(physics, "global_angvel"),
                q - self.const("default_pose", q),
                qd,
                self.actuator_force(physics),
                state["last_contact"].to(q.dtype),
                self.feet_velocity(physics).flatten(1),
                state["feet_air_time"],
                physics.xfrc_applied[:, self._trunk, :3],
                pushing.to(q.dtype).unsqueeze(-1),
            ],
            dim=-1,
        )
        return obs, critic_obs


@register
class Go1JoystickRoughTerrain(Go1JoystickFlatTerrain):
    """Follow a joystick velocity command on Playground's rough heightfield terrain."""

    name = "Go1JoystickRoughTerrain"
    scene = "scene_mjx_feetonly_rough_terrain.xml"
    default_config = dataclasses.replace(Go1JoystickFlatTerrain.default_config, contacts_per_world=8, njmax=60)


# Domain randomization (randomize=true): MuJoCo Playground 0.2.0's Go1 randomizer, per world. Off by default: purejaxql
# trains the Go1 tasks without it.
GO1_RANDOMIZATION = (
    Draw("geom_friction", "set", 0.4, 1.0, rows="floor", column=0),  # floor sliding friction
    Draw("dof_frictionloss", "scale", 0.9, 1.1, rows=slice(FREE_JOINT_QVEL, None)),  # joint friction loss
    Draw("dof_armature", "scale", 1.0, 1.05, rows=slice(FREE_JOINT_QVEL, None)),
    Draw("body_ipos", "add", -0.05, 0.05, rows="trunk"),  # torso centre of mass, m
    Draw("body_mass", "scale", 0.9, 1.1),  # every link
    Draw("body_mass", "add", -1.0, 1.0, rows="trunk"),  # torso, kg
    Draw("qpos0", "add", -0.05, 0.05, rows=slice(FREE_JOINT_QPOS, None)),  # joints' reference pose
)
Go1Task.randomization = GO1_RANDOMIZATION

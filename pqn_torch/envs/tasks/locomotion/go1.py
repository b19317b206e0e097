"""Unitree Go1 joystick (MuJoCo Playground 0.2.0 semantics): follow a velocity command on flat or rough ground.

Shared by the five Go1 tasks (:class:`Go1Task`, on the robot layer
:class:`~pqn_torch.envs.tasks.robot_task.RobotTask`): Playground's Go1 scenes (third-party model data, see
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
  (:data:`JOYSTICK_REWARD_SCALES`; the terms in :mod:`~pqn_torch.envs.tasks.reward_terms`); termination when
  the trunk's up axis points down.
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
from dataclasses import dataclass
from typing import ClassVar

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics
from pqn_torch.envs.randomization import Draw
from pqn_torch.envs.tasks import reward_terms as terms
from pqn_torch.envs.tasks.base import StartStates, TaskState
from pqn_torch.envs.tasks.common import uniform
from pqn_torch.envs.tasks.registry import register
from pqn_torch.envs.tasks.robot_task import (
    FREE_JOINT_QPOS,
    FREE_JOINT_QVEL,
    ActionMapping,
    FeetContactJoystickTask,
    JoystickConfig,
    PushRanges,
    RobotTask,
    TrunkPushes,
    exponential_control_steps,
    resample_command,
)
from pqn_torch.envs.tasks.robots import (
    add_actuator_force_sensors,
    add_gravity_sensor,
    add_site_position_sensor,
    load_playground_scene,
    set_position_gains,
)

SCENES = "locomotion/go1/xmls/"
FEET = ("FR", "FL", "RR", "RL")
KP, KD = 35.0, 0.5
CTRL_DT, SIM_DT = 0.02, 0.004  # 5 physics steps per control step
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
PUSHES = PushRanges(wait=(1.0, 3.0), duration=(0.05, 0.2), velocity=(0.0, 3.0))  # seconds, seconds, m/s
GO1_NOISE = {"joint_pos": 0.03, "joint_vel": 1.5, "gyro": 0.2, "gravity": 0.05, "linvel": 0.1}


@dataclass
class Go1JoystickConfig(JoystickConfig):
    """Adds ``perturbations``: random pushes on the trunk (off by default, as Playground)."""

    perturbations: bool = False


# Domain randomization (randomize=true): MuJoCo Playground 0.2.0's Go1 randomizer, per world. Off by default:
# purejaxql trains the Go1 tasks without it.
GO1_RANDOMIZATION = (
    Draw("geom_friction", "set", 0.4, 1.0, rows="floor", column=0),  # floor sliding friction
    Draw("dof_frictionloss", "scale", 0.9, 1.1, rows=slice(FREE_JOINT_QVEL, None)),  # joint friction loss
    Draw("dof_armature", "scale", 1.0, 1.05, rows=slice(FREE_JOINT_QVEL, None)),
    Draw("body_ipos", "add", -0.05, 0.05, rows="trunk"),  # torso centre of mass, m
    Draw("body_mass", "scale", 0.9, 1.1),  # every link
    Draw("body_mass", "add", -1.0, 1.0, rows="trunk"),  # torso, kg
    Draw("qpos0", "add", -0.05, 0.05, rows=slice(FREE_JOINT_QPOS, None)),  # joints' reference pose
)


class Go1Task(RobotTask):
    """Model, sensors and shared observation parts of the Go1 tasks (see the module docstring)."""

    scene: ClassVar[str]
    noise_scales = GO1_NOISE
    sensors = IMU_SENSORS
    feet = FEET
    randomization = GO1_RANDOMIZATION

    def build_spec(self) -> mujoco.MjSpec:
        spec = load_playground_scene(SCENES + self.scene, "unitree_go1")
        spec.option.ccd_iterations = 20
        set_position_gains(spec, KP, KD)
        add_gravity_sensor(spec, "gravity_up", "imu")
        for foot in FEET:
            add_site_position_sensor(spec, f"{foot}_world_pos", foot)
        add_actuator_force_sensors(spec)
        return spec

    def gravity(self, physics: Physics) -> torch.Tensor:
        """Gravity direction in the IMU frame, [0, 0, -1] when level (Playground's ``get_gravity``)."""
        return -self.read(physics, "gravity_up")

    def torso_height(self, physics: Physics) -> torch.Tensor:
        """World height of the IMU site [N, 1]."""
        return self.read(physics, "position")[:, 2:3]

    def proprioception(self, physics: Physics, generator: torch.Generator, linvel: bool) -> list[torch.Tensor]:
        """Noisy ``[local linvel], gyro, gravity, joint angles - home, joint velocities`` (Playground's order)."""
        q, qd = self.joints(physics)
        parts = [self.noise(generator, self.read(physics, "local_linvel"), "linvel")] if linvel else []
        return parts + [
            self.noise(generator, self.read(physics, "gyro"), "gyro"),
            self.noise(generator, self.gravity(physics), "gravity"),
            self.noise(generator, q, "joint_pos") - self.default_pose,
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


@register
class Go1JoystickFlatTerrain(FeetContactJoystickTask, Go1Task):
    """Follow a joystick velocity command on flat ground (see the module docstring)."""

    config: Go1JoystickConfig
    name = "Go1JoystickFlatTerrain"
    scene = "scene_mjx_feetonly_flat_terrain.xml"
    default_config = Go1JoystickConfig(CTRL_DT, SIM_DT, episode_length=1000, contacts_per_world=4, njmax=40)
    action_mapping = ActionMapping(scale=0.5, reference="home")
    remembered_actions = 2
    reward_scales = JOYSTICK_REWARD_SCALES
    observation_layout = LINVEL_LAYOUT + PROPRIOCEPTION_LAYOUT + (("last action", 12), ("command: vx, vy, yaw rate", 3))

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        super().bind(mj_model, device, dtype)
        low, high = self.joint_range
        self.soft_low, self.soft_high = self.constant(0.95 * low), self.constant(0.95 * high)  # Playground's scaling
        self.pose_weights = self.constant(POSE_WEIGHTS)
        self.amplitude = self.constant(COMMAND_AMPLITUDE)
        self.nonzero = self.constant(COMMAND_NONZERO_PROBABILITY)
        self.pushes = TrunkPushes(mj_model, "trunk", PUSHES, self.dt)

    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        return self.home_start(generator, num, physics)

    # ----------------------------------------------------------------- task state
    def initial_state(self, generator: torch.Generator, num: int, physics: Physics) -> TaskState:
        like = physics.qpos
        state = super().initial_state(generator, num, physics)
        push_duration = self.pushes.draw_duration(generator, num, like)
        state["command"] = self.held(uniform(generator, (num, 3), -self.amplitude, self.amplitude, like=like))
        state["steps_until_next_cmd"] = self._command_period(generator, num, like)
        state.update(self.feet_air_time.initial_state(num, like))
        state.update(self.pushes.initial_state(generator, num, like, push_duration))
        return state

    def _command_period(self, generator: torch.Generator, num: int, like: torch.Tensor) -> torch.Tensor:
        return exponential_control_steps(generator, num, COMMAND_MEAN_PERIOD, self.dt, like)

    def resample_command(self, generator: torch.Generator, command: torch.Tensor) -> torch.Tensor:
        """Playground's rule ``x' = x - w (x - y z)``: w ~ Bern(0.5), y ~ U(-a, a), z ~ Bern(b), per component."""
        return self.held(resample_command(generator, command, self.amplitude, self.nonzero))

    # ----------------------------------------------------------------- step
    def control(self, physics: Physics, action: torch.Tensor, state: TaskState, generator: torch.Generator) -> None:
        if self.config.perturbations:
            self.pushes.apply(physics, state, generator)
        super().control(physics, action, state, generator)

    def advance_clocks(self, state: TaskState, terminated: torch.Tensor, generator: torch.Generator) -> None:
        """Count the command period down; resample the due commands, then draw a fresh period where one was due
        and in terminated worlds."""
        state["steps_until_next_cmd"].sub_(1)
        due = state["steps_until_next_cmd"] <= 0
        state["command"].copy_(
            torch.where(due.unsqueeze(-1), self.resample_command(generator, state["command"]), state["command"])
        )
        period = self._command_period(generator, len(due), state["command"])
        state["steps_until_next_cmd"].copy_(torch.where(due | terminated, period, state["steps_until_next_cmd"]))

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
        offset = q - self.default_pose
        force = self.actuator_force(physics)
        feet_speed_xy = torch.linalg.vector_norm(self.feet_velocity(physics)[..., :2], dim=-1)
        landing = first_contact.to(q.dtype)
        return {
            **self.tracking_terms(physics, command, TRACKING_SIGMA),
            "lin_vel_z": terms.lin_vel_z(self.read(physics, "global_linvel")),
            "ang_vel_xy": terms.ang_vel_xy(self.read(physics, "global_angvel")),
            "orientation": terms.orientation(self.read(physics, "upvector")),
            "stand_still": terms.stand_still(offset, moving),
            "termination": terms.termination(terminated, q),
            "pose": terms.pose(offset, self.pose_weights),
            "torques": terms.torques(force),
            "action_rate": terms.action_rate(action, state["last_act"]),
            "energy": terms.energy(qd, force),
            "feet_slip": terms.feet_slip(feet_speed_xy, contact, moving),
            "feet_clearance": terms.feet_clearance(self.feet_height(physics), feet_speed_xy, MAX_FOOT_HEIGHT),
            "feet_height": terms.feet_height(state["swing_peak"], landing, MAX_FOOT_HEIGHT, moving),
            "feet_air_time": terms.feet_air_time(state["feet_air_time"], landing, moving),
            "dof_pos_limits": terms.dof_pos_limits(q, self.soft_low, self.soft_high),
        }

    def observe(
        self, physics: Physics, state: TaskState, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        obs = torch.cat(
            self.proprioception(physics, generator, linvel=True) + [state["last_act"], state["command"]], dim=-1
        )
        q, qd = self.joints(physics)
        critic_obs = torch.cat(
            [
                obs,
                self.read(physics, "gyro"),
                self.read(physics, "accelerometer"),
                self.gravity(physics),
                self.read(physics, "local_linvel"),
                self.read(physics, "global_angvel"),
                q - self.default_pose,
                qd,
                self.actuator_force(physics),
                state["last_contact"].to(q.dtype),
                self.feet_velocity(physics).flatten(1),
                state["feet_air_time"],
                self.pushes.force(physics),
                self.pushes.pushing(state).to(q.dtype).unsqueeze(-1),
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

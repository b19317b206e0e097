"""Berkeley Humanoid joystick (MuJoCo Playground 0.2.0 semantics): a 12-dof biped follows a velocity command on
flat or rough ground, stepping to a gait clock.

BerkeleyHumanoidJoystickFlatTerrain / BerkeleyHumanoidJoystickRoughTerrain: Playground's Berkeley Humanoid
scenes (third-party model data, see ``pqn_torch/third_party/playground/NOTICE``; feet-only collisions; the rough
scene's floor is the 20 m x 20 m heightfield the Go1 scenes ship) without visual meshes, with the model's own
gains (Playground edits none in code), physics at 2 ms, control every 20 ms (10 substeps), and the sensors the
task reads, added in code: the gravity direction in the IMU frame, the feet's world positions and each
actuator's force.

- Control: ``ctrl = home_pose + 0.5 * action``.
- Reset: the "home" keyframe, x and y shifted by U(-0.5, 0.5), yaw U(-3.14, 3.14), every joint angle
  multiplied by U(0.5, 1.5), root velocity U(-0.5, 0.5) in all 6 dofs; ``ctrl`` = the joint angles. Gait
  frequency U(1.25, 1.5) Hz per episode, the feet's phases starting at 0 and pi.
- Command ``[vx, vy, yaw rate]`` U(-1, 1) each, all zero with probability 0.1; resampled after 500 steps
  (Playground's ``step > 500``: every 501 steps).
- Pushes (``perturbations``, on by default as Playground): every U(5, 10) s (drawn per episode) the root's
  horizontal velocity gets U(0.1, 2) m/s in a random direction.
- Observation (52): local linear velocity, gyro, gravity (IMU frame), command, joint angles - home, joint
  velocities (noisy but the command), last action, cos and sin of the feet's gait phases. Critic (114) adds the
  clean gyro, accelerometer, gravity, local linear velocity, global angular velocity, joint angles - home, joint
  velocities, root height, actuator forces, feet contacts, feet linear velocities and feet air time.
- Reward: ``clip(dt * sum(scale * term), 0, 1e4)`` with Playground's 14 terms of non-zero scale
  (:data:`REWARD_SCALES`); termination when the trunk's up axis points down. Kept as Playground has them:
  ``feet_slip`` costs the trunk's horizontal speed times the feet on the floor (not the feet's speed), and
  ``feet_phase`` pays at a zero command too.

Task state (``env.task_state``, Playground's ``state.info`` names): ``command`` [N, 3], ``step`` (steps since
the last command), ``last_act`` [N, 12], ``feet_air_time``, ``last_contact``, ``swing_peak``, ``phase`` [N, 2],
``phase_dt``, ``push`` [N, 2], ``push_step``, ``push_interval_steps``. As in Playground, the observation of a
step shows the command, last action and gait phase from before that step's update.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics
from pqn_torch.envs.tasks import reward_terms as terms
from pqn_torch.envs.tasks.base import StartStates, TaskState, Transition
from pqn_torch.envs.tasks.common import uniform
from pqn_torch.envs.tasks.registry import register
from pqn_torch.envs.tasks.robot_task import (
    FREE_JOINT_QPOS,
    ActionMapping,
    FeetAirTime,
    RobotConfig,
    RobotTask,
    VelocityPushes,
    advance_gait_phase,
)
from pqn_torch.envs.tasks.robots import (
    PLAYGROUND_DIR,
    add_actuator_force_sensors,
    add_gravity_sensor,
    add_site_position_sensor,
    load_playground_scene,
    soft_limits,
)

SCENES = "locomotion/berkeley_humanoid/xmls/"
HEIGHTFIELD = PLAYGROUND_DIR / "locomotion" / "go1" / "xmls" / "assets" / "hfield.png"
"""The rough scene's ``assets/hfield.png``: the same file as Go1's (Playground ships identical copies), kept once."""
FEET = ("l_foot", "r_foot")  # foot sites
FOOT_GEOMS = ("l_foot1", "r_foot1")  # their contact sensors: <geom>_floor_found
CTRL_DT, SIM_DT = 0.02, 0.002  # 10 physics steps per control step
# Joint order: left leg then right leg, each HR, HAA, HFE, KFE, FFE, FAA.
HIP_JOINTS = (0, 1, 6, 7)  # hip roll and abduction
KNEE_JOINTS = (3, 9)
POSE_WEIGHTS = (1.0, 1.0, 0.01, 0.01, 1.0, 1.0) * 2
JOINT_NOISE = (0.03, 0.03, 0.03, 0.05, 0.08, 0.03) * 2  # rad: hip, hip, hip, knee, ankle pitch, ankle roll
NOISE_SCALES = {"joint_vel": 1.5, "gravity": 0.05, "linvel": 0.1, "gyro": 0.2}
IMU_SENSORS = ("gyro", "local_linvel", "accelerometer", "upvector", "global_linvel", "global_angvel", "gravity_up")

REWARD_SCALES = {
    "tracking_lin_vel": 1.0,
    "tracking_ang_vel": 0.5,
    "ang_vel_xy": -0.15,
    "orientation": -1.0,
    "torques": -2.5e-5,
    "action_rate": -0.01,
    "feet_air_time": 2.0,
    "feet_slip": -0.25,
    "feet_phase": 1.0,
    "termination": -1.0,
    "joint_deviation_knee": -0.1,
    "joint_deviation_hip": -0.25,
    "dof_pos_limits": -1.0,
    "pose": -1.0,
}
TRACKING_SIGMA = 0.5
SWING_HEIGHT = 0.1  # m, the gait's foot height
AIR_TIME = (0.2, 0.5)  # s: steps shorter than 0.2 s cost, what one step earns stops at 0.5 s
MOVING_COMMAND = 0.1  # |command| above which steps earn air time
LATERAL_COMMAND = 0.1  # |vy| above which the hip deviation costs
SOFT_LIMIT_FACTOR = 0.95
COMMAND_RANGE = 1.0  # vx, vy, yaw rate ~ U(-1, 1)
ZERO_COMMAND_PROBABILITY = 0.1
COMMAND_STEPS = 500  # a new command once the step count exceeds this
GAIT_FREQUENCY = (1.25, 1.5)  # Hz
JOINT_SCALE = (0.5, 1.5)  # reset: joint angles times U(0.5, 1.5)
PUSH_INTERVAL, PUSH_SPEED = (5.0, 10.0), (0.1, 2.0)  # s, m/s


@dataclass
class BerkeleyHumanoidConfig(RobotConfig):
    """Adds ``perturbations``: velocity pushes on the root (on by default, as Playground)."""

    perturbations: bool = True


@register
class BerkeleyHumanoidJoystickFlatTerrain(RobotTask):
    """Follow a joystick velocity command on flat ground (see the module docstring)."""

    config: BerkeleyHumanoidConfig
    name = "BerkeleyHumanoidJoystickFlatTerrain"
    scene: ClassVar[str] = "scene_mjx_feetonly_flat_terrain.xml"
    default_config = BerkeleyHumanoidConfig(CTRL_DT, SIM_DT, episode_length=1000, contacts_per_world=8, njmax=60)
    action_mapping = ActionMapping(scale=0.5, reference="home")
    sensors = IMU_SENSORS
    feet = FEET
    foot_geoms = FOOT_GEOMS
    noise_scales = NOISE_SCALES
    reward_scales = REWARD_SCALES
    observation_layout = (
        ("local linear velocity (noisy)", 3),
        ("gyro (noisy)", 3),
        ("gravity in the IMU frame (noisy)", 3),
        ("command: vx, vy, yaw rate", 3),
        ("joint angles - home pose (noisy)", 12),
        ("joint velocities (noisy)", 12),
        ("last action", 12),
        ("cos of the feet's gait phases", 2),
        ("sin of the feet's gait phases", 2),
    )

    def build_spec(self) -> mujoco.MjSpec:
        spec = load_playground_scene(SCENES + self.scene, "berkeley_humanoid")
        for heightfield in spec.hfields:
            heightfield.file = str(HEIGHTFIELD)
        add_gravity_sensor(spec, "gravity_up", "imu")
        for foot in FEET:
            add_site_position_sensor(spec, f"{foot}_world_pos", foot)
        add_actuator_force_sensors(spec)
        return spec

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        super().bind(mj_model, device, dtype)
        soft_low, soft_high = soft_limits(*self.joint_range, SOFT_LIMIT_FACTOR)
        self.soft_low, self.soft_high = self.constant(soft_low), self.constant(soft_high)
        self.pose_weights = self.constant(POSE_WEIGHTS)
        self.joint_noise = self.constant(JOINT_NOISE) * self.config.obs_noise_level
        self.initial_phase = self.constant((0.0, math.pi))
        self.hip_joints = torch.tensor(HIP_JOINTS, device=device)
        self.knee_joints = torch.tensor(KNEE_JOINTS, device=device)
        self.feet_air_time = FeetAirTime(len(FEET), self.dt)
        self.pushes = VelocityPushes(PUSH_INTERVAL, PUSH_SPEED, self.dt)

    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        start = self.home_start(generator, num, physics)
        joints = start.qpos[:, FREE_JOINT_QPOS:]
        joints *= uniform(generator, tuple(joints.shape), *JOINT_SCALE, like=joints)
        return start

    # ----------------------------------------------------------------- task state
    def initial_state(self, generator: torch.Generator, num: int, physics: Physics) -> TaskState:
        like = physics.qpos
        state = super().initial_state(generator, num, physics)
        state["command"] = self.sample_command(generator, num, like)
        state["step"] = like.new_zeros(num, dtype=torch.int64)
        state.update(self.feet_air_time.initial_state(num, like))
        frequency = uniform(generator, (num,), *GAIT_FREQUENCY, like=like)
        state["phase"] = self.initial_phase.repeat(num, 1)
        state["phase_dt"] = 2 * math.pi * self.dt * frequency
        state.update(self.pushes.initial_state(generator, num, like))
        return state

    def sample_command(self, generator: torch.Generator, num: int, like: torch.Tensor) -> torch.Tensor:
        """[num, 3] commands U(-1, 1) per component, all three zero with probability 0.1."""
        command = uniform(generator, (num, 3), -COMMAND_RANGE, COMMAND_RANGE, like=like)
        zero = uniform(generator, (num, 1), 0.0, 1.0, like=like) < ZERO_COMMAND_PROBABILITY
        return command.masked_fill(zero, 0.0)

    # ----------------------------------------------------------------- step
    def control(self, physics: Physics, action: torch.Tensor, state: TaskState, generator: torch.Generator) -> None:
        if self.config.perturbations:
            self.pushes.apply(physics, state, generator)
        super().control(physics, action, state, generator)

    def transition(
        self, physics: Physics, action: torch.Tensor, state: TaskState, generator: torch.Generator
    ) -> Transition:
        contact = self.feet_contact(physics)
        first_contact = self.feet_air_time.before_reward(state, contact, self.feet_height(physics))
        obs, critic_obs = self.observe(physics, state, generator)
        terminated = self.read(physics, "upvector")[:, 2] < 0
        reward, shares = self.total_reward(
            self.reward_terms(physics, action, state, contact, first_contact, terminated)
        )
        self.remember_action(state, action)
        state["phase"].copy_(advance_gait_phase(state["phase"], state["phase_dt"]))
        state["step"].add_(1)
        due = state["step"] > COMMAND_STEPS
        new_command = self.sample_command(generator, physics.num_worlds, state["command"])
        state["command"].copy_(torch.where(due.unsqueeze(-1), new_command, state["command"]))
        state["step"].masked_fill_(due | terminated, 0)
        self.feet_air_time.after_reward(state, contact)
        return Transition(reward=reward, obs=obs, critic_obs=critic_obs, terminated=terminated, reward_terms=shares)

    def reward_terms(
        self,
        physics: Physics,
        action: torch.Tensor,
        state: TaskState,
        contact: torch.Tensor,
        first_contact: torch.Tensor,
        terminated: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Playground's unscaled reward terms [N] (``first_contact``: feet landing this step)."""
        command = state["command"]
        moving = (torch.linalg.vector_norm(command, dim=-1) > MOVING_COMMAND).to(command.dtype)
        lateral = (command[:, 1].abs() > LATERAL_COMMAND).to(command.dtype)
        q, _ = self.joints(physics)
        offset = q - self.default_pose
        trunk_speed_xy = torch.linalg.vector_norm(self.read(physics, "global_linvel")[:, :2], dim=-1)
        landing = first_contact.to(q.dtype)
        return {
            "tracking_lin_vel": terms.tracking_lin_vel(command, self.read(physics, "local_linvel"), TRACKING_SIGMA),
            "tracking_ang_vel": terms.tracking_ang_vel(command, self.read(physics, "gyro"), TRACKING_SIGMA),
            "ang_vel_xy": terms.ang_vel_xy(self.read(physics, "global_angvel")),
            "orientation": terms.orientation(self.read(physics, "upvector")),
            "torques": terms.torques_l1(self.actuator_force(physics)),
            "action_rate": terms.action_rate(action, state["last_act"]),
            "feet_air_time": terms.feet_air_time(state["feet_air_time"], landing, moving, *AIR_TIME),
            "feet_slip": terms.body_slip(trunk_speed_xy, contact),
            "feet_phase": terms.feet_phase(self.feet_height(physics), state["phase"], SWING_HEIGHT),
            "termination": terms.termination(terminated, q),
            "joint_deviation_knee": terms.joint_deviation(offset[:, self.knee_joints]),
            "joint_deviation_hip": terms.joint_deviation(offset[:, self.hip_joints]) * lateral,
            "dof_pos_limits": terms.dof_pos_limits(q, self.soft_low, self.soft_high),
            "pose": terms.pose_deviation(offset, self.pose_weights),
        }

    def gravity(self, physics: Physics) -> torch.Tensor:
        """Gravity direction in the IMU frame, [0, 0, -1] when level."""
        return -self.read(physics, "gravity_up")

    def observe(
        self, physics: Physics, state: TaskState, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q, qd = self.joints(physics)
        noisy_q = q + uniform(generator, tuple(q.shape), -1.0, 1.0, like=q) * self.joint_noise  # per joint group
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
                physics.qpos[:, 2:3],
                self.actuator_force(physics),
                self.feet_contact(physics).to(q.dtype),
                self.feet_velocity(physics).flatten(1),
                state["feet_air_time"],
            ],
            dim=-1,
        )
        return obs, critic_obs


@register
class BerkeleyHumanoidJoystickRoughTerrain(BerkeleyHumanoidJoystickFlatTerrain):
    """Follow a joystick velocity command on Playground's rough heightfield terrain."""

    name = "BerkeleyHumanoidJoystickRoughTerrain"
    scene = "scene_mjx_feetonly_rough_terrain.xml"

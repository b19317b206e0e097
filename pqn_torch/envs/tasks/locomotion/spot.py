"""Boston Dynamics Spot joystick tasks (MuJoCo Playground 0.2.0 semantics): SpotFlatTerrainJoystick and
SpotJoystickGaitTracking; SpotGetup is in ``spot_getup.py``.

Shared by the three Spot tasks (:class:`SpotTask`, on the robot layer
:class:`~pqn_torch.envs.tasks.robot_task.RobotTask`): Playground's Spot scenes (third-party model data, see
``pqn_torch/third_party/playground/NOTICE``) without visual meshes, Playground's PD edit (each task's Kp on the
position actuators, Kd as joint damping), physics at 4 ms, control every 20 ms (5 substeps), actions in [-1, 1]
with the position targets clipped to the actuators' ``ctrlrange``, and the sensors the tasks read, added in
code: the world's up axis in the IMU frame, the feet's world positions and each actuator's force.

The two joystick tasks (feet-only collisions, the "home" keyframe at rest as the only start state):

- Control: ``ctrl = clip(home_pose + s * action, ctrlrange)``; ``ctrl`` = 0 at reset (as Playground).
- Command ``[vx, vy, yaw rate]`` U(-r, r) per component, all zero with probability 0.1, resampled after 200
  steps (Playground's ``step > 200``: every 201 steps).
- Joint-error history (task state ``qpos_error_history`` [N, 36]): each step's noisy joint angles minus the
  position targets of that step, newest first, three steps deep. A reset seeds the newest frame from the
  state the world starts in (targets 0: the joint angles) and zeros the older two, as Playground's reset
  observation does. The observation's joint angles are the same noisy reading as the newest frame.
- Termination: the trunk's up axis below 0.85 in z (about 32 degrees of tilt).

SpotFlatTerrainJoystick (Kp 300, Kd 1, s = 0.3):

- Observation (81): gyro, up axis (IMU frame), joint angles - home (all noisy), the joint-error history, feet
  positions relative to the IMU (noisy), last action, command. Critic (167) adds the clean gyro,
  accelerometer, up axis, local linear velocity, global angular velocity, joint angles - home, feet positions,
  joint velocities, actuator forces, last foot contacts, feet linear velocities, feet air time and the push
  force on the trunk.
- Reward: ``clip(dt * sum(scale * term), 0, 1e4)`` with Playground's 14 terms (:data:`JOYSTICK_REWARD_SCALES`).
- Perturbations (``perturbations``, default off as Playground): Go1's trunk pushes (every U(1, 3) s a half-sine
  horizontal force over U(0.05, 0.2) s worth U(0, 3) m/s).

SpotJoystickGaitTracking (Kp 400, Kd 10, s = 0.6):

- Gait drawn per episode: trot, walk, pace, bound or pronk (the feet's phase offsets, :data:`GAIT_PHASES`),
  frequency U(0.5, 4) Hz, swing height U(0.08, 0.4) m. Each foot's target height follows Playground's Bezier
  swing curve (:func:`~pqn_torch.envs.tasks.reward_terms.swing_height_curve`) over its phase.
- Observation (69): gyro, up axis, joint angles (noisy), the joint-error history, foot contacts, cos and sin of
  the feet's phases, gait frequency, gait index, swing height. As in Playground the command is not observed.
- Reward (no clip): ``dt * (0.5 tracking_lin_vel + 0.5 tracking_ang_vel + 2 feet_phase) * exp(0.2 * (-0.5
  ang_vel_xy - 0.5 lin_vel_z - 0.5 hip_splay))``; reported as the three positive shares before the cost factor
  plus ``costs``, what the factor takes off.

Deviations from Playground (defects fixed):

- The observed tilt is the world's up axis in the IMU frame. Playground observes the IMU's up axis in the world
  frame (its ``upvector`` sensor), whose x and y turn with the robot's heading, which no observation gives:
  the same tilt reads differently at different headings. Rewards and terminations use only the z component or
  the tilt's size, equal in both frames, so they are unchanged.
- The three axes of a foot's position noise are drawn independently (Playground draws one number per foot and
  scales it per axis, so the three errors are proportional).
- Gait tracking's vertical-velocity cost applies to trot, walk and pace, as Playground's comment says ("unless
  pronk or bound"); Playground's code applies it to bound and pronk only, the two gaits that must move up and
  down.

Task state (``env.task_state``, Playground's ``state.info`` names): ``command`` [N, 3], ``step``,
``last_act`` [N, 12], ``qpos_error_history`` [N, 36]; the joystick also ``last_last_act``,
``feet_air_time``, ``last_contact``, ``swing_peak`` [N, 4] and the push schedule (see
:class:`~pqn_torch.envs.tasks.robot_task.TrunkPushes`); gait tracking also ``gait`` (index), ``gait_freq``,
``phase`` [N, 4], ``phase_dt`` and ``foot_height``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics, sensor_slice
from pqn_torch.envs.tasks import reward_terms as terms
from pqn_torch.envs.tasks.base import StartStates, TaskState, Transition
from pqn_torch.envs.tasks.common import uniform
from pqn_torch.envs.tasks.registry import register
from pqn_torch.envs.tasks.robot_task import (
    ActionMapping,
    FeetContactJoystickTask,
    JoystickConfig,
    JoystickTask,
    PushRanges,
    RobotTask,
    TrunkPushes,
    advance_gait_phase,
)
from pqn_torch.envs.tasks.robots import (
    add_actuator_force_sensors,
    add_gravity_sensor,
    add_site_position_sensor,
    load_playground_scene,
    set_position_gains,
)

SCENES = "locomotion/spot/xmls/"
FEET = ("FL", "FR", "HL", "HR")
CTRL_DT, SIM_DT = 0.02, 0.004  # 5 physics steps per control step
IMU_SENSORS = (
    "gyro",
    "local_linvel",
    "accelerometer",
    "position",
    "upvector",
    "global_linvel",
    "global_angvel",
    "up_in_imu",
)
JOINTS, HISTORY_FRAMES = 12, 3
COMMAND_STEPS = 200  # a new command once the step count exceeds this
ZERO_COMMAND_PROBABILITY = 0.1
FALLEN_UP_Z = 0.85
STANDING_COMMAND = 0.01  # |command| below which the robot is asked to stand
JOYSTICK_NOISE = {"joint_pos": 0.05, "gyro": 0.1, "gravity": 0.03}
FEET_POSITION_NOISE = (0.01, 0.005, 0.02)  # x, y, z (m)
PUSHES = PushRanges(wait=(1.0, 3.0), duration=(0.05, 0.2), velocity=(0.0, 3.0))  # seconds, seconds, m/s

JOYSTICK_REWARD_SCALES = {
    "tracking_lin_vel": 1.5,
    "tracking_ang_vel": 0.8,
    "lin_vel_z": -2.0,
    "ang_vel_xy": -0.05,
    "orientation": -5.0,
    "termination": -1.0,
    "posture": 1.0,
    "torques": -0.0002,
    "action_rate": -0.01,
    "energy": -0.001,
    "feet_slip": -0.1,
    "feet_clearance": -2.0,
    "feet_height": -0.1,
    "feet_air_time": 0.1,
}
TRACKING_SIGMA = 0.25
MAX_FOOT_HEIGHT = 0.12
STANDING_POSTURE_WEIGHT = 10.0  # posture = exp(-10 |q - q0|^2) for a zero command, 1 otherwise

GAIT_REWARD_SCALES = {"tracking_lin_vel": 0.5, "tracking_ang_vel": 0.5, "feet_phase": 2.0}
GAIT_COST_SCALES = {"ang_vel_xy": -0.5, "lin_vel_z": -0.5, "hip_splay": -0.5}
GAIT_COST_RATE = 0.2  # reward = positive terms * exp(0.2 * weighted costs)
GAIT_NAMES = ("trot", "walk", "pace", "bound", "pronk")
GAIT_PHASES = (  # each foot's phase offset (FL, FR, HL, HR) per gait, in GAIT_NAMES order
    (0.0, math.pi, math.pi, 0.0),
    (0.0, 0.5 * math.pi, math.pi, 1.5 * math.pi),
    (0.0, math.pi, 0.0, math.pi),
    (0.0, 0.0, math.pi, math.pi),
    (0.0, 0.0, 0.0, 0.0),
)
BOUNCING_GAITS = ("bound", "pronk")  # no vertical-velocity cost for these
GAIT_FREQUENCY = (0.5, 4.0)  # Hz
SWING_HEIGHT = (0.08, 0.4)  # m
FEET_PHASE_SIGMA = 0.1
HIP_ABDUCTION = slice(0, JOINTS, 3)  # fl_hx, fr_hx, hl_hx, hr_hx


class SpotTask(RobotTask):
    """Model and sensors of the Spot tasks (see the module docstring); a task sets its scene and gains."""

    scene: ClassVar[str]
    gains: ClassVar[tuple[float, float]]
    """Playground's Kp (position actuators) and Kd (joint damping)."""
    sensors = IMU_SENSORS
    feet = FEET

    def build_spec(self) -> mujoco.MjSpec:
        spec = load_playground_scene(SCENES + self.scene, "boston_dynamics_spot")
        set_position_gains(spec, *self.gains)
        add_gravity_sensor(spec, "up_in_imu", "imu")
        for foot in FEET:
            add_site_position_sensor(spec, f"{foot}_world_pos", foot)
        add_actuator_force_sensors(spec)
        return spec

    def up_axis(self, physics: Physics) -> torch.Tensor:
        """The world's up axis in the IMU frame [N, 3], [0, 0, 1] when level (see the module docstring)."""
        return self.read(physics, "up_in_imu")

    def fallen(self, physics: Physics) -> torch.Tensor:
        """[N] bool: the trunk's up axis has a z component below 0.85."""
        return self.read(physics, "upvector")[:, 2] < FALLEN_UP_Z


@dataclass
class SpotJoystickConfig(JoystickConfig):
    """Adds ``perturbations``: random pushes on the trunk (off by default, as Playground)."""

    perturbations: bool = False


class SpotJoystickTask(JoystickTask, SpotTask):
    """The half the two Spot joystick tasks share: home start, command, joint-error history, termination."""

    scene = "scene_mjx_feetonly_flat_terrain.xml"
    noise_scales = JOYSTICK_NOISE
    start_ctrl_source = "zeros"  # as Playground's Spot joystick tasks start
    command_range: ClassVar[tuple[float, float, float]]
    """Half-widths of the uniform command draws: vx, vy, yaw rate."""

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        super().bind(mj_model, device, dtype)
        self.command_half_range = self.constant(self.command_range)

    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        """The home keyframe at rest (Playground's Spot joystick resets are not randomized)."""
        qvel = physics.qvel.new_zeros(num, physics.qvel.shape[1])
        return StartStates(qpos=self.home_qpos.repeat(num, 1), qvel=qvel)

    def initial_state(self, generator: torch.Generator, num: int, physics: Physics) -> TaskState:
        like = physics.qpos
        state = super().initial_state(generator, num, physics)
        state["command"] = self.sample_command(generator, num, like)
        state["step"] = like.new_zeros(num, dtype=torch.int64)
        state["qpos_error_history"] = like.new_zeros(num, HISTORY_FRAMES * JOINTS)
        return state

    def sample_command(self, generator: torch.Generator, num: int, like: torch.Tensor) -> torch.Tensor:
        """[num, 3] commands U(-r, r) per component, all three zero with probability 0.1 (or the held
        ``fixed_command``)."""
        command = uniform(generator, (num, 3), -self.command_half_range, self.command_half_range, like=like)
        zero = uniform(generator, (num, 1), 0.0, 1.0, like=like) < ZERO_COMMAND_PROBABILITY
        return self.held(command.masked_fill(zero, 0.0))

    # ----------------------------------------------------------------- joint-error history
    def joint_error(self, physics: Physics, generator: torch.Generator) -> torch.Tensor:
        """Noisy joint angles minus the position targets (``ctrl``), [N, 12]: the history's newest frame."""
        q, _ = self.joints(physics)
        return self.noise(generator, q, "joint_pos") - physics.ctrl

    def after_reset(self, physics: Physics, state: TaskState, reset: torch.Tensor, generator: torch.Generator) -> None:
        """The reset worlds' history: the reset state's joint error, then two zero frames."""
        error = self.joint_error(physics, generator)
        seeded = torch.cat([error, error.new_zeros(error.shape[0], (HISTORY_FRAMES - 1) * JOINTS)], dim=-1)
        history = state["qpos_error_history"]
        history.copy_(torch.where(reset.unsqueeze(-1), seeded, history))

    def record_joint_error(self, physics: Physics, state: TaskState, generator: torch.Generator) -> None:
        """Shift the history by one frame and put this step's joint error first."""
        history = state["qpos_error_history"]
        history.copy_(torch.cat([self.joint_error(physics, generator), history[:, :-JOINTS]], dim=-1))

    def noisy_joints(self, physics: Physics, state: TaskState) -> torch.Tensor:
        """The noisy joint angles of the history's newest frame (its error plus the targets it was taken at)."""
        return state["qpos_error_history"][:, :JOINTS] + physics.ctrl

    # ----------------------------------------------------------------- step
    def next_command(self, state: TaskState, terminated: torch.Tensor, generator: torch.Generator) -> None:
        """Count the step; past 200 steps draw a new command and restart the count (also on termination)."""
        state["step"].add_(1)
        due = state["step"] > COMMAND_STEPS
        new_command = self.sample_command(generator, state["command"].shape[0], state["command"])
        state["command"].copy_(torch.where(due.unsqueeze(-1), new_command, state["command"]))
        state["step"].masked_fill_(due | terminated, 0)


@register
class SpotFlatTerrainJoystick(FeetContactJoystickTask, SpotJoystickTask):
    """Follow a joystick velocity command on flat ground (see the module docstring)."""

    config: SpotJoystickConfig
    name = "SpotFlatTerrainJoystick"
    gains = (300.0, 1.0)
    default_config = SpotJoystickConfig(CTRL_DT, SIM_DT, episode_length=1000, contacts_per_world=4, njmax=28)
    action_mapping = ActionMapping(scale=0.3, reference="home", clip=True)
    remembered_actions = 2
    command_range = (1.0, 0.8, 1.0)
    reward_scales = JOYSTICK_REWARD_SCALES
    observation_layout = (
        ("gyro (noisy)", 3),
        ("up axis in the IMU frame (noisy)", 3),
        ("joint angles - home pose (noisy)", JOINTS),
        ("joint angles - position targets, last 3 steps, newest first (noisy)", HISTORY_FRAMES * JOINTS),
        ("feet positions relative to the IMU, FL FR HL HR (noisy)", 12),
        ("last action", JOINTS),
        ("command: vx, vy, yaw rate", 3),
    )

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        super().bind(mj_model, device, dtype)
        self._feet_relative = [sensor_slice(mj_model, f"{foot}_pos") for foot in FEET]
        self.feet_noise_scale = self.constant(FEET_POSITION_NOISE) * self.config.obs_noise_level
        self.pushes = TrunkPushes(mj_model, "body", PUSHES, self.dt)

    def initial_state(self, generator: torch.Generator, num: int, physics: Physics) -> TaskState:
        like = physics.qpos
        state = super().initial_state(generator, num, physics)
        state.update(self.feet_air_time.initial_state(num, like))
        push_duration = self.pushes.draw_duration(generator, num, like)
        state.update(self.pushes.initial_state(generator, num, like, push_duration))
        return state

    def feet_relative_position(self, physics: Physics) -> torch.Tensor:
        """Each foot's position relative to the IMU (world axes), [N, 4, 3]."""
        return torch.stack([physics.sensordata[:, columns] for columns in self._feet_relative], dim=1)

    # ----------------------------------------------------------------- step
    def control(self, physics: Physics, action: torch.Tensor, state: TaskState, generator: torch.Generator) -> None:
        if self.config.perturbations:
            self.pushes.apply(physics, state, generator)
        super().control(physics, action, state, generator)

    def before_observe(self, physics: Physics, state: TaskState, generator: torch.Generator) -> None:
        """This step's joint error into the history the observation shows."""
        self.record_joint_error(physics, state, generator)

    def terminated(self, physics: Physics) -> torch.Tensor:
        """Spot's fall test (:meth:`SpotTask.fallen`: tilted beyond about 32 degrees), not the base's upside down."""
        return self.fallen(physics)

    def advance_clocks(self, state: TaskState, terminated: torch.Tensor, generator: torch.Generator) -> None:
        """The command count both Spot joysticks keep (:meth:`SpotJoystickTask.next_command`)."""
        self.next_command(state, terminated, generator)

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
        q, qd = self.joints(physics)
        standing = torch.linalg.vector_norm(command, dim=-1) < STANDING_COMMAND
        moving = (~standing).to(q.dtype)
        force = self.actuator_force(physics)
        feet_speed_xy = torch.linalg.vector_norm(self.feet_velocity(physics)[..., :2], dim=-1)
        landing = first_contact.to(q.dtype)
        posture_cost = ((q - self.default_pose) ** 2).sum(-1)
        return {
            **self.tracking_terms(physics, command, TRACKING_SIGMA),
            "lin_vel_z": terms.lin_vel_z(self.read(physics, "global_linvel")),
            "ang_vel_xy": terms.ang_vel_xy(self.read(physics, "global_angvel")),
            "orientation": terms.orientation(self.read(physics, "upvector")),
            "termination": terms.termination(terminated, q),
            "posture": torch.exp(-STANDING_POSTURE_WEIGHT * posture_cost * standing.to(q.dtype)),
            "torques": terms.torques(force),
            "action_rate": terms.action_rate(action, state["last_act"], state["last_last_act"]),
            "energy": terms.energy(qd, force),
            "feet_slip": terms.feet_slip(feet_speed_xy, contact, torch.ones_like(moving)),
            "feet_clearance": terms.feet_clearance(self.feet_height(physics), feet_speed_xy, MAX_FOOT_HEIGHT),
            "feet_height": terms.feet_height(state["swing_peak"], landing, MAX_FOOT_HEIGHT, moving),
            "feet_air_time": terms.feet_air_time(state["feet_air_time"], landing, moving),
        }

    def observe(
        self, physics: Physics, state: TaskState, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q, qd = self.joints(physics)
        feet = self.feet_relative_position(physics)
        noisy_feet = feet + uniform(generator, tuple(feet.shape), -1.0, 1.0, like=feet) * self.feet_noise_scale
        obs = torch.cat(
            [
                self.noise(generator, self.read(physics, "gyro"), "gyro"),
                self.noise(generator, self.up_axis(physics), "gravity"),
                self.noisy_joints(physics, state) - self.default_pose,
                state["qpos_error_history"],
                noisy_feet.flatten(1),
                state["last_act"],
                state["command"],
            ],
            dim=-1,
        )
        critic_obs = torch.cat(
            [
                obs,
                self.read(physics, "gyro"),
                self.read(physics, "accelerometer"),
                self.up_axis(physics),
                self.read(physics, "local_linvel"),
                self.read(physics, "global_angvel"),
                q - self.default_pose,
                feet.flatten(1),
                qd,
                self.actuator_force(physics),
                state["last_contact"].to(q.dtype),
                self.feet_velocity(physics).flatten(1),
                state["feet_air_time"],
                self.pushes.force(physics),
            ],
            dim=-1,
        )
        return obs, critic_obs


@register
class SpotJoystickGaitTracking(SpotJoystickTask):
    """Follow a velocity command in a gait drawn per episode (see the module docstring)."""

    name = "SpotJoystickGaitTracking"
    gains = (400.0, 10.0)
    default_config = JoystickConfig(CTRL_DT, SIM_DT, episode_length=1000, contacts_per_world=4, njmax=28)
    action_mapping = ActionMapping(scale=0.6, reference="home", clip=True)
    command_range = (1.0, 0.5, 1.0)
    reward_scales = GAIT_REWARD_SCALES
    reward_clip = None
    observation_layout = (
        ("gyro (noisy)", 3),
        ("up axis in the IMU frame (noisy)", 3),
        ("joint angles (noisy)", JOINTS),
        ("joint angles - position targets, last 3 steps, newest first (noisy)", HISTORY_FRAMES * JOINTS),
        ("foot contacts, FL FR HL HR", 4),
        ("cos of the feet's gait phases", 4),
        ("sin of the feet's gait phases", 4),
        ("gait frequency (Hz)", 1),
        ("gait: 0 trot, 1 walk, 2 pace, 3 bound, 4 pronk", 1),
        ("swing height (m)", 1),
    )

    def __init__(self, **overrides) -> None:
        super().__init__(**overrides)
        self.reward_term_names = tuple(GAIT_REWARD_SCALES) + ("costs",)

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        super().bind(mj_model, device, dtype)
        self.gait_phases = self.constant(torch.tensor(GAIT_PHASES))
        self.cost_scales = self.constant(tuple(GAIT_COST_SCALES.values()))
        self.bouncing = torch.tensor([GAIT_NAMES.index(name) for name in BOUNCING_GAITS], device=device)
        """Indices of the gaits without a vertical-velocity cost."""

    def initial_state(self, generator: torch.Generator, num: int, physics: Physics) -> TaskState:
        like = physics.qpos
        state = super().initial_state(generator, num, physics)
        frequency = uniform(generator, (num,), *GAIT_FREQUENCY, like=like)
        gait = torch.randint(len(GAIT_NAMES), (num,), generator=generator, device=like.device)
        state["gait_freq"] = frequency
        state["gait"] = gait
        state["phase"] = self.gait_phases[gait]
        state["phase_dt"] = 2 * math.pi * self.dt * frequency
        state["foot_height"] = uniform(generator, (num,), *SWING_HEIGHT, like=like)
        return state

    def transition(
        self, physics: Physics, action: torch.Tensor, state: TaskState, generator: torch.Generator
    ) -> Transition:
        self.record_joint_error(physics, state, generator)
        obs, critic_obs = self.observe(physics, state, generator)
        terminated = self.fallen(physics)
        reward, shares = self.total_reward(self.reward_terms(physics, state))
        self.remember_action(state, action)
        state["phase"].copy_(advance_gait_phase(state["phase"], state["phase_dt"]))
        self.next_command(state, terminated, generator)
        return Transition(reward=reward, obs=obs, critic_obs=critic_obs, terminated=terminated, reward_terms=shares)

    def reward_terms(self, physics: Physics, state: TaskState) -> dict[str, torch.Tensor]:
        """The unscaled positive terms [N] and, under ``costs``, the unscaled costs [N, 3] in
        :data:`GAIT_COST_SCALES` order."""
        q, _ = self.joints(physics)
        vertical = terms.lin_vel_z(self.read(physics, "global_linvel"))
        bouncing = (state["gait"].unsqueeze(-1) == self.bouncing).any(-1)
        hip_error = q[:, HIP_ABDUCTION] - self.default_pose[HIP_ABDUCTION]
        costs = {
            "ang_vel_xy": terms.ang_vel_xy(self.read(physics, "global_angvel")),
            "lin_vel_z": torch.where(bouncing, 0.0, vertical),
            "hip_splay": (hip_error**2).sum(-1),
        }
        return {
            **self.tracking_terms(physics, state["command"], TRACKING_SIGMA),
            "feet_phase": terms.feet_phase(
                self.feet_height(physics), state["phase"], state["foot_height"].unsqueeze(-1), FEET_PHASE_SIGMA
            ),
            "costs": torch.stack([costs[name] for name in GAIT_COST_SCALES], dim=-1),
        }

    def total_reward(self, terms: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``dt * sum(scale * positive term) * exp(0.2 * sum(scale * cost))``; the shares are ``dt * scale * term``
        of the positive terms and ``costs``, the reward minus their sum (what the cost factor takes off)."""
        factor = torch.exp(GAIT_COST_RATE * (terms["costs"] * self.cost_scales).sum(-1))
        shares = {name: self.dt * scale * terms[name] for name, scale in GAIT_REWARD_SCALES.items()}
        unpenalized = sum(shares.values())
        assert isinstance(unpenalized, torch.Tensor)
        reward = unpenalized * factor
        shares["costs"] = reward - unpenalized
        return reward, shares

    def observe(
        self, physics: Physics, state: TaskState, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        phase = state["phase"]
        like = phase
        obs = torch.cat(
            [
                self.noise(generator, self.read(physics, "gyro"), "gyro"),
                self.noise(generator, self.up_axis(physics), "gravity"),
                self.noisy_joints(physics, state),
                state["qpos_error_history"],
                self.feet_contact(physics).to(like.dtype),
                torch.cos(phase),
                torch.sin(phase),
                state["gait_freq"].unsqueeze(-1),
                state["gait"].to(like.dtype).unsqueeze(-1),
                state["foot_height"].unsqueeze(-1),
            ],
            dim=-1,
        )
        return obs, obs

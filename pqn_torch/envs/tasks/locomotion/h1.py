"""Unitree H1 gait tracking (MuJoCo Playground 0.2.0 semantics): a 19-dof humanoid lifts its feet to a gait clock,
on the spot or while following a joystick velocity command.

H1InplaceGaitTracking / H1JoystickGaitTracking: Playground's H1 scene (third-party model data, see
``pqn_torch/third_party/playground/NOTICE``; three foot capsules per foot collide with the floor, nothing else)
without visual meshes, with the model's own gains, physics at 4 ms, control every 20 ms (5 substeps), and the
feet's world positions and the world's up axis in the IMU frame added as sensors in code.

- Gait, drawn per episode: a gait (inplace: "walk", the feet half a cycle apart, or "jump", together; joystick:
  "walk"), its frequency (inplace U(0.5, 4) Hz, joystick U(0.5, 2) Hz) and the swing's foot height
  U(0.08, 0.4) m. The feet's phases start at the gait's offsets and advance every step; the target foot height
  over a cycle is :func:`~pqn_torch.envs.tasks.reward_terms.swing_height_curve`.
- Control: inplace ``ctrl = home_pose + 0.6 * action``; joystick ``ctrl += 0.3 * action`` (the targets are
  integrated); both clipped to the actuators' ranges.
- Reset: the home keyframe at rest (as Playground: no pose or velocity noise); ``ctrl`` = 0 in place (as
  Playground; its targets do not depend on it), the joint angles for the joystick (see the defects).
- Joystick command ``[vx, vy, yaw rate]`` U(-1.5, 1.5), U(-0.5, 0.5), U(-1, 1), each component below 0.1 in
  magnitude set to 0; resampled after 500 steps (Playground's ``step > 500``).
- Observation (inplace 186, joystick 113; the critic sees the same): gyro, the world's up axis in the IMU
  frame, joint angles - home, joint velocities (these four noisy), last action, (joystick:
  the command), the histories of the last ``history_len`` joint velocities and joint errors ``q - ctrl``
  (newest first; inplace 3, joystick 1), the feet's floor contacts, cos and sin of the feet's phases, the gait
  frequency, the gait's index and the foot height. As in Playground, a step's observation shows the gait phase,
  last action and command from before that step's update; the histories include the step's own frame.
- Reward, inplace: Playground's product ``dt * 2 feet_phase * exp(0.2 * (-0.5 ang_vel - 0.5 lin_vel -
  0.5 pose))``, not clipped; its terms are reported as ``feet_phase``'s share ``dt * 2 feet_phase`` and the
  costs' shares of what the exponential takes off it, in proportion to each cost (:func:`gated_reward`).
  Joystick: ``max(dt * sum(scale * term), 0)`` with tracking_lin_vel 3.5, tracking_ang_vel 0.75,
  feet_phase 5, pose -2.5, action_rate -0.01. ``feet_phase`` is ``exp(-sum_feet (z_foot - z_target)^2 / s)``,
  s = 0.1 inplace, 0.01 joystick. Playground's zero-scale terms are not computed.
- Termination: a joint outside its actuator's range, or the IMU's up axis below 0.85 in z.

Changed from Playground (defects):

- The feet's floor contact is read from the contact sensors' own ``sensordata`` entries; Playground's step
  indexes ``sensordata`` by the sensors' ids (11-16), which land on the IMU's height, up axis and forward axis,
  so its H1 sees both feet on the floor whenever it stands (its reset reads the right entries).
- The observed tilt is the world's up axis in the IMU frame (``[0, 0, 1]`` when level); Playground observes the
  IMU's up axis in world coordinates, whose x and y turn with the heading, which the policy does not see (the
  same z: rewards and terminations are unchanged).
- The joystick's position targets start at the joint angles, as Playground's other task that integrates its
  targets (Go1Handstand) starts them and as an exported policy's metadata states. Playground's H1 leaves
  ``ctrl`` at 0, so its first targets are ``0.3 * action`` around the zero pose: with zero actions the robot
  snaps its legs straight, hops and falls within about 26 steps (measured).
- The joystick's ``action_rate`` is ``|a - a1|^2 + |a - 2 a1 + a2|^2``; Playground passes the actions to it in
  the wrong order, which costs ``|a1 - a2|^2 + |a1 - 2 a2 + a|^2``.

Task state (``env.task_state``, Playground's ``state.info`` names): ``last_act`` [N, 19] (joystick also
``last_last_act``), ``qvel_history``, ``qpos_error_history`` [N, 19 * history_len], ``gait`` (int),
``gait_freq``, ``foot_height``, ``phase`` [N, 2], ``phase_dt``; joystick ``command`` [N, 3], ``step``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics
from pqn_torch.envs.tasks import reward_terms as terms
from pqn_torch.envs.tasks.base import StartStates, TaskState, Transition
from pqn_torch.envs.tasks.common import uniform
from pqn_torch.envs.tasks.registry import register
from pqn_torch.envs.tasks.robot_task import (
    ActionMapping,
    JoystickConfig,
    JoystickTask,
    RobotConfig,
    RobotTask,
    advance_gait_phase,
)
from pqn_torch.envs.tasks.robots import add_gravity_sensor, add_site_position_sensor, load_playground_scene

SCENE = "locomotion/h1/xmls/scene_mjx_feetonly.xml"
CTRL_DT, SIM_DT = 0.02, 0.004  # 5 physics steps per control step
NUM_JOINTS = 19
FEET = ("left_foot", "right_foot")
FOOT_GEOMS = (("left_foot1", "left_foot2", "left_foot3"), ("right_foot1", "right_foot2", "right_foot3"))
GAIT_PHASES = {"walk": (0.0, math.pi), "jump": (0.0, 0.0)}
"""The feet's phases (left, right) at the start of a cycle, per gait."""
FOOT_HEIGHT = (0.08, 0.4)  # m, the swing's height, drawn per episode
UPRIGHT = 0.85  # the IMU's up axis z below which the robot has fallen
# Joint order: left leg, right leg (hip yaw, roll, pitch, knee, ankle), torso, left arm, right arm (shoulder
# pitch, roll, yaw, elbow). The pose cost skips hip pitch and knee, which a stepping leg must bend.
POSE_WEIGHTS = (5.0, 5.0, 0.0, 0.0, 5.0) * 2 + (2.0,) + (1.0,) * 8
NOISE_SCALES = {"gyro": 0.2, "gravity": 0.05, "joint_pos": 0.01, "joint_vel": 1.5}
CONTACTS_PER_WORLD = 12
"""MuJoCo Warp contact buffer per world: only the 6 foot capsules touch the floor, at most 2 contacts each
(measured: 8 at the home pose, 12 in random-action rollouts that fall). Playground's 8 is an average over a
shared batch buffer."""
NJMAX = NUM_JOINTS + CONTACTS_PER_WORLD * 4  # joint limits + 4 pyramidal rows per contact


def h1_layout(history: int, command: bool) -> tuple[tuple[str, int], ...]:
    """The observation's parts with ``history`` frames per history, with or without the command."""
    return (
        ("gyro (noisy)", 3),
        ("world up axis in the IMU frame (noisy)", 3),
        ("joint angles - home pose (noisy)", NUM_JOINTS),
        ("joint velocities (noisy)", NUM_JOINTS),
        ("last action", NUM_JOINTS),
        *((("command: vx, vy, yaw rate", 3),) if command else ()),
        (f"joint velocity history, {history} frames, newest first", NUM_JOINTS * history),
        (f"joint error (angle - target) history, {history} frames, newest first", NUM_JOINTS * history),
        ("feet floor contact", 2),
        ("cos of the feet's gait phases", 2),
        ("sin of the feet's gait phases", 2),
        ("gait frequency (Hz)", 1),
        ("gait index", 1),
        ("foot height (m)", 1),
    )


def gated_reward(
    dt: float, positive: torch.Tensor, costs: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Playground's gait-tracking reward ``dt * positive * exp(0.2 * sum(costs))`` (``positive`` and the scaled,
    non-positive ``costs`` [N]) and its shares: ``dt * positive``, then what the exponential takes off it split
    among the costs in proportion to each (all zero where the costs are)."""
    total_cost = sum(costs.values())
    assert isinstance(total_cost, torch.Tensor)
    paid = dt * positive
    reward = paid * torch.exp(0.2 * total_cost)
    # Every cost is <= 0, so their sum is 0 only where each is: those worlds' shares are 0 / 1.
    taken_per_cost = (reward - paid) / torch.where(total_cost != 0, total_cost, 1.0)
    return reward, {name: taken_per_cost * cost for name, cost in costs.items()}


class H1GaitTracking(RobotTask):
    """What both H1 tasks share (see the module docstring): gait clock and parameters, histories, observation,
    termination. A task sets the ClassVars and :meth:`step_reward`."""

    sensors = ("gyro", "local_linvel", "upvector", "up_in_imu", "global_linvel", "global_angvel")
    feet = FEET
    foot_geoms = FOOT_GEOMS
    noise_scales = NOISE_SCALES
    gaits: ClassVar[tuple[str, ...]]
    """The gaits an episode draws from (uniformly); its index is observed."""
    gait_frequency: ClassVar[tuple[float, float]]
    """Hz, drawn per episode."""
    history_len: ClassVar[int]
    """Frames in each observation history."""
    feet_phase_sigma: ClassVar[float]
    """The ``s`` of ``feet_phase = exp(-error / s)``."""
    start_ctrl_source = "zeros"  # Playground's H1 starts with ctrl = 0

    def build_spec(self) -> mujoco.MjSpec:
        spec = load_playground_scene(SCENE, "unitree_h1")
        add_gravity_sensor(spec, "up_in_imu", "imu")
        for foot in FEET:
            add_site_position_sensor(spec, f"{foot}_world_pos", foot)
        return spec

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        super().bind(mj_model, device, dtype)
        self.gait_phases = self.constant(torch.tensor([GAIT_PHASES[gait] for gait in self.gaits], dtype=torch.float64))
        self.pose_weights = self.constant(POSE_WEIGHTS)

    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        """The home keyframe at rest (Playground's H1 reset has no noise)."""
        return StartStates(qpos=self.home_qpos.repeat(num, 1), qvel=physics.qvel.new_zeros(num, physics.qvel.shape[1]))

    # ----------------------------------------------------------------- task state
    def initial_state(self, generator: torch.Generator, num: int, physics: Physics) -> TaskState:
        like = physics.qpos
        state = super().initial_state(generator, num, physics)
        frequency = uniform(generator, (num,), *self.gait_frequency, like=like)
        gait = torch.randint(len(self.gaits), (num,), generator=generator, device=like.device)
        state.update(
            {
                "qvel_history": like.new_zeros(num, NUM_JOINTS * self.history_len),
                "qpos_error_history": like.new_zeros(num, NUM_JOINTS * self.history_len),
                "gait": gait,
                "gait_freq": frequency,
                "foot_height": uniform(generator, (num,), *FOOT_HEIGHT, like=like),
                "phase": self.gait_phases[gait],
                "phase_dt": 2 * math.pi * self.dt * frequency,
            }
        )
        return state

    def history_frames(self, physics: Physics) -> dict[str, torch.Tensor]:
        """This state's frame of each history: joint velocities and joint errors ``q - ctrl`` [N, 19]."""
        q, qd = self.joints(physics)
        return {"qvel_history": qd, "qpos_error_history": q - physics.ctrl}

    def after_reset(self, physics: Physics, state: TaskState, reset: torch.Tensor, generator: torch.Generator) -> None:
        """The reset worlds' histories: their first frame, then zeros (Playground's zero buffers rolled once)."""
        for name, frame in self.history_frames(physics).items():
            history = state[name]
            seeded = torch.cat([frame, history.new_zeros(history.shape[0], history.shape[1] - NUM_JOINTS)], dim=-1)
            history.copy_(torch.where(reset.unsqueeze(-1), seeded, history))

    def roll_histories(self, physics: Physics, state: TaskState) -> None:
        """Push this step's frames into the histories (newest first), dropping the oldest, in place."""
        for name, frame in self.history_frames(physics).items():
            history = state[name]
            history.copy_(torch.cat([frame, history[:, : history.shape[1] - NUM_JOINTS]], dim=-1))

    # ----------------------------------------------------------------- step
    def terminated(self, physics: Physics) -> torch.Tensor:
        """[N] bool: a joint outside its actuator's range, or the IMU's up axis tilted below 0.85 in z."""
        q, _ = self.joints(physics)
        outside = ((q < self.ctrl_low) | (q > self.ctrl_high)).any(-1)
        return outside | (self.read(physics, "upvector")[:, 2] < UPRIGHT)

    def feet_phase(self, physics: Physics, state: TaskState) -> torch.Tensor:
        """[N]: the feet at the gait's target heights for this phase and the episode's foot height."""
        swing_height = state["foot_height"].unsqueeze(-1)
        return terms.feet_phase(self.feet_height(physics), state["phase"], swing_height, self.feet_phase_sigma)

    def pose_cost(self, physics: Physics) -> torch.Tensor:
        """[N]: weighted squared offsets from the home pose (hip pitch and knees free)."""
        q, _ = self.joints(physics)
        return terms.pose_deviation(q - self.default_pose, self.pose_weights)

    def transition(
        self, physics: Physics, action: torch.Tensor, state: TaskState, generator: torch.Generator
    ) -> Transition:
        self.roll_histories(physics, state)
        obs, critic_obs = self.observe(physics, state, generator)
        terminated = self.terminated(physics)
        reward, shares = self.step_reward(physics, action, state)
        self.remember_action(state, action)
        state["phase"].copy_(advance_gait_phase(state["phase"], state["phase_dt"]))
        self.advance_command(generator, state, terminated)
        return Transition(reward=reward, obs=obs, critic_obs=critic_obs, terminated=terminated, reward_terms=shares)

    def step_reward(
        self, physics: Physics, action: torch.Tensor, state: TaskState
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The reward [N] and its shares (name -> [N], adding up to it)."""
        raise NotImplementedError

    def advance_command(self, generator: torch.Generator, state: TaskState, terminated: torch.Tensor) -> None:
        """The command clock after a step (tasks with a command)."""

    def command_observation(self, state: TaskState) -> list[torch.Tensor]:
        """The command's part of the observation: none without a command."""
        return []

    def observe(
        self, physics: Physics, state: TaskState, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q, qd = self.joints(physics)
        phase = state["phase"]
        obs = torch.cat(
            [
                self.noise(generator, self.read(physics, "gyro"), "gyro"),
                self.noise(generator, self.read(physics, "up_in_imu"), "gravity"),
                self.noise(generator, q, "joint_pos") - self.default_pose,
                self.noise(generator, qd, "joint_vel"),
                state["last_act"],
                *self.command_observation(state),
                state["qvel_history"],
                state["qpos_error_history"],
                self.feet_contact(physics).to(q.dtype),
                torch.cos(phase),
                torch.sin(phase),
                torch.stack([state["gait_freq"], state["gait"].to(q.dtype), state["foot_height"]], dim=-1),
            ],
            dim=-1,
        )
        return obs, obs


@register
class H1InplaceGaitTracking(H1GaitTracking):
    """Step on the spot to a drawn gait, frequency and foot height (see the module docstring)."""

    name = "H1InplaceGaitTracking"
    default_config = RobotConfig(
        CTRL_DT, SIM_DT, episode_length=1000, contacts_per_world=CONTACTS_PER_WORLD, njmax=NJMAX
    )
    action_mapping = ActionMapping(scale=0.6, reference="home", clip=True)
    reward_scales = {"feet_phase": 2.0, "ang_vel": -0.5, "lin_vel": -0.5, "pose": -0.5}
    reward_clip = None
    gaits = ("walk", "jump")
    gait_frequency = (0.5, 4.0)
    history_len = 3
    feet_phase_sigma = 0.1
    observation_layout = h1_layout(history=3, command=False)

    def reward_terms(self, physics: Physics, state: TaskState) -> dict[str, torch.Tensor]:
        """Playground's unscaled terms [N]: the gait reward, then the costs (angular velocity, horizontal linear
        velocity, both of the IMU in the world, and the pose)."""
        return {
            "feet_phase": self.feet_phase(physics, state),
            "ang_vel": (self.read(physics, "global_angvel") ** 2).sum(-1),
            "lin_vel": (self.read(physics, "global_linvel")[:, :2] ** 2).sum(-1),
            "pose": self.pose_cost(physics),
        }

    def step_reward(
        self, physics: Physics, action: torch.Tensor, state: TaskState
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        scaled = {name: self.reward_scales[name] * value for name, value in self.reward_terms(physics, state).items()}
        positive = scaled.pop("feet_phase")
        reward, cost_shares = gated_reward(self.dt, positive, scaled)
        return reward, {"feet_phase": self.dt * positive, **cost_shares}


@register
class H1JoystickGaitTracking(JoystickTask, H1GaitTracking):
    """Follow a joystick velocity command while walking to a drawn frequency and foot height (see the module
    docstring)."""

    name = "H1JoystickGaitTracking"
    default_config = JoystickConfig(
        CTRL_DT, SIM_DT, episode_length=1000, contacts_per_world=CONTACTS_PER_WORLD, njmax=NJMAX, obs_noise_level=0.6
    )
    action_mapping = ActionMapping(scale=0.3, reference="ctrl", clip=True)
    reward_scales = {
        "tracking_lin_vel": 3.5,
        "tracking_ang_vel": 0.75,
        "feet_phase": 5.0,
        "pose": -2.5,
        "action_rate": -0.01,
    }
    reward_clip = (0.0, math.inf)
    remembered_actions = 2
    start_ctrl_source = "joint_pos"  # a deviation: Playground's H1 leaves the targets at 0 (the legs snap straight)
    gaits = ("walk",)
    gait_frequency = (0.5, 2.0)
    history_len = 1
    feet_phase_sigma = 0.01
    observation_layout = h1_layout(history=1, command=True)
    command_range = (1.5, 0.5, 1.0)
    """Half-widths of the uniform command draws: vx, vy, yaw rate."""
    command_threshold = 0.1
    """A command component smaller than this in magnitude is set to 0."""
    command_steps = 500
    """A new command once the step count exceeds this."""
    tracking_sigma = 0.5

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        super().bind(mj_model, device, dtype)
        self.command_half_range = self.constant(self.command_range)

    def initial_state(self, generator: torch.Generator, num: int, physics: Physics) -> TaskState:
        state = super().initial_state(generator, num, physics)
        state["command"] = self.sample_command(generator, num, physics.qpos)
        state["step"] = physics.qpos.new_zeros(num, dtype=torch.int64)
        return state

    def sample_command(self, generator: torch.Generator, num: int, like: torch.Tensor) -> torch.Tensor:
        """[num, 3] commands U(-r, r) per component (:attr:`command_range`), components below 0.1 set to 0 (or
        the held ``fixed_command``)."""
        command = uniform(generator, (num, 3), -self.command_half_range, self.command_half_range, like=like)
        return self.held(command.masked_fill(command.abs() < self.command_threshold, 0.0))

    def advance_command(self, generator: torch.Generator, state: TaskState, terminated: torch.Tensor) -> None:
        state["step"].add_(1)
        due = state["step"] > self.command_steps
        new_command = self.sample_command(generator, state["command"].shape[0], state["command"])
        state["command"].copy_(torch.where(due.unsqueeze(-1), new_command, state["command"]))
        state["step"].masked_fill_(due | terminated, 0)

    def command_observation(self, state: TaskState) -> list[torch.Tensor]:
        return [state["command"]]

    def reward_terms(self, physics: Physics, action: torch.Tensor, state: TaskState) -> dict[str, torch.Tensor]:
        """Playground's unscaled terms of non-zero scale [N]."""
        command = state["command"]
        return {
            **self.tracking_terms(physics, command, self.tracking_sigma),
            "feet_phase": self.feet_phase(physics, state),
            "pose": self.pose_cost(physics),
            "action_rate": terms.action_rate(action, state["last_act"], state["last_last_act"]),
        }

    def step_reward(
        self, physics: Physics, action: torch.Tensor, state: TaskState
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.total_reward(self.reward_terms(physics, action, state))

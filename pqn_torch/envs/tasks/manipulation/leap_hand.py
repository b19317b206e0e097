"""LEAP hand: LeapCubeRotateZAxis and LeapCubeReorient (MuJoCo Playground 0.2.0 semantics).

Model: Playground's ``scene_mjx_cube.xml``, a 16-joint LEAP right hand (position actuators, kp 3) palm up
with a 7 cm cube in it and a mocap body ``goal`` holding the target orientation (third-party model data,
see ``pqn_torch/third_party/playground/NOTICE``), visual meshes and textures dropped; Playground's in-code
edit ``opt.ccd_iterations = 10``. Collisions: 34 boxes on the hand, the cube, the goal's box and the floor.
Physics at 10 ms, control every 50 ms (5 substeps). Added sensors: the actuator forces.

- Reset (both): hand joints at the home pose + 0.1 N(0, 1), clipped to the control range, at rest, ``ctrl`` =
  those angles; the cube at (0.1, 0, 0.05) + U(-0.01, 0.01) m per axis, uniformly random orientation, at rest.
- Termination (both): the cube below z = -0.05 m (dropped from the hand).

LeapCubeRotateZAxis (500 steps): turn the cube about the world z-axis as fast as possible.

- Control: ``ctrl = home pose + 0.6 * action``. The goal is hidden at (-100, -100, -100).
- Observation (32): joint angles + U(-0.05, 0.05), last action. Critic (105) adds the joint angles, joint
  velocities, actuator forces, fingertip positions relative to the palm site, palm - cube position, cube
  quaternion, cube angular and linear velocity (world frame).
- Reward ``dt * (w_z - 100 * terminated)`` (no clip): the cube's angular velocity about z.

LeapCubeReorient (1000 steps): turn the cube to the goal orientation, again and again.

- Control: ``ctrl = a * clip(ctrl + 0.5 * action, ctrlrange) + (1 - a) * ctrl`` with ``a`` = option
  ``ema_alpha`` (Playground's 1: no filtering): the position targets are integrated by the policy, filtered by
  an exponential moving average; ``ctrl`` itself is the filter's memory.
- Goal: a uniformly random orientation in the ``goal`` mocap body at reset. A step with orientation error
  (``2 asin |vec(q_cube q_goal^-1)|``) below 0.1 rad is a success: +100 (not scaled by ``dt``) and the goal
  starts turning at an angular velocity U(1, 5) rad/s per axis, which decays by 0.8 per step and turns the
  goal by ``2 dt |w|`` each step (``goal_quat_dquat``, Playground's name): it settles about 2.6 rad away.
- Observation (57): joint angles + U(-0.05, 0.05); those noisy angles - ``ctrl``; palm - cube position with
  the cube position + U(-0.02, 0.02); rows 2-3 of the rotation matrix of ``q_noisy q_goal^-1`` with
  ``q_noisy = normalize(q_cube + 0.1 N(0, 1))``; last action. Critic (128) adds the joint angles and
  velocities, fingertip positions, the clean palm - cube position and rotation rows, cube linear and angular
  velocity, and the perturbation direction and force on the cube (6 + 6, zero: Playground's perturbations
  are off by default and not ported).
- Reward ``dt * (5 orientation + 0.5 position - 100 terminated - 0.5 hand_pose - 0.001 action_rate - 0.001
  energy) + 100 success`` (:meth:`LeapCubeReorient.reward_terms`; no clip).

Domain randomization (``randomize=true``, off by default as in purejaxql's runs): Playground's LEAP randomizer,
:data:`LEAP_RANDOMIZATION` (one fingertip friction, the cube's inertia and centre of mass, the hand's reference
pose, frictionloss, armature, link masses, kp and damping); the derived constants are recomputed (see
:mod:`pqn_torch.envs.randomization`).

Playground keeps observation histories of length 1 (``history_len``): each is the current frame, so no
history is kept here.

Task state (``env.task_state``): ``last_act`` [N, 16] (both), ``last_last_act`` and ``goal_quat_dquat``
[N, 3] (Reorient).

Kept as in Playground, though odd (as for the Go1 joystick): a step's observation shows the action from before
that step's (its "last action" is stored after the observation is built). Deviation from Playground: the first
observation of an episode holds the palm, fingertip and cube readings (Playground computes no kinematics at
reset: zeros there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics
from pqn_torch.envs.randomization import Draw
from pqn_torch.envs.tasks import reward_terms as terms
from pqn_torch.envs.tasks.base import ControlMapping, StartStates, TaskState, Transition
from pqn_torch.envs.tasks.common import normal, uniform
from pqn_torch.envs.tasks.registry import register
from pqn_torch.envs.tasks.rewards import tolerance
from pqn_torch.envs.tasks.robot_task import ActionMapping, RobotConfig, RobotTask
from pqn_torch.envs.tasks.robots import (
    add_actuator_force_sensors,
    axis_angle_quaternion,
    load_playground_scene,
    quat_multiply,
    quaternion_to_matrix,
)

SCENE = "manipulation/leap_hand/xmls/scene_mjx_cube.xml"
CTRL_DT, SIM_DT = 0.05, 0.01
CCD_ITERATIONS = 10
CONTACTS_PER_WORLD, NJMAX = 30, 160
HAND_POSE_STD = 0.1
CUBE_START, CUBE_START_RANGE = (0.1, 0.0, 0.05), 0.01
DROP_HEIGHT = -0.05
HIDDEN_GOAL = (-100.0, -100.0, -100.0)
FINGERTIPS = ("th_tip", "if_tip", "mf_tip", "rf_tip")
SUCCESS_THRESHOLD, SUCCESS_REWARD = 0.1, 100.0
GOAL_SPIN_LOW, GOAL_SPIN_HIGH, GOAL_SPIN_DECAY = 1.0, 5.0, 0.8
HAND_LAYOUT = (("joint angles (noisy)", 16),)


HAND_DOFS, HAND_BODIES = slice(0, 16), slice(2, 19)  # the 16 joints; the palm and the 16 finger links
# Domain randomization (randomize=true): MuJoCo Playground 0.2.0's LEAP randomizer, per world. Off by default:
# purejaxql trains the LEAP tasks without it.
LEAP_RANDOMIZATION = (
    Draw("geom_friction", "set", 0.5, 1.0, rows=FINGERTIPS, column=0, shared=True),  # one for the 4 fingertips
    Draw("body_inertia", "scale", 0.8, 1.2, rows="cube", shared=True),  # Playground's "cube mass" draw
    Draw("body_ipos", "add", -5e-3, 5e-3, rows="cube"),  # the cube's centre of mass, m
    Draw("qpos0", "add", -0.05, 0.05, rows=HAND_DOFS),
    Draw("dof_frictionloss", "scale", 0.5, 2.0, rows=HAND_DOFS),
    Draw("dof_armature", "scale", 1.0, 1.05, rows=HAND_DOFS),
    Draw("body_mass", "scale", 0.9, 1.1, rows=HAND_BODIES),
    Draw("actuator_gainprm", "scale", 0.8, 1.2, column=0, also=(("actuator_biasprm", 1),)),  # kp, and -kp
    Draw("dof_damping", "scale", 0.8, 1.2, rows=HAND_DOFS),
)


class LeapCube(RobotTask):
    """What both LEAP cube tasks share: scene, reset, readings, termination (see the module docstring)."""

    sensors = (
        "cube_position",
        "cube_orientation",
        "cube_linvel",
        "cube_angvel",
        "palm_position",
        "cube_goal_orientation",
        *(f"{tip}_position" for tip in FINGERTIPS),
    )
    reward_clip = None
    randomization = LEAP_RANDOMIZATION
    hide_goal: ClassVar[bool] = True

    def build_spec(self) -> mujoco.MjSpec:
        spec = load_playground_scene(SCENE, "leap_hand")
        spec.option.ccd_iterations = CCD_ITERATIONS
        add_actuator_force_sensors(spec)
        if self.config.randomize:  # the cube's centre of mass moves off its frame: MuJoCo must not assume they agree
            spec.body("cube").simple = False
        return spec

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        super().bind(mj_model, device, dtype)
        cube = mj_model.body("cube")
        self.cube_qpos = int(mj_model.jnt_qposadr[cube.jntadr[0]])
        self.cube_body = cube.id
        self.goal_mocap = int(mj_model.body("goal").mocapid[0])
        self.cube_start = self.constant(CUBE_START)
        home = mj_model.keyframe(self.home_keyframe)
        self.goal_start = self.constant(HIDDEN_GOAL if self.hide_goal else home.mpos[:3])

    # ----------------------------------------------------------------- reset
    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        qpos = self.home_qpos.repeat(num, 1)
        hand = self.default_pose + normal(generator, (num, self.default_pose.numel()), HAND_POSE_STD, like=qpos)
        qpos[:, self.joint_qpos] = torch.clamp(hand, self.ctrl_low, self.ctrl_high)
        cube = slice(self.cube_qpos, self.cube_qpos + 3)
        qpos[:, cube] = self.cube_start + uniform(generator, (num, 3), -CUBE_START_RANGE, CUBE_START_RANGE, like=qpos)
        qpos[:, self.cube_qpos + 3 : self.cube_qpos + 7] = uniform_quaternion(generator, num, like=qpos)
        mocap_pos = self.goal_start.repeat(num, 1, 1)
        mocap_quat = qpos.new_zeros(num, 1, 4)
        mocap_quat[..., 0] = 1.0
        if not self.hide_goal:
            mocap_quat[:, self.goal_mocap] = uniform_quaternion(generator, num, like=qpos)
        return StartStates(
            qpos=qpos,
            qvel=physics.qvel.new_zeros(num, physics.qvel.shape[1]),
            mocap_pos=mocap_pos,
            mocap_quat=mocap_quat,
        )

    # ----------------------------------------------------------------- readings
    def palm_to_cube(self, physics: Physics) -> torch.Tensor:
        """Palm site position - cube position [N, 3] (Playground's ``cube_pos_error``)."""
        return self.read(physics, "palm_position") - self.read(physics, "cube_position")

    def fingertips(self, physics: Physics) -> torch.Tensor:
        """Fingertip positions relative to the palm site [N, 12] (thumb, index, middle, ring)."""
        return torch.cat([self.read(physics, f"{tip}_position") for tip in FINGERTIPS], dim=-1)

    def dropped(self, physics: Physics) -> torch.Tensor:
        """Whether the cube fell below the hand (z < -0.05 m), [N] bool."""
        return self.read(physics, "cube_position")[:, 2] < DROP_HEIGHT


@register
class LeapCubeRotateZAxis(LeapCube):
    """Spin the cube about the world z-axis without dropping it (see the module docstring)."""

    name = "LeapCubeRotateZAxis"
    default_config = RobotConfig(
        CTRL_DT, SIM_DT, episode_length=500, contacts_per_world=CONTACTS_PER_WORLD, njmax=NJMAX
    )
    action_mapping = ActionMapping(scale=0.6, reference="home")
    noise_scales: ClassVar[dict[str, float]] = {"joint_pos": 0.05}
    reward_scales: ClassVar[dict[str, float]] = {"angvel": 1.0, "termination": -100.0}
    observation_layout = (*HAND_LAYOUT, ("last action", 16))

    def transition(
        self, physics: Physics, action: torch.Tensor, state: TaskState, generator: torch.Generator
    ) -> Transition:
        terminated = self.dropped(physics)
        reward, shares = self.total_reward(self.reward_terms(physics, terminated))
        obs, critic_obs = self.observe(physics, state, generator)  # with the action before this one, as Playground
        self.remember_action(state, action)
        return Transition(reward=reward, obs=obs, critic_obs=critic_obs, terminated=terminated, reward_terms=shares)

    def reward_terms(self, physics: Physics, terminated: torch.Tensor) -> dict[str, torch.Tensor]:
        """Unscaled: the cube's angular velocity about the world z-axis; 1 on the step that drops the cube."""
        angvel = self.read(physics, "cube_angvel")[:, 2]
        return {"angvel": angvel, "termination": terms.termination(terminated, like=angvel)}

    def observe(
        self, physics: Physics, state: TaskState, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        angles, velocities = self.joints(physics)
        obs = torch.cat([self.noise(generator, angles, "joint_pos"), state["last_act"]], dim=-1)
        critic_obs = torch.cat(
            [
                obs,
                angles,
                velocities,
                self.actuator_force(physics),
                self.fingertips(physics),
                self.palm_to_cube(physics),
                self.read(physics, "cube_orientation"),
                self.read(physics, "cube_angvel"),
                self.read(physics, "cube_linvel"),
            ],
            dim=-1,
        )
        return obs, critic_obs


@dataclass
class LeapReorientConfig(RobotConfig):
    """``ema_alpha``: weight of the new position targets in the controls' moving average (1 = no filter)."""

    ema_alpha: float = 1.0


@register
class LeapCubeReorient(LeapCube):
    """Turn the cube to a goal orientation that moves on after each success (see the module docstring)."""

    name = "LeapCubeReorient"
    default_config = LeapReorientConfig(
        CTRL_DT, SIM_DT, episode_length=1000, contacts_per_world=CONTACTS_PER_WORLD, njmax=NJMAX
    )
    config: LeapReorientConfig
    action_mapping = ActionMapping(scale=0.5, reference="ctrl", clip=True)
    noise_scales: ClassVar[dict[str, float]] = {"joint_pos": 0.05, "cube_pos": 0.02, "cube_ori": 0.1}
    reward_scales: ClassVar[dict[str, float]] = {
        "orientation": 5.0,
        "position": 0.5,
        "termination": -100.0,
        "hand_pose": -0.5,
        "action_rate": -0.001,
        "energy": -0.001,
    }
    remembered_actions = 2
    hide_goal = False
    observation_layout = (
        *HAND_LAYOUT,
        ("joint angles (noisy) - ctrl", 16),
        ("palm - cube position (noisy cube)", 3),
        ("rotation matrix of cube (noisy) x goal^-1, rows 2-3", 6),
        ("last action", 16),
    )

    def __init__(self, **overrides) -> None:
        super().__init__(**overrides)
        if not 0 < self.config.ema_alpha <= 1:
            raise ValueError(f"ema_alpha must be in (0, 1] (1 = no filter), got {self.config.ema_alpha!r}")
        self.reward_term_names = (*self.reward_term_names, "success")

    def control_mapping(self) -> ControlMapping:
        if self.config.ema_alpha != 1:
            raise ValueError(
                f"task {self.name}: an exported policy's metadata cannot describe ema_alpha={self.config.ema_alpha} "
                "(its formulas have no moving average); export a policy trained with ema_alpha=1"
            )
        return super().control_mapping()

    def initial_state(self, generator: torch.Generator, num: int, physics: Physics) -> TaskState:
        state = super().initial_state(generator, num, physics)
        state["goal_quat_dquat"] = physics.qpos.new_zeros(num, 3)
        return state

    # ----------------------------------------------------------------- step
    def control(self, physics: Physics, action: torch.Tensor, state: TaskState, generator: torch.Generator) -> None:
        """``ctrl = a * clip(ctrl + 0.5 action) + (1 - a) * ctrl`` (``a`` = ``ema_alpha``), in place."""
        targets = torch.clamp(self.motor_targets(physics, action), self.ctrl_low, self.ctrl_high)
        physics.ctrl.lerp_(targets, self.config.ema_alpha)

    def transition(
        self, physics: Physics, action: torch.Tensor, state: TaskState, generator: torch.Generator
    ) -> Transition:
        terminated = self.dropped(physics)
        success = orientation_error(self.read(physics, "cube_orientation"), self.goal(physics)) < SUCCESS_THRESHOLD
        reward, shares = self.total_reward(self.reward_terms(physics, action, state, terminated))
        obs, critic_obs = self.observe(physics, state, generator)  # with the action before this one, as Playground
        self.remember_action(state, action)
        shares["success"] = SUCCESS_REWARD * success.to(reward.dtype)
        self.turn_goal(physics, state, success, generator)
        return Transition(
            reward=reward + shares["success"],
            obs=obs,
            critic_obs=critic_obs,
            terminated=terminated,
            reward_terms=shares,
        )

    def goal(self, physics: Physics) -> torch.Tensor:
        """The goal orientation [N, 4] in effect during the last physics step (its sensor)."""
        return self.read(physics, "cube_goal_orientation")

    def turn_goal(self, physics: Physics, state: TaskState, success: torch.Tensor, generator: torch.Generator) -> None:
        """After a success the goal spins at U(1, 5) rad/s per axis; the spin decays by 0.8 per step and turns the
        goal by ``2 dt |w|`` about ``w`` (body frame) each step, written to the mocap body for the next step."""
        spin = uniform(generator, (physics.num_worlds, 3), GOAL_SPIN_LOW, GOAL_SPIN_HIGH, like=state["goal_quat_dquat"])
        dquat = state["goal_quat_dquat"]
        dquat.copy_(torch.where(success.unsqueeze(-1), spin, GOAL_SPIN_DECAY * dquat))
        goal = physics.mocap_quat[:, self.goal_mocap]
        turned = quat_multiply(goal, spin_quaternion(dquat, 2 * self.dt))
        physics.mocap_quat[:, self.goal_mocap] = turned / torch.linalg.vector_norm(turned, dim=-1, keepdim=True)

    def reward_terms(
        self, physics: Physics, action: torch.Tensor, state: TaskState, terminated: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Playground's unscaled terms [N]: orientation ``tolerance(err, (0, 0.2), margin pi, linear)``; position
        ``tolerance(|palm - cube|, (0, 0.02), margin 0.05, linear)``; termination; hand_pose ``|q - q0|^2``;
        action_rate ``|a - a1|^2 + |a - 2 a1 + a2|^2``; energy ``sum |qd| |tau|``."""
        error = orientation_error(self.read(physics, "cube_orientation"), self.goal(physics))
        distance = torch.linalg.vector_norm(self.palm_to_cube(physics), dim=-1)
        angles, velocities = self.joints(physics)
        return {
            "orientation": tolerance(error, (0.0, 0.2), margin=math.pi, sigmoid="linear"),
            "position": tolerance(distance, (0.0, 0.02), margin=0.05, sigmoid="linear"),
            "termination": terms.termination(terminated, like=error),
            "hand_pose": ((angles - self.default_pose) ** 2).sum(-1),
            "action_rate": terms.action_rate(action, state["last_act"], state["last_last_act"]),
            "energy": terms.energy(velocities, self.actuator_force(physics)),
        }

    def observe(
        self, physics: Physics, state: TaskState, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        angles, velocities = self.joints(physics)
        noisy_angles = self.noise(generator, angles, "joint_pos")
        cube_quat, goal = self.read(physics, "cube_orientation"), self.goal(physics)
        noisy_cube = self.noise(generator, self.read(physics, "cube_position"), "cube_pos")
        ori_noise = normal(
            generator,
            tuple(cube_quat.shape),
            self.config.obs_noise_level * self.noise_scales["cube_ori"],
            like=cube_quat,
        )
        noisy_quat = cube_quat + ori_noise
        noisy_quat = noisy_quat / torch.linalg.vector_norm(noisy_quat, dim=-1, keepdim=True)
        obs = torch.cat(
            [
                noisy_angles,
                noisy_angles - physics.ctrl,
                self.read(physics, "palm_position") - noisy_cube,
                rotation_rows_2_3(noisy_quat, goal),
                state["last_act"],
            ],
            dim=-1,
        )
        pert = physics.xfrc_applied[:, self.cube_body]
        critic_obs = torch.cat(
            [
                obs,
                angles,
                velocities,
                self.fingertips(physics),
                self.palm_to_cube(physics),
                rotation_rows_2_3(cube_quat, goal),
                self.read(physics, "cube_linvel"),
                self.read(physics, "cube_angvel"),
                torch.zeros_like(pert),  # perturbation direction
                pert,
            ],
            dim=-1,
        )
        return obs, critic_obs


def uniform_quaternion(generator: torch.Generator, num: int, like: torch.Tensor) -> torch.Tensor:
    """[num, 4] orientations uniform over SO(3) (Shoemake's method, as Playground's ``uniform_quat``)."""
    u, v, w = uniform(generator, (3, num), 0.0, 1.0, like=like)
    return torch.stack(
        [
            torch.sqrt(1 - u) * torch.sin(2 * math.pi * v),
            torch.sqrt(1 - u) * torch.cos(2 * math.pi * v),
            torch.sqrt(u) * torch.sin(2 * math.pi * w),
            torch.sqrt(u) * torch.cos(2 * math.pi * w),
        ],
        dim=-1,
    )


def quat_conjugate(quat: torch.Tensor) -> torch.Tensor:
    """``[w, -x, -y, -z]``: the inverse of a unit quaternion."""
    return torch.cat([quat[..., :1], -quat[..., 1:]], dim=-1)


def orientation_error(quat: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
    """Angle [N] of the rotation ``q goal^-1``: ``2 asin(min(|vec(q goal^-1)|, 1))`` (normalized first)."""
    difference = quat_multiply(quat, quat_conjugate(goal))
    difference = difference / torch.linalg.vector_norm(difference, dim=-1, keepdim=True)
    return 2 * torch.asin(torch.linalg.vector_norm(difference[:, 1:], dim=-1).clamp(max=1.0))


def rotation_rows_2_3(quat: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
    """Rows 2 and 3 of the rotation matrix of ``q goal^-1``, flattened [N, 6] (Playground's ``xmat.ravel()[3:]``)."""
    return quaternion_to_matrix(quat_multiply(quat, quat_conjugate(goal)))[:, 1:].flatten(1)


def spin_quaternion(velocity: torch.Tensor, dt: float) -> torch.Tensor:
    """The turn [N, 4] by angular velocity ``velocity`` [N, 3] for ``dt`` seconds (identity where it is 0)."""
    speed = torch.linalg.vector_norm(velocity, dim=-1)
    axis = velocity / torch.where(speed > 0, speed, torch.ones_like(speed)).unsqueeze(-1)
    return axis_angle_quaternion(axis, speed * dt)

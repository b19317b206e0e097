"""Franka Emika Panda with a Robotiq 2F-85 gripper: PandaRobotiqPushCube (MuJoCo Playground 0.2.0 semantics).

Model: Playground's ``scene_panda_robotiq_cube.xml`` (a 15 x 23 x 10 cm box on the floor in front of the arm,
a wall behind it, a visual-only mocap target) around Playground's ``panda_updated_robotiq_2f85.xml`` (a Panda
arm driven by motors, with a Robotiq FT-300 wrist sensor and 2F-85 gripper; third-party model data, see
``pqn_torch/third_party/playground/NOTICE``), visual meshes dropped; the scene's solver settings (Newton,
10 iterations, implicitfast, no Euler damping) and Playground's ``ccd_iterations = 10``. Two bodies, the
wrist sensor's ``base_mount`` and ``fts300_sensor_body``, take their mass from their visual meshes; they get
explicit inertials with the values MuJoCo computes from those meshes (:data:`MESH_INERTIALS`), so the model
without meshes has the dynamics of the model with them. Physics and control at 5 ms; each agent step repeats
the action for 4 control steps (``action_repeat``, rewards summed); episodes of 750 agent steps (3000 control
steps, 15 s). Added sensors: position and axes of the gripper site, position and quaternion of the box.

- Control (7 actions in [-1, 1], torque control): every control step pushes the action into a 5-step history
  (task state ``action_history``) and applies the one 1 or 2 steps old (drawn each step): ``ctrl = clip(0.1 *
  action, -8 / gear, 8 / gear)`` for the 7 arm motors (gear 150 on joints 1-4, 20 on 5-7: at most 8 Nm), the
  gripper actuator held closed at 0.82.
- Reset: the home keyframe's arm with each joint moved by 0.3 * U(f * low, f * high) of its range (f = 0.2 for
  joints 1-4, 0.3 for 5-7); the box at its home position moved by U(+-0.06) in x and U(+-0.15) in y, turned
  by U(0, 360 deg) about z; the target (mocap body ``mocap_target``) at the box's home position moved by
  U(+-0.02, +-0.05, +-0.005), turned from the box by U(0, 45 deg) about z; positions clipped to
  x in [0.4, 0.65], y in [-0.2, 0.2], z in [-0.005, 0.04].
- Observation (48; the critic's the same): one frame of an observation history (task state ``obs_history``,
  30 frames, one per control step) 6 to 11 control steps old, drawn each step (:data:`FRAME_LAYOUT`). A
  frame: the target's position and rotation matrix rows 2-3, the last applied (delayed) action, the arm's
  joint angles and velocities, the gripper's position and rotation matrix rows 2-3, the box's rotation
  matrix rows 2-3 and position; with Playground's noise (times ``obs_noise_level``): U(0, 0.1) added to all
  joint angles and U(0, 0.1) to all joint velocities (one draw per world each), U(0, 0.02) to the gripper
  position's three coordinates, the box turned by U(0, 7.5 deg) and the gripper by U(0, 5 deg) about random
  directions, the box position moved by U(+-0.015) per axis.
- Reward, ``dt`` (5 ms) times: the weighted mean of 9 shaped terms (:meth:`PandaRobotiqPushCube.reward_terms`,
  weights :data:`REWARD_WEIGHTS` over their sum 21.55) - 50 on termination + 3 per step with the box within
  3 cm and 10 deg of the target + 500 on success (the box held there for 30 steps, counted in task state
  ``success_step_count``); the reward terms reported are these parts.
- Success moves the target within the episode: to a new position drawn as at reset with a spread that grows
  with the successes of the episode (task state ``curriculum_id``: +-0.05, 0.05, 0.1, 0.2, 0.2 m in y, 0.4
  times that in x) and turned from the box by up to 45, 45, 90, 135, 180 deg.
- Termination: the box out of the workspace (x outside [0.3, 0.75], y outside [-0.5, 0.7], z < -0.01), the
  gripper out of it (x, y likewise, z > 0.5), a finger pad or the hand touching the wall or the floor, an arm
  joint beyond 0.9 times a limit.

Task state (``env.task_state``): ``action_history`` [N, 5, 7] (newest first), ``delayed_action`` [N, 7] (the
action this control step applies), ``last_action`` [N, 7] (the one the previous step applied), ``obs_history``
[N, 30, 48] (newest first), ``success_step_count`` and ``curriculum_id`` [N] (int64).

Deviations from Playground (its training wrapper replays each world's first state and keeps ``state.info``
across episodes): every episode starts with fresh task state here (no action yet, the curriculum at its
first level) and an observation history filled with its first frame, where Playground's first episode sees
zeros for its first 6 to 11 steps and later ones the previous episode's frames. Its reset computes no
kinematics, so its first frame holds zeros for the gripper and box poses; here it holds their values. Its
in-episode target draw uses one random key for the position and the turn; here they are independent draws.

Kept from Playground: the home keyframe holds the gripper just above the box's home position, so about a
quarter of the start states (16 of 64 measured) put the fingers into the box; the contact then throws the arm
up, and without a counter-torque such an episode ends within about 200 control steps (the gripper above 0.5 m).
"""

from __future__ import annotations

import math
from typing import ClassVar

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics, sensor_slice
from pqn_torch.envs.tasks.base import ControlMapping, StartStates, TaskState, Transition
from pqn_torch.envs.tasks.common import model_mocap_positions, normal, uniform
from pqn_torch.envs.tasks.registry import register
from pqn_torch.envs.tasks.rewards import tolerance
from pqn_torch.envs.tasks.robot_task import RobotConfig, RobotTask
from pqn_torch.envs.tasks.robots import load_playground_scene, quat_multiply, yaw_quaternion

SCENE = "manipulation/franka_emika_panda_robotiq/xmls/scene_panda_robotiq_cube.xml"
MENAGERIE_ROBOTS = ("franka_emika_panda", "robotiq_2f85_v4")
ARM_JOINTS = 7
GEAR = (150.0, 150.0, 150.0, 150.0, 20.0, 20.0, 20.0)
MAX_TORQUE = 8.0
ACTION_SCALE = 0.1
GRIPPER_CLOSED = 0.82
ACTION_HISTORY, ACTION_DELAYS = 5, (1, 2)  # control steps
OBS_HISTORY, OBS_DELAYS = 30, (6, 11)
START_SPREAD = (0.2, 0.2, 0.2, 0.2, 0.3, 0.3, 0.3)  # of each joint's limits, times START_SCALE
START_SCALE = 0.3
BOX_SPREAD, TARGET_SPREAD = 0.15, 0.05  # y spread of the reset draws; x: 0.4 times it; z: +-0.005
SAMPLE_LOW, SAMPLE_HIGH = (0.4, -0.2, -0.005), (0.65, 0.2, 0.04)
TARGET_MAX_TURN = math.radians(45.0)
CURRICULUM_SPREAD = (0.05, 0.05, 0.1, 0.2, 0.2)
CURRICULUM_TURN = tuple(math.radians(angle) for angle in (45.0, 45.0, 90.0, 135.0, 180.0))
WORKSPACE_LOW, WORKSPACE_HIGH = (0.3, -0.5, 0.0), (0.75, 0.7, 0.5)
BOX_LOWEST = -0.01
LIMIT_FRACTION = 0.9  # of the joint limits (termination) and of the joint speed limits (joint_vel_limit)
JOINT_SPEED_LIMITS = (2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61)
SUCCESS_DISTANCE, SUCCESS_ANGLE, SUCCESS_STEPS = 0.03, math.radians(10.0), 30
REWARD_WEIGHTS = {
    "gripper_box": 2.0,
    "box_target": 8.0,
    "box_orientation": 6.0,
    "gripper_collision_side": 1.0,
    "robot_target_qpos": 0.75,
    "joint_vel": 1.0,
    "joint_vel_limit": 3.0,
    "total_command": -0.1,
    "action_rate": -0.1,
}
"""Playground's reward scales of the shaped terms; the reward takes their sum divided by the scales' sum."""
EVENT_REWARDS = {"termination": -50.0, "success_wait": 3.0, "success": 500.0}
NOISE = {
    "obj_pos": 0.015,
    "obj_angle": math.radians(7.5),
    "robot_qpos": 0.1,
    "robot_qvel": 0.1,
    "eef_pos": 0.02,
    "eef_angle": math.radians(5.0),
}
GRIPPER_GEOMS = (
    "left_coupler_col_1",
    "left_coupler_col_2",
    "left_follower_pad2",
    "right_coupler_col_1",
    "right_coupler_col_2",
    "right_follower_pad2",
)
HAND_GEOMS = ("left_finger_pad", "right_finger_pad", "hand_capsule")
MESH_INERTIALS = {
    "base_mount": {
        "mass": 0.06582648376132798,
        "ipos": (0.00016773895234440983, 0.0005004571502997967, 0.003879623967364275),
        "iquat": (-0.0017031861640146029, 0.7069976193183161, -0.004311596610626356, 0.7072007321615237),
        "inertia": (4.127188608264591e-05, 2.2103664247693594e-05, 2.1029870856631455e-05),
    },
    "fts300_sensor_body": {
        "mass": 0.08684233046785128,
        "ipos": (-0.00011983721168116177, 1.3080537094699006e-06, -0.010485288029402039),
        "iquat": (0.0010231299981778297, 0.7079054087516711, -0.001004454967950763, 0.7063057953431773),
        "inertia": (5.3627386883750697e-05, 2.9216174943632117e-05, 2.899544801158965e-05),
    },
}
"""Body frame inertials MuJoCo 4.0 computes (``inertia="legacy"``, density 1000) from the Robotiq FT-300 coupling
and top meshes the two bodies' only geoms use (ROS-Industrial's meshes, which Menagerie's ``robotiq_2f85_v4``
ships): with them the model without meshes has the model's masses and inertias."""
FRAME_LAYOUT = (
    ("target position", 3),
    ("target rotation matrix, rows 2-3", 6),
    ("last applied action (delayed)", 7),
    ("arm joint angles (noisy)", 7),
    ("arm joint velocities (noisy)", 7),
    ("gripper position (noisy)", 3),
    ("gripper rotation matrix, rows 2-3 (noisy)", 6),
    ("box rotation matrix, rows 2-3 (noisy)", 6),
    ("box position (noisy)", 3),
)
FRAME_SIZE = sum(size for _, size in FRAME_LAYOUT)


@register
class PandaRobotiqPushCube(RobotTask):
    """Push the box to the target position and orientation (see the module docstring)."""

    name = "PandaRobotiqPushCube"
    default_config = RobotConfig(
        ctrl_dt=0.005, sim_dt=0.005, episode_length=750, action_repeat=4, contacts_per_world=32, njmax=256
    )
    action_size = ARM_JOINTS
    sensors = ("gripper_pos", "gripper_xaxis", "gripper_yaxis", "gripper_zaxis", "box_pos", "box_quat")
    noise_scales: ClassVar[dict[str, float]] = NOISE
    reward_scales = {
        **{name: weight / sum(REWARD_WEIGHTS.values()) for name, weight in REWARD_WEIGHTS.items()},
        **EVENT_REWARDS,
    }
    reward_clip = None
    observation_layout = tuple(
        (f"{name}, {OBS_DELAYS[0]}-{OBS_DELAYS[1]} steps old", size) for name, size in FRAME_LAYOUT
    )

    def build_spec(self) -> mujoco.MjSpec:
        spec = load_playground_scene(SCENE, MENAGERIE_ROBOTS)
        spec.option.ccd_iterations = 10
        for body_name, inertial in MESH_INERTIALS.items():
            body = spec.body(body_name)
            body.explicitinertial = True
            body.mass, body.ipos, body.iquat = inertial["mass"], inertial["ipos"], inertial["iquat"]
            body.inertia = inertial["inertia"]
        site, box = mujoco.mjtObj.mjOBJ_SITE, mujoco.mjtObj.mjOBJ_XBODY
        frames = (
            ("gripper_pos", mujoco.mjtSensor.mjSENS_FRAMEPOS, site, "gripper"),
            ("gripper_xaxis", mujoco.mjtSensor.mjSENS_FRAMEXAXIS, site, "gripper"),
            ("gripper_yaxis", mujoco.mjtSensor.mjSENS_FRAMEYAXIS, site, "gripper"),
            ("gripper_zaxis", mujoco.mjtSensor.mjSENS_FRAMEZAXIS, site, "gripper"),
            ("box_pos", mujoco.mjtSensor.mjSENS_FRAMEPOS, box, "box"),
            ("box_quat", mujoco.mjtSensor.mjSENS_FRAMEQUAT, box, "box"),
        )
        for name, sensor_type, objtype, objname in frames:
            spec.add_sensor(name=name, type=sensor_type, objtype=objtype, objname=objname)
        return spec

    def control_mapping(self) -> ControlMapping:
        return ControlMapping("motor_torque", ACTION_SCALE, default_pose_keyframe=self.home_keyframe)

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        super().bind(mj_model, device, dtype)
        self.box_qpos = int(mj_model.joint(mj_model.body("box").jntadr[0]).qposadr[0])
        self.box_home = self.home_qpos[self.box_qpos : self.box_qpos + 3]
        self.target_mocap = int(mj_model.body("mocap_target").mocapid[0])
        self.mocap_start = model_mocap_positions(mj_model)
        self.home_ctrl = self.constant(mj_model.keyframe(self.home_keyframe).ctrl)
        self.torque_limit = self.constant(tuple(MAX_TORQUE / gear for gear in GEAR))
        low, high = (limits[:ARM_JOINTS] for limits in self.joint_range)
        spread = torch.tensor(START_SPREAD, dtype=torch.float64)
        self.start_low, self.start_high = self.constant(low * spread), self.constant(high * spread)
        self.limit_low, self.limit_high = self.constant(LIMIT_FRACTION * low), self.constant(LIMIT_FRACTION * high)
        self.speed_limit = self.constant(tuple(LIMIT_FRACTION * limit for limit in JOINT_SPEED_LIMITS))
        self.sample_low, self.sample_high = self.constant(SAMPLE_LOW), self.constant(SAMPLE_HIGH)
        self.spread_axes, self.height_spread = self.constant((0.4, 1.0, 0.0)), self.constant((0.0, 0.0, 0.005))
        self.conjugation = self.constant((1.0, -1.0, -1.0, -1.0))
        self.curriculum_spread, self.curriculum_turn = self.constant(CURRICULUM_SPREAD), self.constant(CURRICULUM_TURN)
        self.workspace_low, self.workspace_high = self.constant(WORKSPACE_LOW), self.constant(WORKSPACE_HIGH)
        self._box_normals = [sensor_slice(mj_model, f"{geom}_box_normal") for geom in GRIPPER_GEOMS]
        found = [
            [sensor_slice(mj_model, f"{where}_{geom}_found").start for geom in HAND_GEOMS]
            for where in ("wall", "floor")
        ]
        self._wall_found, self._floor_found = (torch.tensor(columns, device=device) for columns in found)

    # ----------------------------------------------------------------- reset
    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        qpos = self.home_qpos.repeat(num, 1)
        qpos[:, :ARM_JOINTS] += START_SCALE * uniform(
            generator, (num, ARM_JOINTS), self.start_low, self.start_high, like=qpos
        )
        box = self.box_qpos
        qpos[:, box : box + 2] = self.random_position(generator, num, BOX_SPREAD)[:, :2]
        box_quat = yaw_quaternion(uniform(generator, (num,), 0.0, 2 * math.pi, like=qpos))
        qpos[:, box + 3 : box + 7] = box_quat
        mocap_pos = self.mocap_start.to(qpos).repeat(num, 1, 1)
        mocap_pos[:, self.target_mocap] = self.random_position(generator, num, TARGET_SPREAD)
        mocap_quat = torch.zeros(num, mocap_pos.shape[1], 4, dtype=qpos.dtype, device=qpos.device)
        mocap_quat[..., 0] = 1.0
        turn = yaw_quaternion(uniform(generator, (num,), 0.0, TARGET_MAX_TURN, like=qpos))
        mocap_quat[:, self.target_mocap] = quat_multiply(box_quat, turn)
        qvel = physics.qvel.new_zeros(num, physics.qvel.shape[1])
        return StartStates(qpos=qpos, qvel=qvel, mocap_pos=mocap_pos, mocap_quat=mocap_quat)

    def random_position(self, generator: torch.Generator, num: int, spread: torch.Tensor | float) -> torch.Tensor:
        """[num, 3] positions about the box's home position: U(+-0.4 spread), U(+-spread), U(+-0.005), clipped to
        the sampling box (``spread``: a number or one per world)."""
        spread = spread.unsqueeze(-1) if isinstance(spread, torch.Tensor) else spread
        half_width = self.spread_axes * spread + self.height_spread
        offset = uniform(generator, (num, 3), -1.0, 1.0, like=self.box_home) * half_width
        return torch.clamp(self.box_home + offset, self.sample_low, self.sample_high)

    def start_ctrl(self, qpos: torch.Tensor) -> torch.Tensor:
        """The home keyframe's ctrl: no arm torque, the gripper closed."""
        return self.home_ctrl.repeat(qpos.shape[0], 1)

    def initial_state(self, generator: torch.Generator, num: int, physics: Physics) -> TaskState:
        zeros = physics.qpos.new_zeros
        return {
            "action_history": zeros(num, ACTION_HISTORY, ARM_JOINTS),
            "delayed_action": zeros(num, ARM_JOINTS),
            "last_action": zeros(num, ARM_JOINTS),
            "obs_history": zeros(num, OBS_HISTORY, FRAME_SIZE),
            "success_step_count": zeros(num, dtype=torch.int64),
            "curriculum_id": zeros(num, dtype=torch.int64),
        }

    def after_reset(self, physics: Physics, state: TaskState, reset: torch.Tensor, generator: torch.Generator) -> None:
        """The observation history of a reset world starts filled with its first frame."""
        seeded = self.frame(physics, state, generator).unsqueeze(1).expand(-1, OBS_HISTORY, -1)
        history = state["obs_history"]
        history.copy_(torch.where(reset.view(-1, 1, 1), seeded, history))

    # ----------------------------------------------------------------- step
    def control(self, physics: Physics, action: torch.Tensor, state: TaskState, generator: torch.Generator) -> None:
        """Push ``action`` into the history, apply the one 1 or 2 control steps old as arm torques."""
        delayed = push_and_pick(state["action_history"], action, ACTION_DELAYS, generator)
        state["delayed_action"].copy_(delayed)
        torque = torch.clamp(ACTION_SCALE * delayed, -self.torque_limit, self.torque_limit)
        gripper = torch.full_like(torque[:, :1], GRIPPER_CLOSED)
        physics.ctrl.copy_(torch.clamp(torch.cat([torque, gripper], dim=-1), self.ctrl_low, self.ctrl_high))

    def transition(
        self, physics: Physics, action: torch.Tensor, state: TaskState, generator: torch.Generator
    ) -> Transition:
        terms = self.reward_terms(physics, action, state)
        terminated = self.failed(physics)
        success, near_target = self.count_success(physics, state)
        terms.update(termination=terminated.to(action.dtype), success_wait=near_target.to(action.dtype))
        terms["success"] = success.to(action.dtype)
        reward, shares = self.total_reward(terms)
        self.move_target(physics, state, success, generator)
        obs = push_and_pick(state["obs_history"], self.frame(physics, state, generator), OBS_DELAYS, generator)
        state["last_action"].copy_(state["delayed_action"])
        return Transition(reward=reward, obs=obs, critic_obs=obs, terminated=terminated, reward_terms=shares)

    def observe(
        self, physics: Physics, state: TaskState, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """At a reset: the newest frame of the history (the first frame)."""
        obs = state["obs_history"][:, 0]
        return obs, obs

    # ----------------------------------------------------------------- readings
    def target(self, physics: Physics) -> tuple[torch.Tensor, torch.Tensor]:
        """The target's position [N, 3] and quaternion [N, 4]."""
        return physics.mocap_pos[:, self.target_mocap], physics.mocap_quat[:, self.target_mocap]

    def orientation_error(self, physics: Physics) -> torch.Tensor:
        """Angle [N] of the turn from the target's orientation to the box's."""
        _, target_quat = self.target(physics)
        difference = normalized(quat_multiply(self.read(physics, "box_quat"), target_quat * self.conjugation))
        return 2 * torch.asin(torch.linalg.vector_norm(difference[:, 1:], dim=-1).clamp(max=1.0))

    def gripper_rotation(self, physics: Physics) -> torch.Tensor:
        """The gripper site's rotation matrix [N, 3, 3] (its axes are the columns)."""
        axes = [self.read(physics, f"gripper_{axis}") for axis in ("xaxis", "yaxis", "zaxis")]
        return torch.stack(axes, dim=-1)

    def found(self, physics: Physics, columns: torch.Tensor) -> torch.Tensor:
        """Whether any of the contact sensors in ``columns`` found a contact, [N] bool."""
        return (physics.sensordata[:, columns] > 0).any(dim=-1)

    def failed(self, physics: Physics) -> torch.Tensor:
        """Termination [N] bool: box or gripper out of the workspace, hand at the wall or floor, an arm joint
        beyond 0.9 times a limit."""
        box, gripper = self.read(physics, "box_pos"), self.read(physics, "gripper_pos")
        low, high = self.workspace_low[:2], self.workspace_high[:2]
        box_out = ((box[:, :2] < low) | (box[:, :2] > high)).any(dim=-1) | (box[:, 2] < BOX_LOWEST)
        gripper_out = ((gripper[:, :2] < low) | (gripper[:, :2] > high)).any(dim=-1)
        gripper_out |= gripper[:, 2] > self.workspace_high[2]
        arm, _ = self.joints(physics)
        arm = arm[:, :ARM_JOINTS]
        near_limits = ((arm > self.limit_high) | (arm < self.limit_low)).any(dim=-1)
        touching = self.found(physics, self._wall_found) | self.found(physics, self._floor_found)
        return box_out | gripper_out | near_limits | touching

    def reward_terms(self, physics: Physics, action: torch.Tensor, state: TaskState) -> dict[str, torch.Tensor]:
        """Playground's shaped terms [N] (``tol``: dm_control's tolerance, value 0.1 at the margin):

        - gripper_box: ``tol(|p - gripper|, (0, 0.1), margin 1, linear)``, p 0.1 m beyond the box on the side away
          from the target (the box itself when it is within 1 mm of the target);
        - box_target: ``tol(|box_xy - target_xy|, (0, 0.005), margin 0.4, reciprocal)``;
        - box_orientation: ``tol(angle between box and target, (0, 0.2), margin pi, reciprocal)``;
        - gripper_collision_side: ``|z x n|``, n the mean of the gripper-box contact normals, normalized (0 on no
          contact or a contact from above, 1 from the side);
        - robot_target_qpos: ``tol(|q_arm - q_home|, (0, 0.5), margin 4.5, linear)``;
        - joint_vel: ``tol(|qd_arm|, (0, 0.5), margin 2, reciprocal)``;
        - joint_vel_limit: 1 unless an arm joint moves faster than 0.9 times its speed limit;
        - total_command: ``|action|`` (the policy's, not delayed); action_rate: ``|action - last applied action|``.
        """
        target_pos, _ = self.target(physics)
        box = self.read(physics, "box_pos")
        away = box - target_pos
        distance = torch.linalg.vector_norm(away, dim=-1, keepdim=True)
        beyond = box + normalized(away) * 0.1 * (distance > 1e-3)
        gripper_distance = torch.linalg.vector_norm(beyond - self.read(physics, "gripper_pos"), dim=-1)
        box_distance = torch.linalg.vector_norm(box[:, :2] - target_pos[:, :2], dim=-1)
        normals = torch.stack([physics.sensordata[:, columns] for columns in self._box_normals]).mean(dim=0)
        normal = normalized(normals)
        side = torch.linalg.vector_norm(normal[:, :2], dim=-1)  # |z x n| = |(-n_y, n_x, 0)|
        arm, speed = (values[:, :ARM_JOINTS] for values in self.joints(physics))
        pose_error = torch.linalg.vector_norm(arm - self.default_pose[:ARM_JOINTS], dim=-1)
        too_fast = (speed.abs() > self.speed_limit).any(dim=-1)
        return {
            "gripper_box": tolerance(gripper_distance, (0.0, 0.1), margin=1.0, sigmoid="linear"),
            "box_target": tolerance(box_distance, (0.0, 0.005), margin=0.4, sigmoid="reciprocal"),
            "box_orientation": tolerance(self.orientation_error(physics), (0.0, 0.2), math.pi, "reciprocal"),
            "gripper_collision_side": side,
            "robot_target_qpos": tolerance(pose_error, (0.0, 0.5), margin=4.5, sigmoid="linear"),
            "joint_vel": tolerance(torch.linalg.vector_norm(speed, dim=-1), (0.0, 0.5), 2.0, "reciprocal"),
            "joint_vel_limit": (~too_fast).to(arm.dtype),
            "total_command": torch.linalg.vector_norm(action, dim=-1),
            "action_rate": torch.linalg.vector_norm(action - state["last_action"], dim=-1),
        }

    def count_success(self, physics: Physics, state: TaskState) -> tuple[torch.Tensor, torch.Tensor]:
        """(success, near target) [N] bool: near = the box within 3 cm and 10 deg of the target; success = near
        after 30 steps near in a row. ``success_step_count`` counts those steps, restarting at 0 on success."""
        target_pos, _ = self.target(physics)
        close = torch.linalg.vector_norm(target_pos - self.read(physics, "box_pos"), dim=-1) < SUCCESS_DISTANCE
        near = close & (self.orientation_error(physics) < SUCCESS_ANGLE)
        count = state["success_step_count"]
        success = near & (count >= SUCCESS_STEPS)
        count.copy_(torch.where(near & ~success, count + 1, 0))
        return success, near

    def move_target(
        self, physics: Physics, state: TaskState, success: torch.Tensor, generator: torch.Generator
    ) -> None:
        """Where ``success``: advance the curriculum and draw the next target (see the module docstring)."""
        level = state["curriculum_id"]
        level.add_(success.long())
        capped = level.clamp(max=len(CURRICULUM_SPREAD) - 1)
        num = physics.num_worlds
        position = self.random_position(generator, num, self.curriculum_spread[capped])
        angle = uniform(generator, (num,), 0.0, 1.0, like=position) * self.curriculum_turn[capped]
        turned = quat_multiply(self.read(physics, "box_quat"), yaw_quaternion(angle))
        target_pos, target_quat = self.target(physics)
        moved = success.unsqueeze(-1)
        target_pos.copy_(torch.where(moved, position, target_pos))
        target_quat.copy_(torch.where(moved, turned, target_quat))

    def frame(self, physics: Physics, state: TaskState, generator: torch.Generator) -> torch.Tensor:
        """One observation frame [N, 48] (:data:`FRAME_LAYOUT`) with Playground's noise."""
        level, num = self.config.obs_noise_level, physics.num_worlds
        like = physics.qpos
        target_pos, target_quat = self.target(physics)
        box_angle = uniform(generator, (num,), 0.0, level * NOISE["obj_angle"], like=like)
        box_turn = axis_angle_quaternion(random_direction(generator, num, like), box_angle)
        box_rotation = quaternion_to_matrix(quat_multiply(box_turn, self.read(physics, "box_quat")))
        box_noise = uniform(generator, (num, 3), -1.0, 1.0, like=like) * (level * NOISE["obj_pos"])
        arm, speed = (values[:, :ARM_JOINTS] for values in self.joints(physics))
        shared = uniform(generator, (num, 1), 0.0, level, like=like)  # Playground draws both with one key
        arm = arm + shared * NOISE["robot_qpos"]
        speed = speed + uniform(generator, (num, 1), 0.0, level * NOISE["robot_qvel"], like=like)
        gripper_pos = self.read(physics, "gripper_pos")
        gripper_pos = gripper_pos + uniform(generator, (num, 1), 0.0, level * NOISE["eef_pos"], like=like)
        gripper_turn = axis_angle_quaternion(random_direction(generator, num, like), shared[:, 0] * NOISE["eef_angle"])
        gripper_rotation = quaternion_to_matrix(gripper_turn) @ self.gripper_rotation(physics)
        return torch.cat(
            [
                target_pos,
                quaternion_to_matrix(target_quat).flatten(1)[:, 3:],
                state["last_action"],
                arm,
                speed,
                gripper_pos,
                gripper_rotation.flatten(1)[:, 3:],
                box_rotation.flatten(1)[:, 3:],
                self.read(physics, "box_pos") + box_noise,
            ],
            dim=-1,
        )


def push_and_pick(
    history: torch.Tensor, newest: torch.Tensor, delays: tuple[int, int], generator: torch.Generator
) -> torch.Tensor:
    """Push ``newest`` [N, D] into ``history`` [N, H, D] (newest first, in place) and return, per world, the entry
    U{delays[0]..delays[1]} steps old (0: ``newest``)."""
    history.copy_(torch.cat([newest.unsqueeze(1), history[:, :-1]], dim=1))
    delay = torch.randint(delays[0], delays[1] + 1, (history.shape[0],), generator=generator, device=history.device)
    return history.gather(1, delay.view(-1, 1, 1).expand(-1, 1, history.shape[-1])).squeeze(1)


def normalized(vectors: torch.Tensor) -> torch.Tensor:
    """``vectors`` [N, D] over their norms; zero vectors stay zero (MuJoCo MJX's ``normalize``)."""
    norm = torch.linalg.vector_norm(vectors, dim=-1, keepdim=True)
    return vectors / (norm + 1e-6 * (norm == 0))


def random_direction(generator: torch.Generator, num: int, like: torch.Tensor) -> torch.Tensor:
    """[num, 3] unit vectors at spherical angles theta = 2 pi N(0, 1), phi = pi N(0, 1) (Playground's draw)."""
    theta = normal(generator, (num,), 2 * math.pi, like=like)
    phi = normal(generator, (num,), math.pi, like=like)
    return torch.stack([torch.sin(phi) * torch.cos(theta), torch.sin(phi) * torch.sin(theta), torch.cos(phi)], dim=-1)


def axis_angle_quaternion(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """[N, 4] quaternions turning by ``angle`` [N] about the unit ``axis`` [N, 3]."""
    half = (angle / 2).unsqueeze(-1)
    return torch.cat([torch.cos(half), torch.sin(half) * axis], dim=-1)


def quaternion_to_matrix(quat: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [N, 3, 3] of unit quaternions ``[w, x, y, z]`` [N, 4]."""
    w, x, y, z = quat.unbind(-1)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)

"""Franka Emika Panda: PandaPickCube, PandaPickCubeOrientation, PandaPickCubeCartesian (MuJoCo Playground 0.2.0
semantics).

Model: Playground's ``mjx_single_cube.xml`` (a 4 x 4 x 6 cm box on the floor in front of the arm and a
visual-only mocap target) around Menagerie's ``mjx_panda.xml`` (third-party model data, see
``pqn_torch/third_party/playground/NOTICE``), visual meshes dropped; the scene's solver settings (Newton,
5 iterations, implicitfast). Physics at 5 ms, control every 20 ms (4 substeps), episodes of 150 steps (3 s).
Added sensors: position and rotation axes of the gripper site, the box and the target.

- Control: ``ctrl = clip(ctrl + 0.04 * action, ctrlrange)`` for the 7 arm joints and the gripper (8
  actions in [-1, 1]): the position targets are integrated by the policy, starting at the home keyframe's.
- Reset: the home keyframe with the box moved by U(-0.2, 0.2) in x and y; the target at the box's home
  position + (U(-0.2, 0.2), U(-0.2, 0.2), U(0.2, 0.4)) m, held in the mocap body ``mocap_target``, upright
  (PandaPickCube) or turned by U(0, 45 deg) about a uniformly drawn direction (PandaPickCubeOrientation).
- Observation (66): ``qpos`` (16), ``qvel`` (15), the gripper's position (3), the gripper's and the box's
  rotation matrices without their first row (6 + 6), box - gripper (3), target - box (3), the target's
  minus the box's rotation matrix, first two rows (6), ``ctrl`` - the actuated joints' angles (8). No noise
  (``obs_noise_level`` has no effect).
- Reward, Playground's plain sum (no ``dt``) clipped to [-1e4, 1e4], of 4 * gripper_box + 8 * box_target +
  0.25 * no_floor_collision + 0.3 * robot_target_qpos (:meth:`PandaPickCube.reward_terms`); box_target pays
  only once the gripper has come within 12 mm of the box in the episode (task state ``reached_box``).
- Termination: the box beyond 1 m of the origin along any axis, or below the floor.

Task state (``env.task_state``, Playground's name): ``reached_box`` [N] (0 or 1).

Deviation from Playground: its reset computes no kinematics, so the first observation of its episodes
holds zeros where positions and rotations of the gripper and box belong; here it holds their values.

PandaPickCubeCartesian (Playground's state-based default, ``vision=False``; its pixel variant is not provided):
the scene ``mjx_single_cube_camera.xml`` (the same arm, box and target; a camera and a visual-only strip),
physics at 5 ms, control every 50 ms (10 substeps), episodes of 200 steps (10 s).

- Control, 3 actions in [-1, 1] (:meth:`PandaPickCubeCartesian.control`): the gripper tip's target (task state
  ``current_pos``, starting at the home keyframe's tip) moves by 0.005 * (0, action[0], action[1]) m and is
  clipped to x in [0.25, 0.77], y in [-0.32, 0.32], z in [0.02, 0.5]; the 7 arm targets become the arm's
  analytic inverse kinematics (:mod:`.franka_ik`) of that position at the home tip's orientation, joint 7 at
  its target; where it has no solution (task state ``no_soln``) the arm's targets and the tip target stay.
  The gripper's target moves by -0.02 where action[2] < 0, else +0.02; all targets clipped to ctrlrange. On an
  episode's first step 5% of the worlds jump to the ``picked`` keyframe (box held in the closed gripper;
  Playground's exploration aid).
- Reset: the ``low_home`` keyframe, the box at (x_tip - 0.03, U(-0.05, 0.05), 0) (its centre on the floor, as
  Playground puts it; the contact lifts it within the first step), the target fixed at (x_tip - 0.03, 0, 0.2).
- Observation (70): the pick observation (66), ``no_soln`` (1), the last action (3).
- Reward: a progress reward. Each step's total is 4 gripper_box + 8 box_target + 0.25 no_floor_collision
  - 0.0005 |action - last action| - 0.01 no_soln + 0.5 (box centre above 5 cm) + 2 (box within 5 cm of the
  target); the step pays what the total adds to the episode's best so far (``prev_reward``), nothing on the
  first step. Playground's config also lists no_box_collision (0.05) and robot_target_qpos (0): its step sums
  the terms before adding the former, so neither pays; both are left out.
- Termination: out of bounds as above, or success (box within 5 cm of the target).

Task state (Playground's names): ``reached_box``, ``current_pos`` [N, 3], ``prev_reward``, ``prev_action``
[N, 3], ``no_soln``, ``newly_reset`` (the next step is the episode's first).

Deviations: Playground's action delay (``action_history_length``) is 1 step by default, i.e. none, and is not
provided. Its inverse kinematics, where the shoulder-to-elbow direction is within 2.6 degrees of vertical,
keeps joint 1 but then still turns it by pi when joint 2 is negative; here joint 1 is kept, as in the
original solver.
"""

from __future__ import annotations

import math
from typing import ClassVar

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics, sensor_slice
from pqn_torch.envs.tasks.base import ControlMapping, StartStates, TaskState, Transition
from pqn_torch.envs.tasks.common import model_mocap_positions, uniform
from pqn_torch.envs.tasks.manipulation.franka_ik import franka_fk, franka_ik
from pqn_torch.envs.tasks.registry import register
from pqn_torch.envs.tasks.robot_task import ActionMapping, RobotConfig, RobotTask
from pqn_torch.envs.tasks.robots import load_playground_scene

ARM_JOINTS = 7
BOX_RANGE = 0.2  # the box moves by U(-0.2, 0.2) in x and y
TARGET_LOW, TARGET_HIGH = (-0.2, -0.2, 0.2), (0.2, 0.2, 0.4)  # target offset from the box's home position
TARGET_MAX_ANGLE = math.radians(45.0)
REACHED_BOX_DISTANCE = 0.012
OUT_OF_BOUNDS = 1.0
# PandaPickCubeCartesian
CARTESIAN_ACTIONS = 3  # tip y, tip z, gripper
TIP_STEP = 0.005  # m per unit action and step
TIP_LOW, TIP_HIGH = (0.25, -0.32, 0.02), (0.77, 0.32, 0.5)  # the tip target's workspace
GRIPPER_STEP = 0.02
BOX_LINE_BEHIND_TIP = 0.03  # the box's line (and the target) lie this far behind the home tip in x
BOX_Y_RANGE = 0.05
TARGET_HEIGHT = 0.2
GUIDE_PROBABILITY = 0.05
LIFTED_HEIGHT = 0.05
SUCCESS_DISTANCE = 0.05
FLOOR_CONTACTS = ("left_finger_pad", "right_finger_pad", "hand_capsule")
FRAMES = {  # frame sensors (position and axes): name -> (object type, object); XBODY: the body's own frame
    "gripper": (mujoco.mjtObj.mjOBJ_SITE, "gripper"),
    "box": (mujoco.mjtObj.mjOBJ_XBODY, "box"),
    "target": (mujoco.mjtObj.mjOBJ_XBODY, "mocap_target"),
}
AXES = {
    "pos": mujoco.mjtSensor.mjSENS_FRAMEPOS,
    "xaxis": mujoco.mjtSensor.mjSENS_FRAMEXAXIS,
    "yaxis": mujoco.mjtSensor.mjSENS_FRAMEYAXIS,
    "zaxis": mujoco.mjtSensor.mjSENS_FRAMEZAXIS,
}


@register
class PandaPickCube(RobotTask):
    """Lift the box to the target position (see the module docstring)."""

    name = "PandaPickCube"
    default_config = RobotConfig(ctrl_dt=0.02, sim_dt=0.005, episode_length=150, contacts_per_world=24, njmax=128)
    action_mapping = ActionMapping(scale=0.04, reference="ctrl", clip=True)
    sensors = tuple(f"{frame}_{axis}" for frame in FRAMES for axis in AXES)
    noise_scales: ClassVar[dict[str, float]] = {}
    reward_scales = {"gripper_box": 4.0, "box_target": 8.0, "no_floor_collision": 0.25, "robot_target_qpos": 0.3}
    reward_clip: ClassVar[tuple[float, float] | None] = (-1e4, 1e4)
    reward_per_second = False
    observation_layout: ClassVar[tuple[tuple[str, int], ...]] = (
        ("qpos: 7 arm joints, 2 fingers, box position and quaternion", 16),
        ("qvel: 7 arm joints, 2 fingers, box linear and angular velocity", 15),
        ("gripper position", 3),
        ("gripper rotation matrix, rows 2-3", 6),
        ("box rotation matrix, rows 2-3", 6),
        ("box position - gripper position", 3),
        ("target position - box position", 3),
        ("target rotation matrix - box rotation matrix, rows 1-2", 6),
        ("ctrl - joint angles (7 arm joints, finger 1)", 8),
    )
    sample_orientation: ClassVar[bool] = False
    scene: ClassVar[str] = "manipulation/franka_emika_panda/xmls/mjx_single_cube.xml"

    def build_spec(self) -> mujoco.MjSpec:
        spec = load_playground_scene(self.scene, "franka_emika_panda", menagerie_includes=("mjx_panda.xml",))
        for frame, (objtype, objname) in FRAMES.items():
            for axis, sensor_type in AXES.items():
                spec.add_sensor(name=f"{frame}_{axis}", type=sensor_type, objtype=objtype, objname=objname)
        return spec

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        super().bind(mj_model, device, dtype)
        self.box_qpos = int(mj_model.joint(mj_model.body("box").jntadr[0]).qposadr[0])
        self.box_home = self.home_qpos[self.box_qpos : self.box_qpos + 3]
        self.target_mocap = int(mj_model.body("mocap_target").mocapid[0])
        self.mocap_start = model_mocap_positions(mj_model)
        self.target_low, self.target_high = self.constant(TARGET_LOW), self.constant(TARGET_HIGH)
        self._floor_contacts = [sensor_slice(mj_model, f"{geom}_floor_found").start for geom in FLOOR_CONTACTS]

    # ----------------------------------------------------------------- reset
    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        qpos = self.home_qpos.repeat(num, 1)
        qpos[:, self.box_qpos : self.box_qpos + 2] += uniform(generator, (num, 2), -BOX_RANGE, BOX_RANGE, like=qpos)
        mocap_pos = self.mocap_start.to(qpos).repeat(num, 1, 1)
        offset = uniform(generator, (num, 3), self.target_low, self.target_high, like=qpos)
        mocap_pos[:, self.target_mocap] = self.box_home + offset
        mocap_quat = torch.zeros(num, mocap_pos.shape[1], 4, dtype=qpos.dtype, device=qpos.device)
        mocap_quat[..., 0] = 1.0
        if self.sample_orientation:
            mocap_quat[:, self.target_mocap] = random_turn(generator, num, TARGET_MAX_ANGLE, like=qpos)
        qvel = physics.qvel.new_zeros(num, physics.qvel.shape[1])
        return StartStates(qpos=qpos, qvel=qvel, mocap_pos=mocap_pos, mocap_quat=mocap_quat)

    def initial_state(self, generator: torch.Generator, num: int, physics: Physics) -> TaskState:
        """``reached_box`` 0: the box target pays only after the gripper has reached the box."""
        return {"reached_box": physics.qpos.new_zeros(num)}

    # ----------------------------------------------------------------- readings
    def rotation(self, physics: Physics, frame: str) -> torch.Tensor:
        """Rotation matrix of ``frame`` flattened row by row [N, 9] (Playground's ``xmat.ravel()``)."""
        axes = [self.read(physics, f"{frame}_{axis}") for axis in ("xaxis", "yaxis", "zaxis")]
        return torch.stack(axes, dim=-1).flatten(1)  # the axes are the matrix's columns

    def gripper_to_box(self, physics: Physics) -> torch.Tensor:
        """Box position - gripper position [N, 3]."""
        return self.read(physics, "box_pos") - self.read(physics, "gripper_pos")

    def floor_collision(self, physics: Physics) -> torch.Tensor:
        """Whether a finger pad or the hand touches the floor, [N] bool."""
        found = torch.stack([physics.sensordata[:, column] for column in self._floor_contacts], dim=-1)
        return (found > 0).any(dim=-1)

    # ----------------------------------------------------------------- step
    def transition(
        self, physics: Physics, action: torch.Tensor, state: TaskState, generator: torch.Generator
    ) -> Transition:
        self.update_reached_box(physics, state)
        reward, shares = self.total_reward(self.reward_terms(physics, state))
        obs, critic_obs = self.observe(physics, state, generator)
        terminated = self.out_of_bounds(physics)
        return Transition(reward=reward, obs=obs, critic_obs=critic_obs, terminated=terminated, reward_terms=shares)

    def update_reached_box(self, physics: Physics, state: TaskState) -> None:
        """Latch ``reached_box`` where the gripper is within 12 mm of the box (before the reward reads it)."""
        reached = torch.linalg.vector_norm(self.gripper_to_box(physics), dim=-1) < REACHED_BOX_DISTANCE
        torch.maximum(state["reached_box"], reached.to(state["reached_box"].dtype), out=state["reached_box"])

    def out_of_bounds(self, physics: Physics) -> torch.Tensor:
        """Whether the box is beyond 1 m of the origin along an axis or below the floor, [N] bool."""
        box = self.read(physics, "box_pos")
        return (box.abs() > OUT_OF_BOUNDS).any(dim=-1) | (box[:, 2] < 0.0)

    def reward_terms(self, physics: Physics, state: TaskState) -> dict[str, torch.Tensor]:
        """Playground's unscaled terms [N]: ``1 - tanh(5 |box - gripper|)``; ``(1 - tanh(5 (0.9 |target - box| +
        0.1 |R_target - R_box|))) * reached_box`` (rotation matrices' first two rows); 1 unless a finger pad or
        the hand touches the floor; ``1 - tanh(|q_arm - q_arm,home|)``."""
        box_to_target = self.read(physics, "target_pos") - self.read(physics, "box_pos")
        rotation_error = (self.rotation(physics, "target") - self.rotation(physics, "box"))[:, :6]
        placement = 0.9 * torch.linalg.vector_norm(box_to_target, dim=-1)
        placement = placement + 0.1 * torch.linalg.vector_norm(rotation_error, dim=-1)
        arm, _ = self.joints(physics)
        arm_offset = arm[:, :ARM_JOINTS] - self.default_pose[:ARM_JOINTS]
        return {
            "gripper_box": 1 - torch.tanh(5 * torch.linalg.vector_norm(self.gripper_to_box(physics), dim=-1)),
            "box_target": (1 - torch.tanh(5 * placement)) * state["reached_box"],
            "no_floor_collision": (~self.floor_collision(physics)).to(arm.dtype),
            "robot_target_qpos": 1 - torch.tanh(torch.linalg.vector_norm(arm_offset, dim=-1)),
        }

    def observe(
        self, physics: Physics, state: TaskState, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        box_rotation = self.rotation(physics, "box")
        joint_angles, _ = self.joints(physics)
        obs = torch.cat(
            [
                physics.qpos,
                physics.qvel,
                self.read(physics, "gripper_pos"),
                self.rotation(physics, "gripper")[:, 3:],
                box_rotation[:, 3:],
                self.gripper_to_box(physics),
                self.read(physics, "target_pos") - self.read(physics, "box_pos"),
                (self.rotation(physics, "target") - box_rotation)[:, :6],
                physics.ctrl - joint_angles,
            ],
            dim=-1,
        )
        return obs, obs


@register
class PandaPickCubeOrientation(PandaPickCube):
    """Bring the box to the target position and orientation (see the module docstring)."""

    name = "PandaPickCubeOrientation"
    sample_orientation = True


def random_turn(generator: torch.Generator, num: int, max_angle: float, like: torch.Tensor) -> torch.Tensor:
    """[num, 4] quaternions turning by U(0, ``max_angle``) about the normalized U(-1, 1)^3 direction."""
    axis = uniform(generator, (num, 3), -1.0, 1.0, like=like)
    axis = axis / torch.linalg.vector_norm(axis, dim=-1, keepdim=True)
    half = uniform(generator, (num, 1), 0.0, max_angle, like=like) / 2
    return torch.cat([torch.cos(half), torch.sin(half) * axis], dim=-1)


@register
class PandaPickCubeCartesian(PandaPickCube):
    """Lift the box to a fixed point above its line by moving the gripper tip in y and z (see the module
    docstring)."""

    name = "PandaPickCubeCartesian"
    action_size = CARTESIAN_ACTIONS
    default_config = RobotConfig(ctrl_dt=0.05, sim_dt=0.005, episode_length=200, contacts_per_world=24, njmax=128)
    home_keyframe = "low_home"
    scene = "manipulation/franka_emika_panda/xmls/mjx_single_cube_camera.xml"
    reward_scales = {
        "gripper_box": 4.0,
        "box_target": 8.0,
        "no_floor_collision": 0.25,
        "action_rate": -0.0005,
        "no_soln": -0.01,
        "lifted": 0.5,
        "success": 2.0,
    }
    reward_clip = None  # Playground clips its dense terms' sum to [-1e4, 1e4]: at most 12.25, never binding
    observation_layout = (
        *PandaPickCube.observation_layout,
        ("the inverse kinematics found no solution in the last step (1) or did (0)", 1),
        ("last action", 3),
    )

    def __init__(self, **overrides) -> None:
        super().__init__(**overrides)
        self.reward_term_names = (*self.reward_term_names, "progress")

    def control_mapping(self) -> ControlMapping:
        return ControlMapping("cartesian_increment", TIP_STEP, default_pose_keyframe=self.home_keyframe, clipped=True)

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        super().bind(mj_model, device, dtype)
        home_ctrl = torch.as_tensor(mj_model.keyframe(self.home_keyframe).ctrl, dtype=torch.float64)
        start_tip = franka_fk(home_ctrl[:ARM_JOINTS].unsqueeze(0))[0]
        self.tip_rotation = self.constant(start_tip[:3, :3])
        self.start_tip = self.constant(start_tip[:3, 3])
        self.box_line_x = float(start_tip[0, 3]) - BOX_LINE_BEHIND_TIP
        self.target = self.constant((self.box_line_x, 0.0, TARGET_HEIGHT))
        self.tip_low, self.tip_high = self.constant(TIP_LOW), self.constant(TIP_HIGH)
        self.guide_qpos = self.constant(mj_model.keyframe("picked").qpos)
        self.guide_ctrl = self.constant(mj_model.keyframe("picked").ctrl)

    # ----------------------------------------------------------------- reset
    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        qpos = self.home_qpos.repeat(num, 1)
        qpos[:, self.box_qpos].fill_(self.box_line_x)
        qpos[:, self.box_qpos + 1] = uniform(generator, (num,), -BOX_Y_RANGE, BOX_Y_RANGE, like=qpos)
        qpos[:, self.box_qpos + 2].fill_(0.0)  # Playground's: the box's centre on the floor (pushed out at once)
        mocap_pos = self.mocap_start.to(qpos).repeat(num, 1, 1)
        mocap_pos[:, self.target_mocap] = self.target
        mocap_quat = torch.zeros(num, mocap_pos.shape[1], 4, dtype=qpos.dtype, device=qpos.device)
        mocap_quat[..., 0] = 1.0
        qvel = physics.qvel.new_zeros(num, physics.qvel.shape[1])
        return StartStates(qpos=qpos, qvel=qvel, mocap_pos=mocap_pos, mocap_quat=mocap_quat)

    def initial_state(self, generator: torch.Generator, num: int, physics: Physics) -> TaskState:
        """Playground's step-start values after a reset: the tip target at the home tip, no reward paid yet."""
        zeros = physics.qpos.new_zeros
        return {
            "reached_box": zeros(num),
            "current_pos": self.start_tip.repeat(num, 1),
            "prev_reward": zeros(num),
            "prev_action": zeros(num, CARTESIAN_ACTIONS),
            "no_soln": zeros(num),
            "newly_reset": torch.ones(num, dtype=torch.bool, device=physics.qpos.device),
        }

    # ----------------------------------------------------------------- step
    def control(self, physics: Physics, action: torch.Tensor, state: TaskState, generator: torch.Generator) -> None:
        """On an episode's first step, 5% of the worlds jump to the ``picked`` keyframe (box in the closed
        gripper); then the tip target moves by ``0.005 * (0, action[0], action[1])`` inside the workspace, the
        arm's targets become its inverse kinematics (kept where it has none) and the gripper's moves by 0.02."""
        draw = uniform(generator, (physics.num_worlds,), 0.0, 1.0, like=state["prev_reward"])
        guided = (state["newly_reset"] & (draw < GUIDE_PROBABILITY)).unsqueeze(-1)
        physics.qpos.copy_(torch.where(guided, self.guide_qpos, physics.qpos))
        physics.ctrl.copy_(torch.where(guided, self.guide_ctrl, physics.ctrl))
        ctrl = physics.ctrl
        step = torch.cat([torch.zeros_like(action[:, :1]), action[:, :2]], dim=-1) * TIP_STEP
        target = torch.clamp(state["current_pos"] + step, self.tip_low, self.tip_high)
        rotation = self.tip_rotation.expand(physics.num_worlds, 3, 3)
        arm, solved = franka_ik(rotation, target, ctrl[:, ARM_JOINTS - 1], ctrl[:, :ARM_JOINTS])
        gripper = ctrl[:, ARM_JOINTS] + torch.where(action[:, 2] < 0, -GRIPPER_STEP, GRIPPER_STEP)
        physics.ctrl.copy_(torch.clamp(torch.cat([arm, gripper.unsqueeze(-1)], dim=-1), self.ctrl_low, self.ctrl_high))
        state["current_pos"].copy_(torch.where(solved.unsqueeze(-1), target, state["current_pos"]))
        state["no_soln"].copy_((~solved).to(state["no_soln"].dtype))

    def transition(
        self, physics: Physics, action: torch.Tensor, state: TaskState, generator: torch.Generator
    ) -> Transition:
        """Playground's progress reward: the step pays what its total (dense terms and bonuses) adds to the
        episode's best total so far, and nothing on an episode's first step; reaching the target ends the
        episode."""
        self.update_reached_box(physics, state)
        terms = self.reward_terms(physics, state)
        terms["action_rate"] = torch.linalg.vector_norm(action - state["prev_action"], dim=-1)
        total, shares = self.total_reward(terms)
        reward = torch.where(state["newly_reset"], 0.0, torch.clamp(total - state["prev_reward"], min=0.0))
        shares["progress"] = reward - total
        torch.maximum(state["prev_reward"], total, out=state["prev_reward"])
        state["prev_action"].copy_(action)
        state["newly_reset"].fill_(False)
        obs, critic_obs = self.observe(physics, state, generator)
        terminated = self.out_of_bounds(physics) | self.success(physics).bool()
        return Transition(reward=reward, obs=obs, critic_obs=critic_obs, terminated=terminated, reward_terms=shares)

    def success(self, physics: Physics) -> torch.Tensor:
        """1 where the box is within 5 cm of the target, else 0, [N]."""
        distance = torch.linalg.vector_norm(self.read(physics, "target_pos") - self.read(physics, "box_pos"), dim=-1)
        return (distance < SUCCESS_DISTANCE).to(distance.dtype)

    def reward_terms(self, physics: Physics, state: TaskState) -> dict[str, torch.Tensor]:
        """The pick terms without ``robot_target_qpos`` (scale 0 in Playground); ``no_soln`` (1 where the inverse
        kinematics failed), ``lifted`` (box centre above 5 cm), ``success``. ``action_rate`` (the norm of the
        action's change) is added by :meth:`transition`, which knows the action."""
        terms = super().reward_terms(physics, state)
        del terms["robot_target_qpos"]
        box_height = self.read(physics, "box_pos")[:, 2]
        terms["no_soln"] = state["no_soln"]
        terms["lifted"] = (box_height > LIFTED_HEIGHT).to(box_height.dtype)
        terms["success"] = self.success(physics)
        return terms

    def observe(
        self, physics: Physics, state: TaskState, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pick_obs, _ = super().observe(physics, state, generator)
        obs = torch.cat([pick_obs, state["no_soln"].unsqueeze(-1), state["prev_action"]], dim=-1)
        return obs, obs

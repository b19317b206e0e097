"""ALOHA (two ViperX 300 arms facing each other across a table): AlohaHandOver and AlohaSinglePegInsertion,
with MuJoCo Playground 0.2.0 semantics.

Model: Playground's ``mjx_hand_over.xml`` / ``mjx_single_peg_insertion.xml`` around its ``mjx_scene.xml`` and
``mjx_aloha.xml`` (third-party model data, see ``pqn_torch/third_party/playground/NOTICE``), visual meshes and
textures dropped; the scenes' solver settings (Newton, 10 iterations, 10 line-search, implicitfast, impratio 5).
What collides: the table (a plane at z = 0), each gripper's base capsule and four finger capsules, and the
objects. Each gripper's two fingers are coupled by an equality constraint; its one actuator drives the left finger.
Eight contact sensors (in the scene) say whether a finger capsule touches the table.

Both tasks (14 actions in [-1, 1], 6 arm joints and a gripper per arm):

- Control: ``ctrl = clip(ctrl + scale * action, ctrlrange)``, starting from the home keyframe's ``ctrl``
  (the position targets are integrated by the policy).
- Observation: no noise (``obs_noise_level`` has no effect); the same for actor and critic.
- Reward: no ``dt`` factor, no clip. Termination when an object leaves the 1 m box around the origin.

**AlohaHandOver** (control every 20 ms, 4 physics steps of 5 ms, 250-step episodes): the left arm picks the
box up from the left of the table, hands it to the right arm, which brings it to a target (a mocap body).

- Control scale 0.015; the left gripper's ctrl range starts at 0.01 instead of 0.002 (Playground's "aid finger
  exploration": a fully closed left gripper is out of reach), set as the actuator's ``ctrlrange``.
- Reset: the home keyframe with the box moved by (U(-0.05, 0.05), U(-0.1, 0.1)) in x, y; the target at
  (0.2, 0, 0.25) + U(-0.15, 0.15)^3 with x raised to at least 0.15, in mocap body ``mocap_target``.
- Observation (83): see :attr:`AlohaHandOver.observation_layout`; the last entry is the fraction of the
  episode's physics-control steps taken.
- Reward (:meth:`AlohaHandOver.step_reward`): a potential, the weighted mean of gripper_box (1), box_handover (4),
  handover_target (8) and no_table_collision (0.3) (:meth:`AlohaHandOver.potential_terms`); the reward pays the
  potential's rise above its best value so far in the episode (``progress``, never negative), plus 0.02 x
  potential x a barrier that is 1 once the left gripper is left of x = 0 and the box right of x = 0.1
  (``holding``); both are 0 in an episode's first step. ``dropped``: -0.1 once the box, after having been
  above 0.15 m in the episode, is below 0.05 m.
- Termination: the box out of bounds or below the table, or dropped.
- Milestones (:meth:`AlohaHandOver.episode_milestones`, counted by evaluation): lifted, at the hand-over point,
  at the target.

**AlohaSinglePegInsertion** (control = physics step = 2.5 ms, action repeat 2: an agent step is 2 control steps
with the same action and the sum of their rewards; 500 agent steps = Playground's 1000 env steps): the left arm
lifts the socket, the right arm the peg, and the peg goes into the socket.

- Control scale 0.005 (per control step, so up to 0.01 per agent step).
- Reset: the home keyframe with the peg and the socket each moved by U(-0.1, 0.1) in x and y.
- Observation (82): see :attr:`AlohaSinglePegInsertion.observation_layout`.
- Reward (:meth:`AlohaSinglePegInsertion.reward_terms`): the weighted mean of 10 terms (left/right gripper at
  socket/peg, arm poses, socket/peg lifted to their goals and upright, peg end at the socket's rear, paid while the
  peg's end is within 5 mm of the socket's axis, no table collision).
- Termination: the socket or the peg out of bounds.
- Milestones (:meth:`AlohaSinglePegInsertion.episode_milestones`, counted by evaluation): each gripper at its
  object, socket lifted, peg lifted, both at their goals, peg in the socket.

Task state (``env.task_state``): AlohaHandOver ``prev_potential`` (best potential so far), ``episode_picked``
(the box has been above 0.15 m), ``steps`` (control steps taken; Playground's ``_steps``); the peg task has none.

Deviations from Playground: the first observation of an episode shows the grippers' and objects' poses
(Playground computes no kinematics at reset, so its first observation holds zeros there); every reset draws
new object positions (and target), where Playground's training wrapper replays each world's first state (the
hand-over's task state it restarts itself, in the first step of an episode); the final observation of a
time-limited AlohaHandOver episode shows the step fraction 1 (Playground wraps ``_steps`` to 0 in that step).
"""

from __future__ import annotations

from typing import ClassVar

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics, sensor_slice
from pqn_torch.envs.tasks.base import StartStates, TaskState, Transition
from pqn_torch.envs.tasks.common import model_mocap_positions, uniform
from pqn_torch.envs.tasks.registry import register
from pqn_torch.envs.tasks.rewards import tolerance
from pqn_torch.envs.tasks.robot_task import ActionMapping, RobotConfig, RobotTask
from pqn_torch.envs.tasks.robots import load_playground_scene

SCENES = "manipulation/aloha/xmls/"
FINGER_GEOMS = tuple(
    f"{arm}/{finger}_{part}" for arm in ("left", "right") for finger in ("left_finger", "right_finger")
    for part in ("top", "bottom")
)  # fmt: skip
FINGER_JOINTS = ("left/left_finger", "left/right_finger", "right/left_finger", "right/right_finger")
ARM_JOINTS = tuple(
    f"{arm}/{joint}" for arm in ("left", "right")
    for joint in ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")
)  # fmt: skip
AXES = {
    "xaxis": mujoco.mjtSensor.mjSENS_FRAMEXAXIS,
    "yaxis": mujoco.mjtSensor.mjSENS_FRAMEYAXIS,
    "zaxis": mujoco.mjtSensor.mjSENS_FRAMEZAXIS,
}
OUT_OF_BOUNDS = 1.0
GRIPPERS = {
    "left_gripper": (mujoco.mjtObj.mjOBJ_SITE, "left/gripper"),
    "right_gripper": (mujoco.mjtObj.mjOBJ_SITE, "right/gripper"),
}
"""The grippers' sites (between the fingers), frames both tasks read."""


def frame_sensor_names(positions: dict, rotations: tuple[str, ...]) -> tuple[str, ...]:
    """``<frame>_pos`` for each frame of ``positions``, ``<frame>_<axis>`` for each of ``rotations``."""
    return tuple(f"{frame}_pos" for frame in positions) + tuple(f"{f}_{axis}" for f in rotations for axis in AXES)


class AlohaTask(RobotTask):
    """What both ALOHA tasks share (see the module docstring)."""

    start_ctrl_source = "keyframe_ctrl"  # the hand-over's left gripper target is more open than its fingers
    scene: ClassVar[str]
    frames: ClassVar[dict[str, tuple[mujoco.mjtObj, str]]]
    """Frames whose position the task reads: name -> (object type, object); XBODY: the body's own frame."""
    rotated_frames: ClassVar[tuple[str, ...]]
    """Frames of :attr:`frames` whose rotation the task reads too."""
    noise_scales: ClassVar[dict[str, float]] = {}
    reward_clip = None
    reward_per_second = False
    # Both tasks' ``episode_milestones`` (not a Playground value): "at" a point (a gripper, a goal) within this.
    MILESTONE_DISTANCE = 0.05

    def build_spec(self) -> mujoco.MjSpec:
        spec = load_playground_scene(SCENES + self.scene, "aloha")
        for frame, (objtype, objname) in self.frames.items():
            position = mujoco.mjtSensor.mjSENS_FRAMEPOS
            spec.add_sensor(name=f"{frame}_pos", type=position, objtype=objtype, objname=objname)
            if frame in self.rotated_frames:
                for axis, sensor_type in AXES.items():
                    spec.add_sensor(name=f"{frame}_{axis}", type=sensor_type, objtype=objtype, objname=objname)
        return spec

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        super().bind(mj_model, device, dtype)
        columns = [[int(mj_model.joint(name).qposadr[0]) for name in joints] for joints in (ARM_JOINTS, FINGER_JOINTS)]
        self.arm_qpos, self.finger_qpos = (torch.tensor(index, device=device) for index in columns)
        found = [sensor_slice(mj_model, f"table_{geom}_found").start for geom in FINGER_GEOMS]
        self._table_contacts = torch.tensor(found, dtype=torch.int64, device=device)

    def free_body_qpos(self, mj_model: mujoco.MjModel, body: str) -> int:
        """The first ``qpos`` column of ``body``'s free joint."""
        return int(mj_model.joint(mj_model.body(body).jntadr[0]).qposadr[0])

    def position(self, physics: Physics, frame: str) -> torch.Tensor:
        """World position of ``frame`` [N, 3]."""
        return self.read(physics, f"{frame}_pos")

    def rotation(self, physics: Physics, frame: str) -> torch.Tensor:
        """Rotation matrix of ``frame`` flattened row by row [N, 9] (Playground's ``xmat.ravel()``)."""
        columns = [self.read(physics, f"{frame}_{axis}") for axis in AXES]
        return torch.stack(columns, dim=-1).flatten(1)

    def table_collision(self, physics: Physics) -> torch.Tensor:
        """Whether a finger capsule of either gripper touches the table, [N] bool."""
        return (physics.sensordata[:, self._table_contacts] > 0).any(dim=-1)

    def out_of_bounds(self, physics: Physics, body: str) -> torch.Tensor:
        """Whether ``body``'s frame is beyond 1 m of the origin along an axis, [N] bool."""
        return (self.position(physics, body).abs() > OUT_OF_BOUNDS).any(dim=-1)

    def initial_state(self, generator: torch.Generator, num: int, physics: Physics) -> TaskState:
        return {}


def distance_reward(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``exp(-10 |a - b|)`` over the last dim (Playground's hand-over ``distance``)."""
    return torch.exp(-10 * torch.linalg.vector_norm(a - b, dim=-1))


def logistic_barrier(x: torch.Tensor, x0: float = 0.0, direction: float = 1.0) -> torch.Tensor:
    """``1 / (1 + exp(-100 direction (x - x0)))``: ~1 past ``x0`` in ``direction``, ~0 before, 12 cm wide."""
    return torch.sigmoid(100 * direction * (x - x0))


@register
class AlohaHandOver(AlohaTask):
    """Hand the box from the left arm to the right and bring it to the target (see the module docstring)."""

    name = "AlohaHandOver"
    default_config = RobotConfig(ctrl_dt=0.02, sim_dt=0.005, episode_length=250, contacts_per_world=24, njmax=88)
    action_mapping = ActionMapping(scale=0.015, reference="ctrl", clip=True)
    scene = "mjx_hand_over.xml"
    frames: ClassVar[dict[str, tuple[mujoco.mjtObj, str]]] = {
        **GRIPPERS,
        "box": (mujoco.mjtObj.mjOBJ_XBODY, "box"),
        "box_top": (mujoco.mjtObj.mjOBJ_SITE, "box_top"),
        "box_bottom": (mujoco.mjtObj.mjOBJ_SITE, "box_bottom"),
    }
    rotated_frames = ("left_gripper", "right_gripper", "box")
    sensors = frame_sensor_names(frames, rotated_frames)
    potential_weights: ClassVar[dict[str, float]] = {
        "gripper_box": 1.0,
        "box_handover": 4.0,
        "handover_target": 8.0,
        "no_table_collision": 0.3,
    }
    reward_scales = {"progress": 1.0, "holding": 0.02, "dropped": -0.1}
    observation_layout = (
        ("qpos: 2 x (6 arm joints, 2 fingers), box position and quaternion", 23),
        ("qvel: 2 x (6 arm joints, 2 fingers), box linear and angular velocity", 22),
        ("finger positions - box half-width (left arm's 2, right arm's 2)", 4),
        ("box top site position", 3),
        ("box bottom site position", 3),
        ("left gripper position", 3),
        ("left gripper rotation matrix, rows 2-3", 6),
        ("right gripper position", 3),
        ("right gripper rotation matrix, rows 2-3", 6),
        ("box rotation matrix, rows 2-3", 6),
        ("box position - target position", 3),
        ("control steps taken / episode length in control steps", 1),
    )
    BOX_LOW, BOX_HIGH = (-0.05, -0.1), (0.05, 0.1)
    TARGET_CENTRE, TARGET_RANGE, TARGET_MIN_X = (0.2, 0.0, 0.25), 0.15, 0.15
    HANDOVER_POINT = (0.0, 0.0, 0.24)
    LEFT_THRESHOLD, RIGHT_THRESHOLD = -0.1, 0.0  # box x: before -0.1 the left arm's, from 0 the right arm's
    PICKED_HEIGHT, DROPPED_HEIGHT = 0.15, 0.05
    LEFT_GRIPPER_MIN_CTRL = 0.01

    def build_spec(self) -> mujoco.MjSpec:
        spec = super().build_spec()
        spec.actuator("left/gripper").ctrlrange[0] = self.LEFT_GRIPPER_MIN_CTRL
        return spec

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        super().bind(mj_model, device, dtype)
        self.box_qpos = self.free_body_qpos(mj_model, "box")
        self.box_half_width = float(mj_model.geom("box").size[1])
        self.target_mocap = int(mj_model.body("mocap_target").mocapid[0])
        self.mocap_start = model_mocap_positions(mj_model)
        self.box_low, self.box_high = self.constant(self.BOX_LOW), self.constant(self.BOX_HIGH)
        self.target_centre, self.handover_point = self.constant(self.TARGET_CENTRE), self.constant(self.HANDOVER_POINT)
        self.steps_per_episode = self.config.episode_length * self.config.action_repeat

    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        qpos = self.home_qpos.repeat(num, 1)
        box = uniform(generator, (num, 2), self.box_low, self.box_high, like=qpos)
        qpos[:, self.box_qpos : self.box_qpos + 2] += box
        target = self.target_centre + uniform(generator, (num, 3), -self.TARGET_RANGE, self.TARGET_RANGE, like=qpos)
        target[:, 0].clamp_(min=self.TARGET_MIN_X)
        mocap_pos = self.mocap_start.to(qpos).repeat(num, 1, 1)
        mocap_pos[:, self.target_mocap] = target
        mocap_quat = torch.zeros(num, mocap_pos.shape[1], 4, dtype=qpos.dtype, device=qpos.device)
        mocap_quat[..., 0] = 1.0
        qvel = physics.qvel.new_zeros(num, physics.qvel.shape[1])
        return StartStates(qpos=qpos, qvel=qvel, mocap_pos=mocap_pos, mocap_quat=mocap_quat)

    def initial_state(self, generator: torch.Generator, num: int, physics: Physics) -> TaskState:
        """No potential reached, box not picked, no step taken."""
        zeros = physics.qpos.new_zeros
        return {
            "prev_potential": zeros(num),
            "episode_picked": zeros(num, dtype=torch.bool),
            "steps": zeros(num, dtype=torch.int64),
        }

    def target(self, physics: Physics) -> torch.Tensor:
        """The target position [N, 3] (the mocap body's)."""
        return physics.mocap_pos[:, self.target_mocap]

    def potential_terms(self, physics: Physics) -> dict[str, torch.Tensor]:
        """Playground's unscaled potential terms [N] (``d(a, b) = exp(-10 |a - b|)``; the box's x decides whose
        turn it is: before -0.1 the left arm's, from 0 the right arm's, in between both):

        - gripper_box: d(box top, left gripper) until the right arm's turn, + d(box bottom, right gripper) from
          the shared stretch on, counted twice in the right arm's turn;
        - box_handover: max(d(box, hand-over point (0, 0, 0.24)), d(left gripper, hand-over point) in the right
          arm's turn);
        - handover_target: d(target, box) x the right gripper's part of gripper_box x barrier(left gripper x < 0);
        - no_table_collision: 1 unless a finger touches the table.
        """
        box, box_x = self.position(physics, "box"), self.position(physics, "box")[:, 0]
        left, right = self.position(physics, "left_gripper"), self.position(physics, "right_gripper")
        before = (box_x < self.LEFT_THRESHOLD).to(box.dtype)
        past = (box_x >= self.RIGHT_THRESHOLD).to(box.dtype)
        between = (1 - before) * (1 - past)
        left_box = distance_reward(self.position(physics, "box_top"), left) * (before + between)
        right_box = distance_reward(self.position(physics, "box_bottom"), right)
        right_box = right_box * (between + past) + right_box * past
        handover = torch.maximum(
            distance_reward(box, self.handover_point), distance_reward(left, self.handover_point) * past
        )
        to_target = distance_reward(self.target(physics), box) * right_box * logistic_barrier(left[:, 0], direction=-1)
        return {
            "gripper_box": left_box + right_box,
            "box_handover": handover,
            "handover_target": to_target,
            "no_table_collision": (~self.table_collision(physics)).to(box.dtype),
        }

    def potential(self, physics: Physics) -> torch.Tensor:
        """The weighted mean of :meth:`potential_terms`, [N]."""
        terms = self.potential_terms(physics)
        total = sum(weight * terms[name] for name, weight in self.potential_weights.items())
        assert isinstance(total, torch.Tensor)
        return total / sum(self.potential_weights.values())

    def step_reward(self, physics: Physics, state: TaskState) -> dict[str, torch.Tensor]:
        """The unscaled reward terms of a control step; updates ``prev_potential`` and ``episode_picked``:
        progress = max(potential - best potential so far, 0), holding = potential x barrier(left gripper x < 0)
        x barrier(box x > 0.1), both 0 in the episode's first step; dropped = 1 when the box is below 0.05 m after
        having been above 0.15 m in the episode."""
        potential = self.potential(physics)
        box = self.position(physics, "box")
        later = (state["steps"] > 0).to(potential.dtype)
        progress = torch.clamp(potential - state["prev_potential"], min=0.0) * later
        barrier = logistic_barrier(self.position(physics, "left_gripper")[:, 0], direction=-1)
        holding = potential * barrier * logistic_barrier(box[:, 0], 0.10) * later
        torch.maximum(state["prev_potential"], potential, out=state["prev_potential"])
        state["episode_picked"].logical_or_(box[:, 2] > self.PICKED_HEIGHT)
        dropped = (box[:, 2] < self.DROPPED_HEIGHT) & state["episode_picked"]
        return {"progress": progress, "holding": holding, "dropped": dropped.to(potential.dtype)}

    def episode_milestones(self, physics: Physics, state: TaskState) -> dict[str, torch.Tensor]:
        """The hand-over's stages, which ``evaluate.py`` counts per episode (the reward, a potential, shows how far
        an episode got only as one number) [N] bool: ``lifted`` the box above 0.15 m (Playground's "picked"),
        ``at_handover`` the box within 5 cm of the hand-over point, ``at_target`` within 5 cm of the target."""
        box = self.position(physics, "box")
        return {
            "lifted": box[:, 2] > self.PICKED_HEIGHT,
            "at_handover": torch.linalg.vector_norm(box - self.handover_point, dim=-1) < self.MILESTONE_DISTANCE,
            "at_target": torch.linalg.vector_norm(box - self.target(physics), dim=-1) < self.MILESTONE_DISTANCE,
        }

    def transition(
        self, physics: Physics, action: torch.Tensor, state: TaskState, generator: torch.Generator
    ) -> Transition:
        terms = self.step_reward(physics, state)
        reward, shares = self.total_reward(terms)
        box = self.position(physics, "box")
        terminated = self.out_of_bounds(physics, "box") | (box[:, 2] < 0.0) | (terms["dropped"] > 0)
        state["steps"].add_(1)
        obs, critic_obs = self.observe(physics, state, generator)
        return Transition(reward=reward, obs=obs, critic_obs=critic_obs, terminated=terminated, reward_terms=shares)

    def observe(
        self, physics: Physics, state: TaskState, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        box = self.position(physics, "box")
        obs = torch.cat(
            [
                physics.qpos,
                physics.qvel,
                physics.qpos[:, self.finger_qpos] - self.box_half_width,
                self.position(physics, "box_top"),
                self.position(physics, "box_bottom"),
                self.position(physics, "left_gripper"),
                self.rotation(physics, "left_gripper")[:, 3:],
                self.position(physics, "right_gripper"),
                self.rotation(physics, "right_gripper")[:, 3:],
                self.rotation(physics, "box")[:, 3:],
                box - self.target(physics),
                (state["steps"].to(box.dtype) / self.steps_per_episode).unsqueeze(-1),
            ],
            dim=-1,
        )
        return obs, obs


PEG_WEIGHTS = {
    "left_reward": 1.0,
    "right_reward": 1.0,
    "left_target_qpos": 0.3,
    "right_target_qpos": 0.3,
    "no_table_collision": 0.3,
    "socket_z_up": 0.5,
    "peg_z_up": 0.5,
    "socket_entrance_reward": 4.0,
    "peg_end2_reward": 4.0,
    "peg_insertion_reward": 8.0,
}
"""Playground's weights; the reward is their weighted mean (each scale below is weight / 19.9)."""


@register
class AlohaSinglePegInsertion(AlohaTask):
    """Lift the socket and the peg and insert the peg (see the module docstring)."""

    name = "AlohaSinglePegInsertion"
    default_config = RobotConfig(
        ctrl_dt=0.0025, sim_dt=0.0025, episode_length=500, action_repeat=2, contacts_per_world=24, njmax=256
    )
    action_mapping = ActionMapping(scale=0.005, reference="ctrl", clip=True)
    scene = "mjx_single_peg_insertion.xml"
    frames: ClassVar[dict[str, tuple[mujoco.mjtObj, str]]] = {
        **GRIPPERS,
        "socket": (mujoco.mjtObj.mjOBJ_XBODY, "socket"),
        "peg": (mujoco.mjtObj.mjOBJ_XBODY, "peg"),
        "socket_entrance": (mujoco.mjtObj.mjOBJ_SITE, "socket_entrance"),
        "socket_rear": (mujoco.mjtObj.mjOBJ_SITE, "socket_rear"),
        "peg_end2": (mujoco.mjtObj.mjOBJ_SITE, "peg_end2"),
    }
    rotated_frames = ("socket", "peg")
    sensors = frame_sensor_names(frames, rotated_frames)
    reward_scales = {name: weight / sum(PEG_WEIGHTS.values()) for name, weight in PEG_WEIGHTS.items()}
    observation_layout = (
        ("qpos: 2 x (6 arm joints, 2 fingers), socket and peg positions and quaternions", 30),
        ("qvel: 2 x (6 arm joints, 2 fingers), socket and peg linear and angular velocities", 28),
        ("left gripper position", 3),
        ("socket position", 3),
        ("right gripper position", 3),
        ("peg position", 3),
        ("socket entrance site position", 3),
        ("peg end 2 site position", 3),
        ("socket rotation matrix, row 3", 3),
        ("peg rotation matrix, row 3", 3),
    )
    OBJECT_RANGE = 0.1
    SOCKET_GOAL, PEG_GOAL = (-0.05, 0.0, 0.15), (0.05, 0.0, 0.15)
    ON_AXIS = 0.005  # the insertion term pays while the peg's end is this close to the socket's axis
    # :meth:`episode_milestones` (not a Playground value): "lifted" this far above the home keyframe's height.
    MILESTONE_LIFT = 0.05

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        super().bind(mj_model, device, dtype)
        self.socket_qpos = self.free_body_qpos(mj_model, "socket")
        self.peg_qpos = self.free_body_qpos(mj_model, "peg")
        self.home_arms = self.home_qpos[self.arm_qpos]
        self.socket_goal, self.peg_goal = self.constant(self.SOCKET_GOAL), self.constant(self.PEG_GOAL)
        self.socket_rest_z = self.home_qpos[self.socket_qpos + 2].item()
        self.peg_rest_z = self.home_qpos[self.peg_qpos + 2].item()

    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        qpos = self.home_qpos.repeat(num, 1)
        for column in (self.peg_qpos, self.socket_qpos):
            moved = uniform(generator, (num, 2), -self.OBJECT_RANGE, self.OBJECT_RANGE, like=qpos)
            qpos[:, column : column + 2] += moved
        return StartStates(qpos=qpos, qvel=physics.qvel.new_zeros(num, physics.qvel.shape[1]))

    def peg_end_in_socket_frame(self, physics: Physics) -> tuple[torch.Tensor, torch.Tensor]:
        """Where the peg's end 2 is relative to the socket's bore: its distance [N] from the line through the
        socket's rear and entrance sites, and its position along that line [N] (0 at the rear, 1 at the entrance)."""
        rear, end = self.position(physics, "socket_rear"), self.position(physics, "peg_end2")
        axis = self.position(physics, "socket_entrance") - rear
        along = ((end - rear) * axis).sum(-1) / ((axis * axis).sum(-1) + 1e-6)
        return torch.linalg.vector_norm(end - rear - along.unsqueeze(-1) * axis, dim=-1), along

    def episode_milestones(self, physics: Physics, state: TaskState) -> dict[str, torch.Tensor]:
        """The insertion's stages, which ``evaluate.py`` counts per episode [N] bool (the reward, a mean of ten
        terms that the held arms already earn a share of, hides them): ``socket_reached`` / ``peg_reached`` the
        left / right gripper within 5 cm of the object, ``socket_lifted`` / ``peg_lifted`` raised 5 cm above where
        they rest, ``at_goals`` both within 5 cm of their goal points, ``peg_in_socket`` the peg's end inside the
        socket's bore (within 5 mm of its axis, between its rear and its entrance)."""
        socket, peg = self.position(physics, "socket"), self.position(physics, "peg")
        off_axis, along = self.peg_end_in_socket_frame(physics)
        near = self.MILESTONE_DISTANCE
        at_goals = (torch.linalg.vector_norm(socket - self.socket_goal, dim=-1) < near) & (
            torch.linalg.vector_norm(peg - self.peg_goal, dim=-1) < near
        )
        return {
            "socket_reached": torch.linalg.vector_norm(socket - self.position(physics, "left_gripper"), dim=-1) < near,
            "peg_reached": torch.linalg.vector_norm(peg - self.position(physics, "right_gripper"), dim=-1) < near,
            "socket_lifted": socket[:, 2] > self.socket_rest_z + self.MILESTONE_LIFT,
            "peg_lifted": peg[:, 2] > self.peg_rest_z + self.MILESTONE_LIFT,
            "at_goals": at_goals,
            "peg_in_socket": (off_axis < self.ON_AXIS) & (along >= 0.0) & (along <= 1.0),
        }

    def reward_terms(self, physics: Physics) -> dict[str, torch.Tensor]:
        """Playground's unscaled terms [N] (``linear(d, margin)`` = ``tolerance(d, (0, b), margin, "linear")``, which
        is 1 - 0.9 (d - b) / margin beyond the bound b, 0 from b + margin / 0.9 on):

        - left_reward / right_reward: linear(|socket - left gripper|, 0.3) / linear(|peg - right gripper|, 0.3),
          bounds (0, 1 mm);
        - left/right_target_qpos: gaussian tolerance (0, 0.01), margin 2, of the arm's joint offset from home,
          times left_reward x right_reward;
        - socket_entrance_reward / peg_end2_reward: linear(|goal - body|, 0.15), bounds (0, 1 cm), goals
          (-0.05, 0, 0.15) for the socket, (0.05, 0, 0.15) for the peg;
        - socket_z_up / peg_z_up: tolerance of the body z-axis' world z in (0.99, 1), margin 0.03, linear, times
          the lift term;
        - peg_insertion_reward: linear(|peg end 2 - socket rear|, 0.1), bounds (0, 1 mm), while the peg's end is
          within 5 mm of the socket's axis;
        - no_table_collision: 1 unless a finger touches the table.
        """
        socket, peg = self.position(physics, "socket"), self.position(physics, "peg")

        def linear(distance: torch.Tensor, bound: float, margin: float) -> torch.Tensor:
            return tolerance(distance, (0.0, bound), margin=margin, sigmoid="linear")

        def norm(vector: torch.Tensor) -> torch.Tensor:
            return torch.linalg.vector_norm(vector, dim=-1)

        left = linear(norm(socket - self.position(physics, "left_gripper")), 0.001, 0.3)
        right = linear(norm(peg - self.position(physics, "right_gripper")), 0.001, 0.3)
        arm_offset = physics.qpos[:, self.arm_qpos] - self.home_arms
        left_pose = tolerance(norm(arm_offset[:, :6]), (0.0, 0.01), margin=2.0)
        right_pose = tolerance(norm(arm_offset[:, 6:]), (0.0, 0.01), margin=2.0)
        socket_lift = linear(norm(self.socket_goal - socket), 0.01, 0.15)
        peg_lift = linear(norm(self.peg_goal - peg), 0.01, 0.15)
        socket_up = tolerance(self.read(physics, "socket_zaxis")[:, 2], (0.99, 1.0), margin=0.03, sigmoid="linear")
        peg_up = tolerance(self.read(physics, "peg_zaxis")[:, 2], (0.99, 1.0), margin=0.03, sigmoid="linear")
        inserted = linear(norm(self.position(physics, "peg_end2") - self.position(physics, "socket_rear")), 0.001, 0.1)
        on_axis = (self.peg_end_in_socket_frame(physics)[0] < self.ON_AXIS).to(inserted.dtype)
        return {
            "left_reward": left,
            "right_reward": right,
            "left_target_qpos": left_pose * left * right,
            "right_target_qpos": right_pose * left * right,
            "no_table_collision": (~self.table_collision(physics)).to(left.dtype),
            "socket_z_up": socket_up * socket_lift,
            "peg_z_up": peg_up * peg_lift,
            "socket_entrance_reward": socket_lift,
            "peg_end2_reward": peg_lift,
            "peg_insertion_reward": inserted * on_axis,
        }

    def transition(
        self, physics: Physics, action: torch.Tensor, state: TaskState, generator: torch.Generator
    ) -> Transition:
        reward, shares = self.total_reward(self.reward_terms(physics))
        terminated = self.out_of_bounds(physics, "socket") | self.out_of_bounds(physics, "peg")
        obs, critic_obs = self.observe(physics, state, generator)
        return Transition(reward=reward, obs=obs, critic_obs=critic_obs, terminated=terminated, reward_terms=shares)

    def observe(
        self, physics: Physics, state: TaskState, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        names = ("left_gripper", "socket", "right_gripper", "peg", "socket_entrance", "peg_end2")
        obs = torch.cat(
            [physics.qpos, physics.qvel]
            + [self.position(physics, name) for name in names]
            + [self.rotation(physics, body)[:, 6:] for body in ("socket", "peg")],
            dim=-1,
        )
        return obs, obs

"""Unitree G1 joystick (MuJoCo Playground 0.2.0 semantics): a 29-dof humanoid follows a velocity command on flat
or rough ground, stepping to a gait clock.

G1JoystickFlatTerrain / G1JoystickRoughTerrain: Playground's G1 scenes (third-party model data, see
``pqn_torch/third_party/playground/NOTICE``; feet-only floor collisions plus hand-thigh and foot-foot pairs; the
rough scene's floor is the 20 m x 20 m heightfield the Go1 scenes ship) without visual meshes, with the model's
own gains, physics at 2 ms, control every 20 ms (10 substeps), and the sensors the task reads, added in code:
the gravity direction in the pelvis IMU frame, the feet's world positions and each actuator's force. With
``restricted_joint_range`` (off by default, as Playground) every joint and its actuator get Playground's
narrower ranges (:data:`RESTRICTED_JOINT_RANGE`).

The humanoid joystick template (:mod:`~pqn_torch.envs.tasks.locomotion.humanoid_joystick`) with:

- Control: ``ctrl = home_pose + 0.5 * action``; pushes of U(0.1, 2) m/s.
- Reset: the "knees_bent" keyframe; gait frequency U(1.25, 1.5) Hz per episode.
- Command ``[vx, vy, yaw rate]`` U(-1, 1), U(-0.5, 0.5), U(-1, 1).
- Observation (103) and critic observation (216) as the template, read at the pelvis IMU.
- Reward: ``dt * sum(scale * term)``, not clipped, with Playground's 15 terms of non-zero scale
  (:data:`REWARD_SCALES`); ``ang_vel_xy``, ``orientation`` and the fall read the torso IMU. Termination when
  the torso's up axis points down or a foot touches the other foot (Playground also watches foot-shin contact
  sensors, which cannot fire: the model has no such contact pair). Kept as Playground has them: ``feet_slip``
  costs the pelvis's horizontal speed times the feet on the floor, ``feet_air_time`` pays at a zero command,
  ``pose`` weighs every joint alike, ``orientation`` measures the up axis against ``[0.073, 0, 1]``.
  Changed: ``joint_deviation_hip`` frees the hip roll for lateral commands ``|vy| > 0.1`` in both directions
  (Playground tests ``vy > 0.1``: leftward commands only).

Task state: the template's (``last_act`` [N, 29]).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics
from pqn_torch.envs.randomization import Draw
from pqn_torch.envs.tasks import reward_terms as terms
from pqn_torch.envs.tasks.base import TaskState
from pqn_torch.envs.tasks.locomotion.humanoid_joystick import (
    AIR_TIME,
    CTRL_DT,
    SIM_DT,
    HumanoidJoystick,
    HumanoidJoystickConfig,
    humanoid_randomization,
    joystick_layout,
    with_heightfield,
)
from pqn_torch.envs.tasks.registry import register
from pqn_torch.envs.tasks.robot_task import ActionMapping
from pqn_torch.envs.tasks.robots import (
    add_actuator_force_sensors,
    add_gravity_sensor,
    add_site_position_sensor,
    load_playground_scene,
)

SCENES = "locomotion/g1/xmls/"
FEET = ("left_foot", "right_foot")  # foot sites and their box geoms
NUM_JOINTS = 29
# Joint order: left leg, right leg (hip pitch, roll, yaw, knee, ankle pitch, roll), waist (yaw, roll, pitch),
# left arm, right arm (shoulder pitch, roll, yaw, elbow, wrist roll, pitch, yaw).
HIP_ROLL_JOINTS, HIP_YAW_JOINTS = (1, 7), (2, 8)
KNEE_JOINTS = (3, 9)
RESTRICTED_JOINT_RANGE = (
    *((-1.57, 1.57), (-0.5, 0.5), (-0.7, 0.7), (0.0, 1.57), (-0.4, 0.4), (-0.2, 0.2)) * 2,  # legs
    (-2.618, 2.618),
    (-0.52, 0.52),
    (-0.52, 0.52),  # waist
    (-3.0892, 2.6704),
    (-1.5882, 2.2515),
    (-2.618, 2.618),
    (-1.0472, 2.0944),
    (-1.97222, 1.97222),
    (-1.61443, 1.61443),
    (-1.61443, 1.61443),  # left arm
    (-3.0892, 2.6704),
    (-2.2515, 1.5882),
    (-2.618, 2.618),
    (-1.0472, 2.0944),
    (-1.97222, 1.97222),
    (-1.61443, 1.61443),
    (-1.61443, 1.61443),  # right arm
)
"""Playground's ``restricted_joint_range``: (low, high) per actuated joint, in joint order."""
PELVIS_IMU = {
    "gyro": "gyro_pelvis",
    "local_linvel": "local_linvel_pelvis",
    "accelerometer": "accelerometer_pelvis",
    "global_linvel": "global_linvel_pelvis",
    "global_angvel": "global_angvel_pelvis",
    "upvector": "upvector_torso",  # the fall and the orientation cost read the torso's up axis
}
FOOT_FORCES = ("left_foot_force", "right_foot_force")
FOOT_FLOOR_PAIRS = ("left_foot_floor", "right_foot_floor")  # the feet's contact pairs with the floor
SELF_CONTACTS = ("right_foot_left_foot_found", "left_foot_right_shin_found", "right_foot_left_shin_found")
HAND_THIGH_CONTACTS = ("left_hand_left_thigh_found", "right_hand_right_thigh_found")

REWARD_SCALES = {
    "tracking_lin_vel": 1.0,
    "tracking_ang_vel": 0.75,
    "ang_vel_xy": -0.15,
    "orientation": -2.0,
    "feet_air_time": 2.0,
    "feet_slip": -0.25,
    "feet_phase": 1.0,
    "stand_still": -1.0,
    "termination": -100.0,
    "collision": -0.1,
    "contact_force": -0.01,
    "joint_deviation_knee": -0.1,
    "joint_deviation_hip": -0.25,
    "dof_pos_limits": -1.0,
    "pose": -0.1,
}
TRACKING_SIGMA = 0.25
SWING_HEIGHT = 0.15  # m, the gait's foot height
UPRIGHT = (0.073, 0.0, 1.0)  # the torso up axis the orientation cost measures against
MAX_CONTACT_FORCE = 500.0  # N
STILL_COMMAND = 0.01  # |command| below which the pose must stay home and the gait reward needs body motion
MOVING_BODY = 0.1  # m/s or rad/s of the pelvis that count as moving for the gait reward
LATERAL_COMMAND = 0.1  # |vy| above which the hip roll may deviate
# Domain randomization (randomize=true): MuJoCo Playground 0.2.0's G1 randomizer, per world. Off by default:
# purejaxql trains without it. The feet touch the floor through contact pairs, so the floor friction drawn is the
# two foot-floor pairs' (one draw for both, both tangent directions). Joint friction loss x U(0.5, 2.0), as
# Playground's code draws it (its comment says U(0.9, 1.1)).
G1_RANDOMIZATION = (
    Draw("pair_friction", "set", 0.4, 1.0, rows=FOOT_FLOOR_PAIRS, column=slice(0, 2), shared=True),
    *humanoid_randomization("torso_link", frictionloss=(0.5, 2.0), link_mass=(0.9, 1.1)),
)
CONTACTS_PER_WORLD = 16
"""MuJoCo Warp contact buffer per world. Playground's 8 is an average over a shared batch buffer; a world's own
buffer must hold its worst case: up to 4 per foot box on the floor plus hand-thigh and foot-foot contacts
(measured: up to 10 in the flat scene's start states)."""


@dataclass
class G1Config(HumanoidJoystickConfig):
    """Adds ``restricted_joint_range``: Playground's narrower joint and control ranges (off by default)."""

    restricted_joint_range: bool = False


@register
class G1JoystickFlatTerrain(HumanoidJoystick):
    """Follow a joystick velocity command on flat ground (see the module docstring)."""

    config: G1Config
    name = "G1JoystickFlatTerrain"
    scene: ClassVar[str] = "scene_mjx_feetonly_flat_terrain.xml"
    default_config = G1Config(
        CTRL_DT, SIM_DT, episode_length=1000, contacts_per_world=CONTACTS_PER_WORLD, njmax=NUM_JOINTS * 2 + 8 * 4
    )
    action_mapping = ActionMapping(scale=0.5, reference="home")
    home_keyframe = "knees_bent"
    sensors = ("gravity_up", "global_angvel_torso", *FOOT_FORCES, *SELF_CONTACTS, *HAND_THIGH_CONTACTS)
    sensor_aliases = PELVIS_IMU
    feet = FEET
    reward_scales = REWARD_SCALES
    reward_clip = None
    observation_layout = joystick_layout(NUM_JOINTS)
    command_range = (1.0, 0.5, 1.0)
    gait_frequency = (1.25, 1.5)
    push_speed = (0.1, 2.0)
    joint_noise = (0.03,) * NUM_JOINTS
    randomization = G1_RANDOMIZATION

    def build_spec(self) -> mujoco.MjSpec:
        spec = with_heightfield(load_playground_scene(SCENES + self.scene, "unitree_g1"))
        add_gravity_sensor(spec, "gravity_up", "imu_in_pelvis")
        for foot in FEET:
            add_site_position_sensor(spec, f"{foot}_world_pos", foot)
        add_actuator_force_sensors(spec)
        if self.config.restricted_joint_range:
            hinges = [joint for joint in spec.joints if joint.type == mujoco.mjtJoint.mjJNT_HINGE]
            for joint, actuator, limits in zip(hinges, spec.actuators, RESTRICTED_JOINT_RANGE, strict=True):
                joint.range = limits
                actuator.ctrlrange, actuator.inheritrange = limits, 0.0
        return spec

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        super().bind(mj_model, device, dtype)
        self.hip_roll_joints = torch.tensor(HIP_ROLL_JOINTS, device=device)
        self.hip_yaw_joints = torch.tensor(HIP_YAW_JOINTS, device=device)
        self.knee_joints = torch.tensor(KNEE_JOINTS, device=device)
        self.upright = self.constant(UPRIGHT)

    def terminated(self, physics: Physics) -> torch.Tensor:
        """[N] bool: the torso's up axis points down, or a foot touches the other foot (or a shin)."""
        touching = torch.cat([self.read(physics, name) for name in SELF_CONTACTS], dim=-1) > 0
        return super().terminated(physics) | touching.any(-1)

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
        q, _ = self.joints(physics)
        offset = q - self.default_pose
        pelvis_velocity = self.read(physics, "global_linvel")[:, :2]
        pelvis_speed_xy = torch.linalg.vector_norm(pelvis_velocity, dim=-1)
        commanded = torch.linalg.vector_norm(command, dim=-1) > STILL_COMMAND
        body_moving = (pelvis_speed_xy > MOVING_BODY) | (self.read(physics, "global_angvel")[:, 2].abs() > MOVING_BODY)
        roll_weight = (command[:, 1].abs() <= LATERAL_COMMAND).to(q.dtype)
        hand_thigh = torch.cat([self.read(physics, name) for name in HAND_THIGH_CONTACTS], dim=-1) > 0
        foot_force_z = torch.stack([self.read(physics, name)[:, 2] for name in FOOT_FORCES], dim=-1)
        return {
            **self.tracking_terms(physics, command, TRACKING_SIGMA),
            "ang_vel_xy": terms.ang_vel_xy(self.read(physics, "global_angvel_torso")),
            "orientation": ((self.read(physics, "upvector") - self.upright) ** 2).sum(-1),
            "feet_air_time": terms.feet_air_time(
                state["feet_air_time"], first_contact.to(q.dtype), torch.ones_like(pelvis_speed_xy), *AIR_TIME
            ),
            "feet_slip": terms.body_slip(pelvis_speed_xy, contact),
            "feet_phase": terms.feet_phase(self.feet_height(physics), state["phase"], SWING_HEIGHT)
            * (commanded | body_moving).to(q.dtype),
            "stand_still": terms.stand_still(offset, commanded.to(q.dtype)),
            "termination": terms.termination(terminated, q),
            "collision": hand_thigh.any(-1).to(q.dtype),
            "contact_force": (foot_force_z.abs() - MAX_CONTACT_FORCE).clamp(min=0.0).sum(-1),
            "joint_deviation_knee": terms.joint_deviation(offset[:, self.knee_joints]),
            "joint_deviation_hip": terms.joint_deviation(offset[:, self.hip_roll_joints]) * roll_weight
            + terms.joint_deviation(offset[:, self.hip_yaw_joints]),
            "dof_pos_limits": terms.dof_pos_limits(q, self.soft_low, self.soft_high),
            "pose": (offset**2).sum(-1),
        }


@register
class G1JoystickRoughTerrain(G1JoystickFlatTerrain):
    """Follow a joystick velocity command on Playground's rough heightfield terrain."""

    name = "G1JoystickRoughTerrain"
    scene = "scene_mjx_feetonly_rough_terrain.xml"

"""Booster T1 joystick (MuJoCo Playground 0.2.0 semantics): a 23-dof humanoid follows a velocity command on flat
or rough ground, stepping to a gait clock.

T1JoystickFlatTerrain / T1JoystickRoughTerrain: Playground's T1 scenes (third-party model data, see
``pqn_torch/third_party/playground/NOTICE``; each foot touches the floor through four spheres, and the two foot
boxes collide with each other only; the rough scene's floor is the 20 m x 20 m heightfield the Go1 scenes ship)
without visual meshes, with Playground's one in-code edit (10 convex-collision iterations), physics at 2 ms,
control every 20 ms (10 substeps), and the sensors the task reads, added in code: the gravity direction in the
IMU frame, the feet's world positions and each actuator's force.

The humanoid joystick template (:mod:`~pqn_torch.envs.tasks.locomotion.humanoid_joystick`) with:

- Control: ``ctrl = home_pose + action``; pushes of U(0.1, 1) m/s.
- Reset: the "home" keyframe; gait frequency U(1.25, 1.75) Hz per episode. While the command is zero
  (``|command| <= 0.01``) both feet's phases are held at pi (feet down).
- Command ``[vx, vy, yaw rate]`` U(-1, 1), U(-0.8, 0.8), U(-1, 1).
- Observation (85) and critic observation (180) as the template; a foot touches the floor when any of its
  four spheres does.
- Reward: ``clip(dt * sum(scale * term), 0, 1e4)`` with Playground's 14 terms of non-zero scale
  (:data:`REWARD_SCALES`); termination when the trunk's up axis points down. Kept as Playground has them:
  ``ang_vel_xy`` reads the gyro (trunk frame), ``feet_slip`` the trunk's horizontal speed times the feet on
  the floor, and ``feet_phase`` pays at a zero command too.

Task state: the template's (``last_act`` [N, 23]).
"""

from __future__ import annotations

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

SCENES = "locomotion/t1/xmls/"
FEET = ("left_foot", "right_foot")  # foot sites
FOOT_SPHERES = tuple(tuple(f"{foot}_{corner}" for corner in range(1, 5)) for foot in FEET)
NUM_JOINTS = 23
# Joint order: head (yaw, pitch), left arm, right arm (shoulder pitch, roll, elbow pitch, yaw), waist,
# left leg, right leg (hip pitch, roll, yaw, knee, ankle pitch, roll).
HIP_JOINTS = (12, 13, 18, 19)  # hip roll and yaw
KNEE_JOINTS = (14, 20)
POSE_WEIGHTS = (1.0, 1.0) + (0.1, 1.0, 1.0, 1.0) * 2 + (1.0,) + (0.01, 1.0, 1.0, 0.01, 1.0, 1.0) * 2
IMU_SENSORS = (
    "gyro",
    "local_linvel",
    "accelerometer",
    "upvector",
    "forwardvector",
    "global_linvel",
    "global_angvel",
    "gravity_up",
    "left_foot_right_foot_found",
)

REWARD_SCALES = {
    "tracking_lin_vel": 1.0,
    "tracking_ang_vel": 0.5,
    "ang_vel_xy": -0.15,
    "orientation": -1.0,
    "feet_air_time": 2.0,
    "feet_slip": -0.25,
    "feet_phase": 1.0,
    "alive": 0.25,
    "joint_deviation_knee": -0.1,
    "joint_deviation_hip": -0.1,
    "dof_pos_limits": -1.0,
    "pose": -1.0,
    "feet_distance": -1.0,
    "collision": -1.0,
}
TRACKING_SIGMA = 0.25
SWING_HEIGHT = 0.12  # m, the gait's foot height
MOVING_COMMAND = 0.1  # |command| above which steps earn air time
LATERAL_COMMAND = 0.1  # |vy| above which the hip deviation costs
STILL_COMMAND = 0.01  # |command| at or below which the gait clock holds both feet down
FEET_APART = 0.2  # m: sideways distance of the feet below which the stance costs, at most 0.1
STANCE_COST_CAP = 0.1
ANKLE_DOFS = (slice(21, 23), slice(27, 29))  # left, right ankle pitch and roll (after the free joint's 6)
# Domain randomization (randomize=true): MuJoCo Playground 0.2.0's T1 randomizer, per world. Off by default:
# purejaxql trains without it. The floor's friction is U(0.2, 0.6) (Playground's comment says U(0.4, 1.0)).
T1_RANDOMIZATION = (
    Draw("geom_friction", "set", 0.2, 0.6, rows="floor", column=0),  # floor sliding friction
    *humanoid_randomization("Trunk", frictionloss=(0.9, 1.1), link_mass=(0.98, 1.02)),
    # Position gain Kp x U(0.9, 1.1) per actuator, the bias term -Kp with it.
    Draw("actuator_gainprm", "scale", 0.9, 1.1, column=0, also=(("actuator_biasprm", 1),)),
    *(Draw("dof_damping", "scale", 0.5, 2.0, rows=ankle) for ankle in ANKLE_DOFS),
)
CONTACTS_PER_WORLD = 16
"""MuJoCo Warp contact buffer per world: the eight foot spheres on the floor (Playground's average of 8 over a
shared batch buffer) plus room for the foot boxes touching each other."""


@register
class T1JoystickFlatTerrain(HumanoidJoystick):
    """Follow a joystick velocity command on flat ground (see the module docstring)."""

    name = "T1JoystickFlatTerrain"
    scene: ClassVar[str] = "scene_mjx_feetonly_flat_terrain.xml"
    default_config = HumanoidJoystickConfig(
        CTRL_DT, SIM_DT, episode_length=1000, contacts_per_world=CONTACTS_PER_WORLD, njmax=80
    )
    action_mapping = ActionMapping(scale=1.0, reference="home")
    sensors = IMU_SENSORS
    feet = FEET
    foot_geoms = FOOT_SPHERES
    reward_scales = REWARD_SCALES
    observation_layout = joystick_layout(NUM_JOINTS)
    command_range = (1.0, 0.8, 1.0)
    gait_frequency = (1.25, 1.75)
    push_speed = (0.1, 1.0)
    joint_noise = (0.03,) * NUM_JOINTS
    still_command = STILL_COMMAND
    randomization = T1_RANDOMIZATION

    def build_spec(self) -> mujoco.MjSpec:
        spec = with_heightfield(load_playground_scene(SCENES + self.scene, "booster_t1"))
        spec.option.ccd_iterations = 10
        add_gravity_sensor(spec, "gravity_up", "imu")
        for foot in FEET:
            add_site_position_sensor(spec, f"{foot}_world_pos", foot)
        add_actuator_force_sensors(spec)
        return spec

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        super().bind(mj_model, device, dtype)
        self.pose_weights = self.constant(POSE_WEIGHTS)
        self.hip_joints = torch.tensor(HIP_JOINTS, device=device)
        self.knee_joints = torch.tensor(KNEE_JOINTS, device=device)

    def feet_distance(self, physics: Physics) -> torch.Tensor:
        """[N] sideways distance of the feet in the heading frame of the IMU (its x-axis turned level)."""
        forward = self.read(physics, "forwardvector")
        yaw = torch.atan2(forward[:, 1], forward[:, 0])
        position = self.feet_position(physics)
        apart = position[:, 0] - position[:, 1]
        return (torch.cos(yaw) * apart[:, 1] - torch.sin(yaw) * apart[:, 0]).abs()

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
        gyro = self.read(physics, "gyro")
        trunk_speed_xy = torch.linalg.vector_norm(self.read(physics, "global_linvel")[:, :2], dim=-1)
        stance = (FEET_APART - self.feet_distance(physics)).clamp(min=0.0, max=STANCE_COST_CAP)
        return {
            **self.tracking_terms(physics, command, TRACKING_SIGMA),
            "ang_vel_xy": terms.ang_vel_xy(gyro),
            "orientation": terms.orientation(self.read(physics, "upvector")),
            "feet_air_time": terms.feet_air_time(state["feet_air_time"], first_contact.to(q.dtype), moving, *AIR_TIME),
            "feet_slip": terms.body_slip(trunk_speed_xy, contact),
            "feet_phase": terms.feet_phase(self.feet_height(physics), state["phase"], SWING_HEIGHT),
            "alive": torch.ones_like(trunk_speed_xy),
            "joint_deviation_knee": terms.joint_deviation(offset[:, self.knee_joints]),
            "joint_deviation_hip": terms.joint_deviation(offset[:, self.hip_joints]) * lateral,
            "dof_pos_limits": terms.dof_pos_limits(q, self.soft_low, self.soft_high),
            "pose": terms.pose_deviation(offset, self.pose_weights),
            "feet_distance": stance,
            "collision": (self.read(physics, "left_foot_right_foot_found")[:, 0] > 0).to(q.dtype),
        }


@register
class T1JoystickRoughTerrain(T1JoystickFlatTerrain):
    """Follow a joystick velocity command on Playground's rough heightfield terrain."""

    name = "T1JoystickRoughTerrain"
    scene = "scene_mjx_feetonly_rough_terrain.xml"

"""Berkeley Humanoid joystick (MuJoCo Playground 0.2.0 semantics): a 12-dof biped follows a velocity command on
flat or rough ground, stepping to a gait clock.

BerkeleyHumanoidJoystickFlatTerrain / BerkeleyHumanoidJoystickRoughTerrain: Playground's Berkeley Humanoid
scenes (third-party model data, see ``pqn_torch/third_party/playground/NOTICE``; feet-only collisions; the rough
scene's floor is the 20 m x 20 m heightfield the Go1 scenes ship) without visual meshes, with the model's own
gains (Playground edits none in code), physics at 2 ms, control every 20 ms (10 substeps), and the sensors the
task reads, added in code: the gravity direction in the IMU frame, the feet's world positions and each
actuator's force.

The humanoid joystick template (:mod:`~pqn_torch.envs.tasks.locomotion.humanoid_joystick`) with:

- Control: ``ctrl = home_pose + 0.5 * action``; pushes of U(0.1, 2) m/s.
- Reset: the "home" keyframe; gait frequency U(1.25, 1.5) Hz per episode.
- Command ``[vx, vy, yaw rate]`` U(-1, 1) each.
- Observation (52) and critic observation (114) as the template; joint-angle noise per joint group.
- Reward: ``clip(dt * sum(scale * term), 0, 1e4)`` with Playground's 14 terms of non-zero scale
  (:data:`REWARD_SCALES`); termination when the trunk's up axis points down. Kept as Playground has them:
  ``feet_slip`` costs the trunk's horizontal speed times the feet on the floor (not the feet's speed), and
  ``feet_phase`` pays at a zero command too.

Task state: the template's (``last_act`` [N, 12]).
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

SCENES = "locomotion/berkeley_humanoid/xmls/"
FEET = ("l_foot", "r_foot")  # foot sites
FOOT_GEOMS = ("l_foot1", "r_foot1")  # their contact sensors: <geom>_floor_found
# Joint order: left leg then right leg, each HR, HAA, HFE, KFE, FFE, FAA.
HIP_JOINTS = (0, 1, 6, 7)  # hip roll and abduction
KNEE_JOINTS = (3, 9)
POSE_WEIGHTS = (1.0, 1.0, 0.01, 0.01, 1.0, 1.0) * 2
JOINT_NOISE = (0.03, 0.03, 0.03, 0.05, 0.08, 0.03) * 2  # rad: hip, hip, hip, knee, ankle pitch, ankle roll
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
# Domain randomization (randomize=true): MuJoCo Playground 0.2.0's Berkeley Humanoid randomizer, per world. Off by
# default: purejaxql trains without it.
BERKELEY_HUMANOID_RANDOMIZATION = (
    Draw("geom_friction", "set", 0.4, 1.0, rows="floor", column=0),  # floor sliding friction
    *humanoid_randomization("torso", frictionloss=(0.9, 1.1), link_mass=(0.9, 1.1)),
)
SWING_HEIGHT = 0.1  # m, the gait's foot height
MOVING_COMMAND = 0.1  # |command| above which steps earn air time
LATERAL_COMMAND = 0.1  # |vy| above which the hip deviation costs


@register
class BerkeleyHumanoidJoystickFlatTerrain(HumanoidJoystick):
    """Follow a joystick velocity command on flat ground (see the module docstring)."""

    name = "BerkeleyHumanoidJoystickFlatTerrain"
    scene: ClassVar[str] = "scene_mjx_feetonly_flat_terrain.xml"
    default_config = HumanoidJoystickConfig(CTRL_DT, SIM_DT, episode_length=1000, contacts_per_world=8, njmax=60)
    action_mapping = ActionMapping(scale=0.5, reference="home")
    sensors = IMU_SENSORS
    feet = FEET
    foot_geoms = FOOT_GEOMS
    reward_scales = REWARD_SCALES
    observation_layout = joystick_layout(12)
    command_range = (1.0, 1.0, 1.0)
    gait_frequency = (1.25, 1.5)
    push_speed = (0.1, 2.0)
    joint_noise = JOINT_NOISE
    randomization = BERKELEY_HUMANOID_RANDOMIZATION

    def build_spec(self) -> mujoco.MjSpec:
        spec = with_heightfield(load_playground_scene(SCENES + self.scene, "berkeley_humanoid"))
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
            **self.tracking_terms(physics, command, TRACKING_SIGMA),
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


@register
class BerkeleyHumanoidJoystickRoughTerrain(BerkeleyHumanoidJoystickFlatTerrain):
    """Follow a joystick velocity command on Playground's rough heightfield terrain."""

    name = "BerkeleyHumanoidJoystickRoughTerrain"
    scene = "scene_mjx_feetonly_rough_terrain.xml"

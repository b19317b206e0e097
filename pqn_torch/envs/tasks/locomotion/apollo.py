"""Apptronik Apollo joystick (MuJoCo Playground 0.2.0 semantics): a 32-actuator humanoid (torso, neck, arms and
legs) follows a velocity command on flat ground, stepping to a gait clock.

ApolloJoystickFlatTerrain: Playground's Apollo scene (third-party model data, see
``pqn_torch/third_party/playground/NOTICE``; the soles touch the floor through explicit pairs, and hand-thigh,
sole-sole, shin-shin and thigh-thigh pairs collide) without visual meshes, with the model's own gains and
solver settings (implicit-fast integrator, 3 solver iterations), physics at 5 ms, control every 20 ms
(4 substeps), and the sensors the task reads, added in code: the gravity direction in the IMU frame, the feet's
world positions and linear velocities, and each actuator's force.

The humanoid joystick template (:mod:`~pqn_torch.envs.tasks.locomotion.humanoid_joystick`) with:

- Control: ``ctrl = knees_bent_pose + 0.5 * action``; pushes of U(0.1, 2) m/s every U(5, 10) s.
- Reset: the "knees_bent" keyframe as the template; ``ctrl`` starts at 0 (Playground's Apollo leaves it so);
  gait frequency U(1.25, 1.75) Hz per episode. While the command is zero (``|command| <= 0.01``) both feet's
  phases are held at pi (feet down).
- Command ``[vx, vy, yaw rate]`` U(-a, a) with a = (1.5, 0.8, 1.5) at reset; after Exp(mean 5 s) it is
  resampled per component as Go1's: kept with probability 0.5, else replaced by U(-a, a) (probability
  (0.9, 0.25, 0.5)) or by 0; a termination restarts the period.
- Observation (112) as the template (joint-angle noise 0.03 rad). Critic observation (224): the observation,
  then clean gyro, gravity (IMU frame), local linear velocity, joint angles - home, joint velocities, actuator
  forces, root position and root quaternion.
- Reward: ``dt * sum(scale * term)``, not clipped, with Playground's 6 terms of non-zero scale
  (:data:`REWARD_SCALES`): ``tracking`` = ``exp(-|c_xy - v_xy|^2 / 0.25) + 0.5 exp(-(c_yaw - w_z)^2 / 0.25)``
  (local linear velocity, gyro), ``ang_vel_xy`` (gyro), ``orientation``, ``feet_phase`` (swing height 0.12 m),
  ``pose`` (per-joint weights, all 1 at a zero command, hip roll 0.01 for ``|vy| > 0.3``) and ``collision``
  (any of the hand-thigh, sole-sole, shin-shin, thigh-thigh contact sensors). Termination when the torso's up
  axis points down.

Task state: the template's, with the command clock ``steps_until_next_cmd`` in place of ``step``
(``last_act`` [N, 32]; the feet's air-time entries are kept but read by no reward term).
"""

from __future__ import annotations

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics
from pqn_torch.envs.tasks import reward_terms as terms
from pqn_torch.envs.tasks.base import TaskState
from pqn_torch.envs.tasks.common import uniform
from pqn_torch.envs.tasks.locomotion.humanoid_joystick import (
    CTRL_DT,
    HumanoidJoystick,
    HumanoidJoystickConfig,
    joystick_layout,
)
from pqn_torch.envs.tasks.registry import register
from pqn_torch.envs.tasks.robot_task import ActionMapping, exponential_control_steps, resample_command
from pqn_torch.envs.tasks.robots import (
    add_actuator_force_sensors,
    add_gravity_sensor,
    add_site_position_sensor,
    load_playground_scene,
)

SCENE = "locomotion/apollo/xmls/scene_mjx_feetonly_flat_terrain.xml"
SIM_DT = 0.005  # 4 physics steps per control step
FEET = ("l_foot", "r_foot")  # foot sites
FOOT_GEOMS = ("collision_l_sole", "collision_r_sole")  # their contact sensors: <geom>_floor_found
NUM_JOINTS = 32
# Joint order: torso (yaw, roll, pitch), neck (yaw, roll, pitch), left arm, right arm (shoulder aa, ie, fe,
# elbow fe, wrist roll, yaw, pitch), left leg, right leg (hip ie, aa, fe, knee fe, ankle ie, pd).
POSE_WEIGHTS = (5.0,) * 3 + (1.0,) * 3 + (1.0, 1.0, 0.1, 1.0, 1.0, 1.0, 1.0) * 2 + (1.0, 1.0, 0.01, 0.01, 1.0, 1.0) * 2
HIP_ROLL_JOINTS = (21, 27)  # l_hip_aa, r_hip_aa
HIP_ROLL_LATERAL_WEIGHT = 0.01  # their pose weight while |vy| > 0.3
IMU_SENSORS = ("gyro", "local_linvel", "accelerometer", "upvector", "global_linvel", "global_angvel", "gravity_up")
SELF_CONTACTS = tuple(
    f"{geom1}_{geom2}_found"
    for geom1, geom2 in (
        ("collision_l_hand_plate", "collision_capsule_body_l_thigh"),
        ("collision_r_hand_plate", "collision_capsule_body_r_thigh"),
        ("collision_l_sole", "collision_r_sole"),
        ("collision_capsule_body_l_shin", "collision_capsule_body_r_shin"),
        ("collision_capsule_body_l_thigh", "collision_capsule_body_r_thigh"),
    )
)

REWARD_SCALES = {
    "tracking": 1.0,
    "ang_vel_xy": -0.15,
    "orientation": -1.0,
    "feet_phase": 1.0,
    "pose": -1.0,
    "collision": -1.0,
}
TRACKING_SIGMA = 0.25
SWING_HEIGHT = 0.12  # m, the gait's foot height
STILL_COMMAND = 0.01  # |command| at or below which the gait clock holds both feet down and the pose weighs all
LATERAL_COMMAND = 0.3  # |vy| above which the hip roll may move
COMMAND_AMPLITUDE = (1.5, 0.8, 1.5)
COMMAND_NONZERO_PROBABILITY = (0.9, 0.25, 0.5)
COMMAND_MEAN_PERIOD = 5.0  # seconds between command resamplings, exponentially distributed
CONTACTS_PER_WORLD = 16
"""MuJoCo Warp contact buffer per world: both soles flat on the floor (4 contacts each) plus room for the
sole-sole and limb pairs (Playground's average of 8 over a shared batch buffer)."""
NJMAX = 96
"""Constraint rows per world: the 23 joints with friction loss, all 32 joints at a limit (a reset's joint angles
x U(0.5, 1.5) pass many), both soles on the floor (8 contacts, 4 pyramidal rows each) and 8 more single-row contacts
(95). Playground's 64 is too small: MuJoCo Warp needed 79 rows in Apollo's start states."""


@register
class ApolloJoystickFlatTerrain(HumanoidJoystick):
    """Follow a joystick velocity command on flat ground (see the module docstring)."""

    name = "ApolloJoystickFlatTerrain"
    default_config = HumanoidJoystickConfig(
        CTRL_DT, SIM_DT, episode_length=1000, contacts_per_world=CONTACTS_PER_WORLD, njmax=NJMAX
    )
    action_mapping = ActionMapping(scale=0.5, reference="home")
    home_keyframe = "knees_bent"
    start_ctrl_source = "zeros"  # Playground's Apollo reset leaves ``ctrl`` at its default
    sensors = IMU_SENSORS + SELF_CONTACTS
    feet = FEET
    foot_geoms = FOOT_GEOMS
    reward_scales = REWARD_SCALES
    reward_clip = None
    observation_layout = joystick_layout(NUM_JOINTS)
    command_range = COMMAND_AMPLITUDE
    gait_frequency = (1.25, 1.75)
    push_speed = (0.1, 2.0)
    joint_noise = (0.03,) * NUM_JOINTS
    still_command = STILL_COMMAND

    def build_spec(self) -> mujoco.MjSpec:
        spec = load_playground_scene(SCENE, "apptronik_apollo")
        add_gravity_sensor(spec, "gravity_up", "imu")
        for foot in FEET:
            add_site_position_sensor(spec, f"{foot}_world_pos", foot)
            spec.add_sensor(
                name=f"{foot}_global_linvel",
                type=mujoco.mjtSensor.mjSENS_FRAMELINVEL,
                objtype=mujoco.mjtObj.mjOBJ_SITE,
                objname=foot,
            )
        add_actuator_force_sensors(spec)
        return spec

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        super().bind(mj_model, device, dtype)
        self.pose_weights = self.constant(POSE_WEIGHTS)
        self.hip_roll_joints = torch.tensor(HIP_ROLL_JOINTS, device=device)
        self.nonzero = self.constant(COMMAND_NONZERO_PROBABILITY)

    # ----------------------------------------------------------------- command
    def initial_command(self, generator: torch.Generator, num: int, like: torch.Tensor) -> TaskState:
        """U(-a, a) per component (never zeroed at reset) and Exp(mean 5 s) steps until the next resampling."""
        return {
            "command": self.held(
                uniform(generator, (num, 3), -self.command_half_range, self.command_half_range, like=like)
            ),
            "steps_until_next_cmd": exponential_control_steps(generator, num, COMMAND_MEAN_PERIOD, self.dt, like),
        }

    def update_command(self, state: TaskState, terminated: torch.Tensor, generator: torch.Generator) -> None:
        """Count down; when due, resample per component (module docstring) and draw a new period, also drawn
        anew at a termination."""
        countdown = state["steps_until_next_cmd"]
        countdown.sub_(1)
        due = countdown <= 0
        command = state["command"]
        new_command = self.held(resample_command(generator, command, self.command_half_range, self.nonzero))
        command.copy_(torch.where(due.unsqueeze(-1), new_command, command))
        period = exponential_control_steps(generator, len(due), COMMAND_MEAN_PERIOD, self.dt, command)
        countdown.copy_(torch.where(due | terminated, period, countdown))

    # ----------------------------------------------------------------- observation and reward
    def privileged(self, physics: Physics, state: TaskState) -> list[torch.Tensor]:
        """Clean gyro, gravity, local linear velocity, joint angles - home, joint velocities, actuator forces,
        root position and root quaternion."""
        q, qd = self.joints(physics)
        return [
            self.read(physics, "gyro"),
            self.gravity(physics),
            self.read(physics, "local_linvel"),
            q - self.default_pose,
            qd,
            self.actuator_force(physics),
            physics.qpos[:, :7],
        ]

    def pose_weight(self, command: torch.Tensor) -> torch.Tensor:
        """[N, 32] pose weights: :data:`POSE_WEIGHTS`, all 1 at a zero command, the hip rolls' 0.01 while
        ``|vy| > 0.3`` (else 1)."""
        still = torch.linalg.vector_norm(command, dim=-1, keepdim=True) < STILL_COMMAND
        weights = torch.where(still, torch.ones_like(self.pose_weights), self.pose_weights)
        lateral = command[:, 1:2].abs() > LATERAL_COMMAND
        hip_roll = torch.where(lateral, HIP_ROLL_LATERAL_WEIGHT, 1.0).to(weights.dtype)
        return weights.index_copy(1, self.hip_roll_joints, hip_roll.expand(-1, len(HIP_ROLL_JOINTS)))

    def reward_terms(
        self,
        physics: Physics,
        action: torch.Tensor,
        state: TaskState,
        contact: torch.Tensor,
        first_contact: torch.Tensor,
        terminated: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Playground's unscaled reward terms [N] of non-zero scale."""
        command = state["command"]
        gyro = self.read(physics, "gyro")
        q, _ = self.joints(physics)
        tracking = self.tracking_terms(physics, command, TRACKING_SIGMA)
        touching = torch.cat([self.read(physics, name) for name in SELF_CONTACTS], dim=-1) > 0
        return {
            "tracking": tracking["tracking_lin_vel"] + 0.5 * tracking["tracking_ang_vel"],
            "ang_vel_xy": terms.ang_vel_xy(gyro),
            "orientation": terms.orientation(self.read(physics, "upvector")),
            "feet_phase": terms.feet_phase(self.feet_height(physics), state["phase"], SWING_HEIGHT),
            "pose": terms.pose_deviation(q - self.default_pose, self.pose_weight(command)),
            "collision": touching.any(-1).to(q.dtype),
        }

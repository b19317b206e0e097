"""Google Barkour vB joystick (MuJoCo Playground 0.2.0's ``BarkourJoystick``): follow a velocity command on flat
ground while kicks shove the torso.

The scene is MuJoCo Menagerie's ``google_barkour_vb/scene_mjx.xml`` with ``barkour_vb_mjx.xml`` (third-party
model data, see ``pqn_torch/third_party/playground/NOTICE``) without visual meshes, edited in code as
Playground edits it: position gain Kp 35 and joint damping 0.5239 (the actuators keep their own velocity term
-0.5), and a floor-contact sensor per foot. The Menagerie version shipped here lacks what Playground 0.2.0's
pinned one has: names on the four foot spheres and the ``upvector`` and ``local_linvel`` sensors; they are added
in code (the up axis of the IMU site, which only turns the torso about z, and the linear velocity in the torso's
own frame, x toward the head, as Brax's original Barkour joystick measured it). On the
:class:`~pqn_torch.envs.tasks.locomotion.history_joystick.HistoryJoystick` base (home reset, commands, frame stack).

- Control: ``ctrl = clip(home_pose + 0.3 * action, [-0.7, -1, 0.05], [0.52, 2.1, 2.1])`` per leg.
- Command: vx U(-0.6, 1.5), vy U(-0.8, 0.8), yaw rate U(-0.7, 0.7), drawn at reset and every 501 steps.
- Observation (465): 15 frames of 31 (:data:`FRAME_LAYOUT`), newest first.
- Reward: ``clip(dt * sum(scale * term), 0, 1e4)`` with Playground's ten terms (:data:`REWARD_SCALES`).
- Termination: the torso upside down (up axis z < 0), a joint outside the control clip box, or the torso
  frame below 0.18 m.
- Kicks (``perturbations``, on by default as in Playground): per episode a wait ``W`` in 50..149 steps, a
  length ``D`` in 1..9 steps and a speed ``v`` U(0.1, 1.0) m/s are drawn; whenever the step counter is a
  positive multiple of ``W`` a kick starts in a random horizontal direction, and for ``i = 0 .. D-1`` steps after
  its start the torso gets ``0.5 sin(pi i / D) * m v / (D dt)`` newtons (``m`` the robot's mass) through
  ``xfrc_applied``.

Deviation from Playground (a defect fixed): Playground's ``stand_still`` cost gates on the normalized command's
y component (``(c_xy / |c_xy|)_y < 0.1``), which charges standing still while walking forward is asked and never
charges it at a zero command (0 / 0 is NaN); here it is charged when ``|c_xy| < 0.1``, what the term is for.

Task state: ``command``, ``step``, ``obs_history`` [N, 465], ``last_act`` [N, 12], ``feet_air_time``,
``last_contact``, ``swing_peak`` [N, 4], and the kicks' ``kick_wait_steps``, ``kick_duration_steps``,
``vel_kick``, ``kick_dir`` [N, 3], ``last_kick_step`` (-100,000 before the first kick: Playground's -inf, kept
finite so that ``reset_to`` accepts it back).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics
from pqn_torch.envs.tasks import reward_terms as terms
from pqn_torch.envs.tasks.base import ControlMapping, TaskState
from pqn_torch.envs.tasks.common import uniform
from pqn_torch.envs.tasks.locomotion.history_joystick import HistoryJoystick, stacked_layout
from pqn_torch.envs.tasks.registry import register
from pqn_torch.envs.tasks.robot_task import ActionMapping, FeetContactJoystickTask, JoystickConfig
from pqn_torch.envs.tasks.robots import (
    add_actuator_force_sensors,
    add_site_position_sensor,
    load_playground_scene,
    set_position_gains,
)

ROBOT = "google_barkour_vb"
SCENE = f"menagerie/{ROBOT}/scene_mjx.xml"
FEET = ("foot_front_left", "foot_hind_left", "foot_front_right", "foot_hind_right")
KP, KD = 35.0, 0.5239
CTRL_DT, SIM_DT = 0.02, 0.004
TARGET_LOW, TARGET_HIGH = (-0.7, -1.0, 0.05) * 4, (0.52, 2.1, 2.1) * 4
FRAME_LAYOUT = (
    ("yaw rate * 0.25", 1),
    ("torso up axis in the world", 3),
    ("command * (2, 2, 0.25)", 3),
    ("joint angles - home pose", 12),
    ("last action", 12),
)
HISTORY = 15
REWARD_SCALES = {
    "tracking_lin_vel": 1.5,
    "tracking_ang_vel": 0.8,
    "lin_vel_z": -2.0,
    "ang_vel_xy": -0.05,
    "orientation": -5.0,
    "torques": -0.0002,
    "action_rate": -0.1,
    "stand_still": -0.5,
    "termination": -1.0,
    "feet_air_time": 0.2,
}
STANDING_COMMAND = 0.1  # |c_xy| below which stand_still is charged
MOVING_COMMAND = 0.05  # |c_xy| above which feet_air_time pays
FALLEN_HEIGHT = 0.18
KICK_WAIT_STEPS = (50, 150)  # integers in [low, high)
KICK_DURATION_STEPS = (1, 10)
KICK_SPEED = (0.1, 1.0)  # m/s
NO_KICK = -100_000
"""``last_kick_step`` before the first kick (Playground's -inf): the steps since it are clipped to 100,000."""


@dataclass
class BarkourConfig(JoystickConfig):
    """Adds ``perturbations``: the kicks on the torso (on by default, as Playground)."""

    perturbations: bool = True


class TorsoKicks:
    """Playground's Barkour kicks on one body through ``xfrc_applied`` (see the module docstring)."""

    def __init__(self, mj_model: mujoco.MjModel, body: str, dt: float) -> None:
        self.body = mj_model.body(body).id
        self.mass = float(mj_model.body_subtreemass[self.body])
        self.dt = dt

    def initial_state(self, generator: torch.Generator, num: int, like: torch.Tensor) -> TaskState:
        def steps(bounds: tuple[int, int]) -> torch.Tensor:
            return torch.randint(*bounds, (num,), generator=generator, device=like.device)

        return {
            "kick_wait_steps": steps(KICK_WAIT_STEPS),
            "kick_duration_steps": steps(KICK_DURATION_STEPS),
            "vel_kick": uniform(generator, (num,), *KICK_SPEED, like=like),
            "kick_dir": like.new_zeros(num, 3),
            "last_kick_step": torch.full((num,), NO_KICK, dtype=torch.int64, device=like.device),
        }

    def apply(self, physics: Physics, state: TaskState, generator: torch.Generator) -> None:
        """Start a kick when the step counter is a positive multiple of the wait; write this step's force."""
        step = state["step"]
        start = (torch.remainder(step, state["kick_wait_steps"]) == 0) & (step != 0)
        last = state["last_kick_step"]
        last.copy_(torch.where(start, step, last))
        dtype = state["vel_kick"].dtype
        since = (step - last).clamp(0, -NO_KICK).to(dtype)
        length = state["kick_duration_steps"].to(dtype)
        angle = uniform(generator, (physics.num_worlds,), 0.0, 2 * math.pi, like=state["vel_kick"])
        direction = torch.stack([torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)], dim=-1)
        state["kick_dir"].copy_(torch.where(start.unsqueeze(-1), direction, state["kick_dir"]))
        force = 0.5 * torch.sin(math.pi * since / length) * self.mass * state["vel_kick"] / (length * self.dt)
        force = torch.where(since < length, force, 0.0)
        physics.xfrc_applied[:, self.body].zero_()
        physics.xfrc_applied[:, self.body, :3] = force.unsqueeze(-1) * state["kick_dir"]


@register
class BarkourJoystick(FeetContactJoystickTask, HistoryJoystick):
    """Follow a joystick velocity command under kicks (see the module docstring)."""

    config: BarkourConfig
    name = "BarkourJoystick"
    default_config = BarkourConfig(CTRL_DT, SIM_DT, episode_length=1000, contacts_per_world=4, njmax=28)
    action_mapping = ActionMapping(scale=0.3, reference="home")
    sensors = ("gyro", "upvector", "local_linvel", "global_linvel", "global_angvel")
    feet = FEET
    reward_scales = REWARD_SCALES
    frame_size = sum(size for _, size in FRAME_LAYOUT)
    history_length = HISTORY
    observation_layout = stacked_layout(FRAME_LAYOUT, HISTORY)
    command_range = ((-0.6, -0.8, -0.7), (1.5, 0.8, 0.7))
    command_scale = (2.0, 2.0, 0.25)
    torso = "torso"

    def build_spec(self) -> mujoco.MjSpec:
        spec = load_playground_scene(SCENE, ROBOT)
        set_position_gains(spec, KP, KD)
        for foot in FEET:
            lower_leg = spec.body(foot.replace("foot", "lower_leg"))
            (sphere,) = [geom for geom in lower_leg.geoms if geom.type == mujoco.mjtGeom.mjGEOM_SPHERE]
            sphere.name = foot
            spec.add_sensor(
                name=f"{foot}_floor_found",
                type=mujoco.mjtSensor.mjSENS_CONTACT,
                objtype=mujoco.mjtObj.mjOBJ_GEOM,
                objname=foot,
                reftype=mujoco.mjtObj.mjOBJ_GEOM,
                refname="floor",
                intprm=[1, 1, 1],  # data "found", reduce "mindist", 1 contact
            )
            add_site_position_sensor(spec, f"{foot}_world_pos", foot)
            spec.add_sensor(
                name=f"{foot}_global_linvel",
                type=mujoco.mjtSensor.mjSENS_FRAMELINVEL,
                objtype=mujoco.mjtObj.mjOBJ_SITE,
                objname=foot,
            )
        spec.add_sensor(
            name="upvector",
            type=mujoco.mjtSensor.mjSENS_FRAMEZAXIS,
            objtype=mujoco.mjtObj.mjOBJ_SITE,
            objname="imu_frame",
        )
        spec.add_sensor(
            name="local_linvel",
            type=mujoco.mjtSensor.mjSENS_VELOCIMETER,
            objtype=mujoco.mjtObj.mjOBJ_SITE,
            objname="base_frame",
        )
        self.add_torso_position_sensor(spec, self.torso)
        add_actuator_force_sensors(spec)
        return spec

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        super().bind(mj_model, device, dtype)
        self.target_low, self.target_high = self.constant(TARGET_LOW), self.constant(TARGET_HIGH)
        self.kicks = TorsoKicks(mj_model, self.torso, self.dt)

    def initial_state(self, generator: torch.Generator, num: int, physics: Physics) -> TaskState:
        state = super().initial_state(generator, num, physics)
        state.update(self.feet_air_time.initial_state(num, physics.qpos))
        state.update(self.kicks.initial_state(generator, num, physics.qpos))
        return state

    # ----------------------------------------------------------------- step
    def control_mapping(self) -> ControlMapping:
        """The targets are clipped to Barkour's joint target limits (not the actuators' ``ctrlrange``)."""
        return dataclasses.replace(super().control_mapping(), clip_low=TARGET_LOW, clip_high=TARGET_HIGH)

    def control(self, physics: Physics, action: torch.Tensor, state: TaskState, generator: torch.Generator) -> None:
        if self.config.perturbations:
            self.kicks.apply(physics, state, generator)
        targets = torch.clamp(self.motor_targets(physics, action), self.target_low, self.target_high)
        physics.ctrl.copy_(targets)

    def gyro_reading(self, physics: Physics) -> torch.Tensor:
        return self.read(physics, "gyro")[:, 2:3] * 0.25

    def terminated(self, physics: Physics) -> torch.Tensor:
        q, _ = self.joints(physics)
        outside = ((q < self.target_low) | (q > self.target_high)).any(-1)
        return (self.read(physics, "upvector")[:, 2] < 0) | outside | (self.torso_height(physics) < FALLEN_HEIGHT)

    def before_observe(self, physics: Physics, state: TaskState, generator: torch.Generator) -> None:
        """This step's noisy frame onto the stack the observation shows."""
        self.push_frame(state, self.noisy_frame(physics, state, generator))

    def advance_clocks(self, state: TaskState, terminated: torch.Tensor, generator: torch.Generator) -> None:
        """The command counter (:meth:`HistoryJoystick.advance_counter`)."""
        self.advance_counter(state, terminated, generator)

    def reward_terms(
        self,
        physics: Physics,
        action: torch.Tensor,
        state: TaskState,
        contact: torch.Tensor,
        first_contact: torch.Tensor,
        terminated: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Playground's unscaled Barkour terms [N] (``first_contact``: feet landing this step; no term reads
        ``contact``)."""
        command = state["command"]
        planar_command = torch.linalg.vector_norm(command[:, :2], dim=-1)
        q, _ = self.joints(physics)
        standing = (planar_command < STANDING_COMMAND).to(q.dtype)
        moving = (planar_command > MOVING_COMMAND).to(q.dtype)
        return self.base_motion_terms(physics, command) | {
            "torques": terms.torques(self.actuator_force(physics)),
            "action_rate": terms.action_rate(action, state["last_act"]),
            "stand_still": terms.joint_deviation(q - self.default_pose) * standing,
            "termination": self.termination_cost(state, terminated),
            "feet_air_time": terms.feet_air_time(state["feet_air_time"], first_contact.to(q.dtype), moving),
        }

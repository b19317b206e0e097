"""ROBOTIS OP3 joystick (MuJoCo Playground 0.2.0's ``Op3Joystick``): a small humanoid follows a velocity command.

Playground's ``locomotion/op3/xmls/scene_mjx_feetonly.xml`` (third-party model data, see
``pqn_torch/third_party/playground/NOTICE``) without visual meshes: its "collision"-class simplified convex
meshes collide with nothing (contype = conaffinity = 0, in no pair), so only the four foot boxes touch the
floor. Playground's in-code edits: Kp 21.1, joint damping 1.084, 10 convex-collision iterations. On the
:class:`~pqn_torch.envs.tasks.locomotion.history_joystick.HistoryJoystick` base (home reset, commands, frame
stack).

- Control: ``ctrl = clip(home_pose + 0.3 * action, ctrlrange)`` (+-pi), home = the "stand_bent_knees" keyframe.
- Command: vx U(-0.6, 1.5), vy U(-0.8, 0.8), yaw rate U(-0.7, 0.7), all 0 with probability 0.1; drawn at reset
  and every 501 steps.
- Observation (147): 3 frames of 49 (:data:`FRAME_LAYOUT`), newest first.
- Reward: ``clip(dt * sum(scale * term), 0, 1e4)`` with Playground's eleven non-zero terms
  (:data:`REWARD_SCALES`; its ``feet_clearance`` has scale 0 and is left out).
- Termination: a joint outside the control range, the torso tilted (up axis z < 0.85) or its frame below 0.21 m.
- No kicks: Playground's OP3 has kick code but never calls it.

Task state: ``command``, ``step``, ``obs_history`` [N, 147], ``last_act``, ``last_last_act`` [N, 20].
"""

from __future__ import annotations

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics
from pqn_torch.envs.tasks import reward_terms as terms
from pqn_torch.envs.tasks.base import TaskState, Transition
from pqn_torch.envs.tasks.locomotion.history_joystick import HistoryJoystick, stacked_layout
from pqn_torch.envs.tasks.registry import register
from pqn_torch.envs.tasks.robot_task import ActionMapping, JoystickConfig
from pqn_torch.envs.tasks.robots import (
    add_actuator_force_sensors,
    add_site_position_sensor,
    load_playground_scene,
    set_position_gains,
)

SCENE = "locomotion/op3/xmls/scene_mjx_feetonly.xml"
FEET = ("left_foot", "right_foot")
FOOT_GEOMS = (("l_foot1", "l_foot2"), ("r_foot1", "r_foot2"))
KP, KD = 21.1, 1.084
CTRL_DT, SIM_DT = 0.02, 0.004
FRAME_LAYOUT = (
    ("gyro", 3),
    ("torso up axis in the world", 3),
    ("command: vx, vy, yaw rate", 3),
    ("joint angles - home pose", 20),
    ("last action", 20),
)
HISTORY = 3
REWARD_SCALES = {
    "tracking_lin_vel": 1.5,
    "tracking_ang_vel": 0.8,
    "lin_vel_z": -2.0,
    "ang_vel_xy": -0.05,
    "orientation": -5.0,
    "torques": -0.0002,
    "action_rate": -0.01,
    "zero_cmd": -0.5,
    "termination": -1.0,
    "feet_slip": -0.1,
    "energy": -0.0001,
}
ZERO_COMMAND = 0.1  # |c| below which zero_cmd charges the actions
UPRIGHT, FALLEN_HEIGHT = 0.85, 0.21


@register
class Op3Joystick(HistoryJoystick):
    """Follow a joystick velocity command (see the module docstring)."""

    name = "Op3Joystick"
    default_config = JoystickConfig(CTRL_DT, SIM_DT, episode_length=1000, contacts_per_world=24, njmax=144)
    action_mapping = ActionMapping(scale=0.3, reference="home", clip=True)
    home_keyframe = "stand_bent_knees"
    sensors = ("gyro", "upvector", "local_linvel", "global_linvel", "global_angvel")
    feet = FEET
    foot_geoms = FOOT_GEOMS
    remembered_actions = 2
    reward_scales = REWARD_SCALES
    frame_size = sum(size for _, size in FRAME_LAYOUT)
    history_length = HISTORY
    observation_layout = stacked_layout(FRAME_LAYOUT, HISTORY)
    command_range = ((-0.6, -0.8, -0.7), (1.5, 0.8, 0.7))
    zero_command_probability = 0.1
    torso = "body_link"

    def build_spec(self) -> mujoco.MjSpec:
        spec = load_playground_scene(SCENE, "robotis_op3")
        spec.option.ccd_iterations = 10
        set_position_gains(spec, KP, KD)
        for foot in FEET:
            add_site_position_sensor(spec, f"{foot}_world_pos", foot)
        self.add_torso_position_sensor(spec, self.torso)
        add_actuator_force_sensors(spec)
        return spec

    def terminated(self, physics: Physics) -> torch.Tensor:
        q, _ = self.joints(physics)
        outside = ((q < self.ctrl_low) | (q > self.ctrl_high)).any(-1)
        return outside | (self.read(physics, "upvector")[:, 2] < UPRIGHT) | (self.torso_height(physics) < FALLEN_HEIGHT)

    def transition(
        self, physics: Physics, action: torch.Tensor, state: TaskState, generator: torch.Generator
    ) -> Transition:
        obs = self.push_frame(state, self.noisy_frame(physics, state, generator))
        terminated = self.terminated(physics)
        reward, shares = self.total_reward(self.reward_terms(physics, action, state, terminated))
        self.remember_action(state, action)
        self.advance_counter(state, terminated, generator)
        return Transition(reward=reward, obs=obs, critic_obs=obs, terminated=terminated, reward_terms=shares)

    def reward_terms(
        self, physics: Physics, action: torch.Tensor, state: TaskState, terminated: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Playground's unscaled OP3 terms [N]."""
        command = state["command"]
        _, qd = self.joints(physics)
        force = self.actuator_force(physics)
        zero_command = (torch.linalg.vector_norm(command, dim=-1) < ZERO_COMMAND).to(qd.dtype)
        feet_speed_xy = torch.linalg.vector_norm(self.feet_velocity(physics)[..., :2], dim=-1)
        return self.base_motion_terms(physics, command) | {
            "torques": terms.torques(force),
            "action_rate": terms.action_rate(action, state["last_act"], state["last_last_act"]),
            "zero_cmd": (action**2).sum(-1) * zero_command,
            "termination": self.termination_cost(state, terminated),
            "feet_slip": terms.feet_slip(feet_speed_xy, self.feet_contact(physics), torch.ones_like(zero_command)),
            "energy": terms.energy(qd, force),
        }

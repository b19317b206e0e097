"""Go1Handstand and Go1Footstand (MuJoCo Playground 0.2.0 semantics): balance on the front or the rear legs.

Model: Playground's Go1 scene with leg collisions and 12 floor-contact sensors on the front legs'
calves, thighs and hips, with the Go1 edits of :class:`~pqn_torch.envs.tasks.locomotion.go1.Go1Task`. Episodes of
500 steps (10 s).

- Reset: the home keyframe, x and y shifted by U(-0.5, 0.5), yaw U(-3.14, 3.14), root velocity
  U(-0.5, 0.5); ``ctrl`` = the joint angles. (Playground's optional crouched start has probability 0.)
- Control: ``ctrl += 0.3 * action``: the position targets are task state, integrated by the policy.
- Observation (45): local linear velocity, gyro, gravity (IMU frame), joint angles - home, joint
  velocities (all noisy), last action. Critic (94) adds the clean gyro, accelerometer, local linear
  velocity, global angular velocity, joint angles, joint velocities, actuator forces and the IMU height.
- Reward: ``clip(dt * sum(scale * term), 0, 1e4)`` with :data:`HANDSTAND_REWARD_SCALES`: IMU height
  (up to 0.55 m handstand / 0.53 m footstand), the trunk's forward axis pointing down (handstand) or up
  (footstand), a cost for any foot touching the floor, the pose of the legs that should stay in the air
  (rear legs for the handstand, front legs for the footstand), and soft joint limits (90 % of the range).
  Playground's zero-scale terms (action rate, energy, torques, ...) are not computed.
- Termination: the trunk's up axis below -0.25, or any of the 12 front-leg calf/thigh/hip sensors touching
  the floor. As in Playground, the footstand uses the same front-leg sensors (its scene has none on the
  rear legs).

Task state (``env.task_state``): ``last_act`` [N, 12].
"""

from __future__ import annotations

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics, sensor_slice
from pqn_torch.envs.tasks import reward_terms as terms
from pqn_torch.envs.tasks.base import StartStates, TaskState, Transition
from pqn_torch.envs.tasks.locomotion.go1 import (
    CTRL_DT,
    GO1_NOISE,
    LINVEL_LAYOUT,
    PROPRIOCEPTION_LAYOUT,
    SIM_DT,
    Go1Task,
)
from pqn_torch.envs.tasks.registry import register
from pqn_torch.envs.tasks.robot_task import ActionMapping, RobotConfig
from pqn_torch.envs.tasks.robots import soft_limits

HANDSTAND_REWARD_SCALES = {"height": 1.0, "orientation": 1.0, "contact": -0.1, "dof_pos_limits": -0.5, "pose": -0.1}
UNWANTED_CONTACTS = (
    "fl_calf1",
    "fl_calf2",
    "fr_calf1",
    "fr_calf2",
    "fl_thigh1",
    "fl_thigh2",
    "fl_thigh3",
    "fr_thigh1",
    "fr_thigh2",
    "fr_thigh3",
    "fl_hip",
    "fr_hip",
)
FALLEN_UP_AXIS = -0.25


@register
class Go1Handstand(Go1Task):
    """Stand on the front legs, trunk pointing down (see the module docstring)."""

    name = "Go1Handstand"
    scene = "scene_mjx_flat_terrain.xml"
    default_config = RobotConfig(CTRL_DT, SIM_DT, episode_length=500, contacts_per_world=30, njmax=200)
    action_mapping = ActionMapping(scale=0.3, reference="ctrl")
    noise_scales = {**GO1_NOISE, "joint_pos": 0.01}
    reward_scales = HANDSTAND_REWARD_SCALES
    observation_layout = LINVEL_LAYOUT + PROPRIOCEPTION_LAYOUT + (("last action", 12),)
    desired_height = 0.55
    desired_forward = (0.0, 0.0, -1.0)
    airborne_joints = slice(6, 12)  # the rear legs

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        super().bind(mj_model, device, dtype)
        self.soft_low, self.soft_high = map(self.constant, soft_limits(*self.joint_range, 0.9))
        self.desired_forward_axis = self.constant(self.desired_forward)
        self._unwanted = [sensor_slice(mj_model, f"{geom}_floor_found").start for geom in UNWANTED_CONTACTS]

    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        return self.home_start(generator, num, physics)

    def unwanted_contact(self, physics: Physics) -> torch.Tensor:
        """Whether any front-leg calf, thigh or hip touches the floor, [N] bool."""
        return torch.stack([physics.sensordata[:, column] for column in self._unwanted], dim=-1).gt(0).any(dim=-1)

    def transition(
        self, physics: Physics, action: torch.Tensor, state: TaskState, generator: torch.Generator
    ) -> Transition:
        obs, critic_obs = self.observe(physics, state, generator)
        terminated = (self.read(physics, "upvector")[:, 2] < FALLEN_UP_AXIS) | self.unwanted_contact(physics)
        reward, shares = self.total_reward(self.reward_terms(physics))
        self.remember_action(state, action)
        return Transition(reward=reward, obs=obs, critic_obs=critic_obs, terminated=terminated, reward_terms=shares)

    def reward_terms(self, physics: Physics) -> dict[str, torch.Tensor]:
        """Playground's unscaled handstand/footstand reward terms with non-zero scale [N]."""
        q, _ = self.joints(physics)
        height = self.torso_height(physics)[:, 0].clamp(max=self.desired_height)
        alignment = (self.read(physics, "forwardvector") * self.desired_forward_axis).sum(-1)
        pose_error = q[:, self.airborne_joints] - self.default_pose[self.airborne_joints]
        return {
            "height": torch.exp(-(self.desired_height - height)),
            "orientation": (0.5 * alignment + 0.5) ** 2,
            "contact": self.feet_contact(physics).any(dim=-1).to(q.dtype),
            "dof_pos_limits": terms.dof_pos_limits(q, self.soft_low, self.soft_high),
            "pose": (pose_error**2).sum(-1),
        }

    def observe(
        self, physics: Physics, state: TaskState, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        obs = torch.cat(self.proprioception(physics, generator, linvel=True) + [state["last_act"]], dim=-1)
        return obs, torch.cat([obs, *self.privileged(physics)], dim=-1)


@register
class Go1Footstand(Go1Handstand):
    """Stand on the rear legs, trunk pointing up (see the module docstring)."""

    name = "Go1Footstand"
    desired_height = 0.53
    desired_forward = (0.0, 0.0, 1.0)
    airborne_joints = slice(0, 6)  # the front legs

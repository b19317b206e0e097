"""Go1Getup (MuJoCo Playground 0.2.0 semantics): recover from a fall and stand at the home pose.

Model: Playground's full-collision Go1 scene (capsule/cylinder legs and trunk collide with the floor),
with the Go1 edits of :class:`~pqn_torch.envs.tasks.locomotion.go1.Go1Task`. Episodes of 300 steps (6 s).

- Reset: with probability 0.6 a drop: trunk at 0.5 m with a uniformly random orientation (a normalized
  Gaussian quaternion) and joints uniform in their ranges; otherwise the home keyframe. Root velocity
  U(-0.5, 0.5) in all 6 dofs. Then 0.5 s (125 physics steps) of settling with the position targets at the
  initial joint angles, and the clock reset to 0.
- Control: ``ctrl = current joint angles + 0.5 * action`` (relative to where the joints are).
- Observation (42): gyro, gravity (IMU frame), joint angles - home, joint velocities (all noisy), last
  action. Critic (91) adds the clean gyro, accelerometer, local linear velocity, global angular velocity,
  joint angles, joint velocities, actuator forces and the IMU height.
- Reward: ``clip(dt * sum(scale * term), 0, 1e4)`` with :data:`GETUP_REWARD_SCALES`: upright orientation,
  trunk height (up to 0.275 m), home posture (only while upright), stillness of the policy output (only
  while upright at height), and costs on action rate (first and second difference), torques, soft joint
  limits (95 % of the range), joint accelerations (``qacc``) and joint speeds above 2 pi rad/s.
- Termination: none (Playground's energy threshold is infinite); the episode ends at its length.

Task state (``env.task_state``): ``last_act``, ``last_last_act`` [N, 12].
"""

from __future__ import annotations

import math

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics
from pqn_torch.envs.tasks import reward_terms as terms
from pqn_torch.envs.tasks.base import StartStates, TaskState, Transition
from pqn_torch.envs.tasks.locomotion.go1 import CTRL_DT, PROPRIOCEPTION_LAYOUT, SIM_DT, Go1Task
from pqn_torch.envs.tasks.registry import register
from pqn_torch.envs.tasks.robot_task import ActionMapping, RobotConfig
from pqn_torch.envs.tasks.robots import soft_limits

GETUP_REWARD_SCALES = {
    "orientation": 1.0,
    "torso_height": 1.0,
    "posture": 1.0,
    "stand_still": 1.0,
    "action_rate": -0.001,
    "dof_pos_limits": -0.1,
    "torques": -1e-5,
    "dof_acc": -2.5e-7,
    "dof_vel": -0.1,
}
DROP_PROBABILITY = 0.6
DROP_HEIGHT = 0.5
SETTLE_TIME = 0.5
DESIRED_HEIGHT = 0.275
UPRIGHT_TOLERANCE = 0.01  # squared distance of the gravity direction from straight down
HEIGHT_TOLERANCE = 0.005
MAX_JOINT_SPEED = 2 * math.pi


@register
class Go1Getup(Go1Task):
    """Stand up from a random fall (see the module docstring)."""

    name = "Go1Getup"
    scene = "scene_mjx_fullcollisions_flat_terrain.xml"
    default_config = RobotConfig(CTRL_DT, SIM_DT, episode_length=300, contacts_per_world=30, njmax=250)
    action_mapping = ActionMapping(scale=0.5, reference="joints")
    remembered_actions = 2
    reward_scales = GETUP_REWARD_SCALES
    observation_layout = PROPRIOCEPTION_LAYOUT + (("last action", 12),)

    def __init__(self, **overrides) -> None:
        super().__init__(**overrides)
        self.settle_steps = round(SETTLE_TIME / self.config.sim_dt)

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        super().bind(mj_model, device, dtype)
        self.soft_low, self.soft_high = map(self.constant, soft_limits(*self.joint_range, 0.95))
        self.straight_down = self.constant((0.0, 0.0, -1.0))

    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        """A drop (probability 0.6) or the home pose, with a random root velocity; settled by the env."""
        joint_range = (self.joint_low, self.joint_high)
        qpos = self.drop_or_home(generator, num, physics.qpos, DROP_PROBABILITY, DROP_HEIGHT, joint_range)
        return StartStates(qpos=qpos, qvel=self.random_root_velocity(generator, num, physics))

    def transition(
        self, physics: Physics, action: torch.Tensor, state: TaskState, generator: torch.Generator
    ) -> Transition:
        obs, critic_obs = self.observe(physics, state, generator)
        reward, shares = self.total_reward(self.reward_terms(physics, action, state))
        self.remember_action(state, action)
        never = torch.zeros(physics.num_worlds, dtype=torch.bool, device=physics.device)
        return Transition(reward=reward, obs=obs, critic_obs=critic_obs, terminated=never, reward_terms=shares)

    def reward_terms(self, physics: Physics, action: torch.Tensor, state: TaskState) -> dict[str, torch.Tensor]:
        """Playground's unscaled getup reward terms [N]."""
        q, qd = self.joints(physics)
        height = self.torso_height(physics)[:, 0].clamp(max=DESIRED_HEIGHT)
        tilt = ((self.straight_down - self.gravity(physics)) ** 2).sum(-1)
        upright = (tilt < UPRIGHT_TOLERANCE).to(q.dtype)
        at_height = (DESIRED_HEIGHT - height < HEIGHT_TOLERANCE).to(q.dtype)
        return {
            "orientation": torch.exp(-2.0 * tilt),
            "torso_height": torch.exp(height) - 1.0,
            "posture": upright * torch.exp(-0.5 * ((q - self.default_pose) ** 2).sum(-1)),
            "stand_still": upright * at_height * torch.exp(-0.5 * (action**2).sum(-1)),
            "action_rate": terms.action_rate(action, state["last_act"], state["last_last_act"]),
            "torques": terms.torques(self.actuator_force(physics)),
            "dof_pos_limits": terms.dof_pos_limits(q, self.soft_low, self.soft_high),
            "dof_acc": terms.dof_acc(physics.qacc[:, self.joint_qvel]),
            "dof_vel": terms.dof_vel(qd, MAX_JOINT_SPEED),
        }

    def observe(
        self, physics: Physics, state: TaskState, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        obs = torch.cat(self.proprioception(physics, generator, linvel=False) + [state["last_act"]], dim=-1)
        return obs, torch.cat([obs, *self.privileged(physics)], dim=-1)

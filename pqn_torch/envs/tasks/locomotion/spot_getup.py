"""SpotGetup (MuJoCo Playground 0.2.0 semantics): recover from a fall and stand at the home pose.

Model: Playground's full-collision Spot scene (capsule legs and cylinder trunk collide with the floor), with
the Spot edits of :class:`~pqn_torch.envs.tasks.locomotion.spot.SpotTask` and Kp 400, Kd 20. Episodes of
300 steps (6 s).

- Reset: with probability 0.6 a drop: trunk at 1 m with a uniformly random orientation (a normalized Gaussian
  quaternion) and joints uniform in the actuators' ``ctrlrange`` (the joint ranges); otherwise the home
  keyframe. At rest. Then 0.5 s (125 physics steps) of settling with the position targets at the initial joint
  angles, and the clock reset to 0.
- Control: ``ctrl = clip(current joint angles + 0.6 * action, ctrlrange)``.
- Observation (30, the critic's too): gyro, up axis (IMU frame), joint angles - home (all noisy), last action.
- Reward: ``clip(dt * sum(term), 0, 1e4)`` with Playground's four terms of non-zero scale (1 each): upright
  orientation ``exp(-2 |[0, 0, 1] - up|^2)``, trunk height ``1 - clip((0.46 - z) / 0.46, 0, 1)``, home posture
  ``exp(-0.5 |q - q0|^2)`` while upright (``|[0, 0, 1] - up|^2 < 0.01``), stillness of the policy output
  ``exp(-0.5 |a|^2)`` while upright at the home height (within 0.5 %). Playground's zero-scale terms (torques,
  action rate) are not computed.
- Termination: a joint outside its actuator's ``ctrlrange``.

As in the joystick tasks, the observed tilt is the world's up axis in the IMU frame (a deviation from
Playground, which observes the IMU's up axis in world coordinates; see ``spot.py``).

Task state (``env.task_state``): ``last_act`` [N, 12].
"""

from __future__ import annotations

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics
from pqn_torch.envs.tasks.base import StartStates, TaskState, Transition
from pqn_torch.envs.tasks.locomotion.spot import CTRL_DT, JOINTS, SIM_DT, SpotTask
from pqn_torch.envs.tasks.registry import register
from pqn_torch.envs.tasks.robot_task import ActionMapping, RobotConfig

GETUP_REWARD_SCALES = {"orientation": 1.0, "torso_height": 1.0, "posture": 1.0, "stand_still": 1.0}
DROP_PROBABILITY = 0.6
DROP_HEIGHT = 1.0
SETTLE_TIME = 0.5
UPRIGHT_TOLERANCE = 0.01  # squared distance of the up axis from straight up
HEIGHT_TOLERANCE = 0.005  # relative height error counted as at the home height


@register
class SpotGetup(SpotTask):
    """Stand up from a random fall (see the module docstring)."""

    name = "SpotGetup"
    scene = "scene_mjx_flat_terrain.xml"
    gains = (400.0, 20.0)
    default_config = RobotConfig(CTRL_DT, SIM_DT, episode_length=300, contacts_per_world=30, njmax=132)
    action_mapping = ActionMapping(scale=0.6, reference="joints", clip=True)
    noise_scales = {"joint_pos": 0.01, "gyro": 0.2, "gravity": 0.05}
    reward_scales = GETUP_REWARD_SCALES
    observation_layout = (
        ("gyro (noisy)", 3),
        ("up axis in the IMU frame (noisy)", 3),
        ("joint angles - home pose (noisy)", JOINTS),
        ("last action", JOINTS),
    )

    def __init__(self, **overrides) -> None:
        super().__init__(**overrides)
        self.settle_steps = round(SETTLE_TIME / self.config.sim_dt)

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        super().bind(mj_model, device, dtype)
        self.home_height = float(mj_model.keyframe(self.home_keyframe).qpos[2])
        self.straight_up = self.constant((0.0, 0.0, 1.0))

    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        """A drop (probability 0.6) or the home pose, at rest; settled by the env."""
        joint_range = (self.ctrl_low, self.ctrl_high)
        qpos = self.drop_or_home(generator, num, physics.qpos, DROP_PROBABILITY, DROP_HEIGHT, joint_range)
        return StartStates(qpos=qpos, qvel=physics.qvel.new_zeros(num, physics.qvel.shape[1]))

    def joints_out_of_range(self, physics: Physics) -> torch.Tensor:
        """[N] bool: a joint outside its actuator's ``ctrlrange``."""
        q, _ = self.joints(physics)
        return ((q < self.ctrl_low) | (q > self.ctrl_high)).any(dim=-1)

    def transition(
        self, physics: Physics, action: torch.Tensor, state: TaskState, generator: torch.Generator
    ) -> Transition:
        obs, critic_obs = self.observe(physics, state, generator)
        terminated = self.joints_out_of_range(physics)
        reward, shares = self.total_reward(self.reward_terms(physics, action))
        self.remember_action(state, action)
        return Transition(reward=reward, obs=obs, critic_obs=critic_obs, terminated=terminated, reward_terms=shares)

    def reward_terms(self, physics: Physics, action: torch.Tensor) -> dict[str, torch.Tensor]:
        """Playground's unscaled getup reward terms with non-zero scale [N]."""
        q, _ = self.joints(physics)
        tilt = ((self.straight_up - self.up_axis(physics)) ** 2).sum(-1)
        height_error = ((self.home_height - physics.qpos[:, 2]) / self.home_height).clamp(0.0, 1.0)
        upright = (tilt < UPRIGHT_TOLERANCE).to(q.dtype)
        at_height = (height_error < HEIGHT_TOLERANCE).to(q.dtype)
        return {
            "orientation": torch.exp(-2.0 * tilt),
            "torso_height": 1.0 - height_error,
            "posture": upright * torch.exp(-0.5 * ((q - self.default_pose) ** 2).sum(-1)),
            "stand_still": upright * at_height * torch.exp(-0.5 * (action**2).sum(-1)),
        }

    def observe(
        self, physics: Physics, state: TaskState, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q, _ = self.joints(physics)
        obs = torch.cat(
            [
                self.noise(generator, self.read(physics, "gyro"), "gyro"),
                self.noise(generator, self.up_axis(physics), "gravity"),
                self.noise(generator, q, "joint_pos") - self.default_pose,
                state["last_act"],
            ],
            dim=-1,
        )
        return obs, obs

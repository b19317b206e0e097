"""Cheetah (DM Control Suite, MuJoCo Playground semantics): run forward as fast as possible."""

from __future__ import annotations

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics, sensor_slice
from pqn_torch.envs.tasks.base import StartStates, Task, TaskConfig
from pqn_torch.envs.tasks.common import load_dm_suite_spec, uniform
from pqn_torch.envs.tasks.registry import register
from pqn_torch.envs.tasks.rewards import tolerance

RUN_SPEED = 10.0  # torso speed (m/s) above which the reward is 1
FIRST_JOINT_WITH_RANGE = 3  # rootx, rootz, rooty are unlimited


@register
class CheetahRun(Task):
    """Obs ``qpos[1:] ++ qvel`` (17); reward: linear tolerance of the torso subtree x-velocity."""

    name = "CheetahRun"
    default_config = TaskConfig(ctrl_dt=0.01, sim_dt=0.01, naconmax=100_000, njmax=100)
    settle_steps = 200
    observation_layout = (
        ("qpos[1:]: rootz, rooty, bthigh, bshin, bfoot, fthigh, fshin, ffoot", 8),
        ("qvel: rootx, rootz, rooty, bthigh, bshin, bfoot, fthigh, fshin, ffoot", 9),
    )

    def build_spec(self) -> mujoco.MjSpec:
        return load_dm_suite_spec("cheetah.xml", iterations=4, ls_iterations=8)

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        ranges = torch.as_tensor(mj_model.jnt_range[FIRST_JOINT_WITH_RANGE:])
        self._joint_low, self._joint_high = ranges[:, 0], ranges[:, 1]
        self._speed = sensor_slice(mj_model, "torso_subtreelinvel")

    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        """Joint angles uniform in their ranges, root at the origin, at rest (then settled by the env)."""
        qpos = torch.zeros(num, physics.qpos.shape[1], dtype=physics.dtype, device=physics.device)
        low = self._joint_low.to(qpos)
        high = self._joint_high.to(qpos)
        qpos[:, FIRST_JOINT_WITH_RANGE:] = uniform(generator, (num, low.numel()), low, high, like=qpos)
        return StartStates(qpos=qpos, qvel=torch.zeros_like(physics.qvel[:num]))

    def observation(self, physics: Physics) -> torch.Tensor:
        return torch.cat([physics.qpos[:, 1:], physics.qvel], dim=-1)

    def reward(self, physics: Physics, action: torch.Tensor) -> torch.Tensor:
        speed = physics.sensordata[:, self._speed][:, 0]
        return tolerance(
            speed, bounds=(RUN_SPEED, float("inf")), margin=RUN_SPEED, value_at_margin=0.0, sigmoid="linear"
        )

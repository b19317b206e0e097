"""Point mass (DM Control Suite "easy", MuJoCo Playground semantics): steer a planar mass to the centre.

Model: dm_control's ``point_mass.xml`` with Playground's options (1 solver iteration, 4 line-search
iterations, ``eulerdamp`` off, contacts still disabled); one 20 ms physics step per control step.
The target is the fixed world geom at the origin (neither Playground nor dm_control's easy task moves
it). Added sensor: the mass geom's position relative to the target geom (its norm is the distance).

Observation (4): ``qpos`` (x, y), then ``qvel``.
"""

from __future__ import annotations

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics, sensor_slice
from pqn_torch.envs.tasks.base import StartStates, Task, TaskConfig
from pqn_torch.envs.tasks.common import load_dm_suite_spec, small_control, uniform
from pqn_torch.envs.tasks.registry import register
from pqn_torch.envs.tasks.rewards import tolerance


@register
class PointMass(Task):
    """Reward: ``near_target * small_control``; near_target is 1 within the target's radius (15 mm)."""

    name = "PointMass"
    default_config = TaskConfig(ctrl_dt=0.02, sim_dt=0.02, naconmax=0, njmax=5)
    observation_layout = (("qpos: x, y", 2), ("qvel: x, y", 2))

    def build_spec(self) -> mujoco.MjSpec:
        spec = load_dm_suite_spec(
            "point_mass.xml", iterations=1, ls_iterations=4, disable=(mujoco.mjtDisableBit.mjDSBL_CONTACT,)
        )
        spec.add_sensor(
            name="mass_from_target",
            type=mujoco.mjtSensor.mjSENS_FRAMEPOS,
            objtype=mujoco.mjtObj.mjOBJ_GEOM,
            objname="pointmass",
            reftype=mujoco.mjtObj.mjOBJ_GEOM,
            refname="target",
        )
        return spec

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        self._target_size = float(mj_model.geom("target").size[0])
        ranges = torch.as_tensor(mj_model.jnt_range)
        self._joint_low, self._joint_high = ranges[:, 0], ranges[:, 1]
        self._mass_from_target = sensor_slice(mj_model, "mass_from_target")

    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        """x and y uniform in their joint ranges (+-0.29 m), at rest."""
        low, high = self._joint_low.to(physics.qpos), self._joint_high.to(physics.qpos)
        qpos = uniform(generator, (num, low.numel()), low, high, like=physics.qpos)
        return StartStates(qpos=qpos, qvel=torch.zeros_like(physics.qvel[:num]))

    def observation(self, physics: Physics) -> torch.Tensor:
        return torch.cat([physics.qpos, physics.qvel], dim=-1)

    def reward(self, physics: Physics, action: torch.Tensor) -> torch.Tensor:
        distance = torch.linalg.vector_norm(physics.sensordata[:, self._mass_from_target], dim=-1)
        near_target = tolerance(distance, bounds=(0.0, self._target_size), margin=self._target_size)
        return near_target * small_control(action)

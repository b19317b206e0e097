"""Pendulum (DM Control Suite, MuJoCo Playground semantics): swing a torque-limited pendulum up.

Model: dm_control's ``pendulum.xml`` with Playground's options (4 solver iterations, 8 line-search
iterations, ``eulerdamp`` and ``energy`` off, contacts still disabled); physics at 10 ms (Playground's
``sim_dt``; dm_control uses 20 ms), control every 20 ms (2 substeps). Added sensor: the pole's frame
z-axis (``xmat[pole, 0, 2]`` and ``xmat[pole, 2, 2]``).

Observation (3): pole z-axis horizontal and vertical components (Playground's order; dm_control puts
the vertical one first), then the hinge velocity.
"""

from __future__ import annotations

import math

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics, sensor_slice
from pqn_torch.envs.tasks.base import StartStates, Task, TaskConfig
from pqn_torch.envs.tasks.common import add_body_sensor, load_dm_suite_spec, uniform
from pqn_torch.envs.tasks.registry import register
from pqn_torch.envs.tasks.rewards import tolerance

UPRIGHT_COSINE = math.cos(math.radians(8))  # reward 1 while the pole is within 8 degrees of upright


@register
class PendulumSwingup(Task):
    """Sparse reward: 1 while the pole is within 8 degrees of vertical, else 0."""

    name = "PendulumSwingup"
    default_config = TaskConfig(ctrl_dt=0.02, sim_dt=0.01, naconmax=0, njmax=0)
    observation_layout = (("pole orientation: xmat xz, zz", 2), ("qvel: hinge", 1))

    def build_spec(self) -> mujoco.MjSpec:
        spec = load_dm_suite_spec(
            "pendulum.xml", iterations=4, ls_iterations=8, disable=(mujoco.mjtDisableBit.mjDSBL_CONTACT,)
        )
        add_body_sensor(spec, "pole_zaxis", mujoco.mjtSensor.mjSENS_FRAMEZAXIS, "pole")
        return spec

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        axis = sensor_slice(mj_model, "pole_zaxis")
        self._pole_xz_zz = slice(axis.start, axis.stop, 2)  # z-axis x and z entries (a view, no gather)

    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        """Hinge angle uniform in [0, pi) (Playground's; dm_control draws from [-pi, pi)), at rest."""
        qpos = uniform(generator, (num, 1), 0.0, math.pi, like=physics.qpos)
        return StartStates(qpos=qpos, qvel=torch.zeros_like(physics.qvel[:num]))

    def observation(self, physics: Physics) -> torch.Tensor:
        return torch.cat([physics.sensordata[:, self._pole_xz_zz], physics.qvel], dim=-1)

    def reward(self, physics: Physics, action: torch.Tensor) -> torch.Tensor:
        return tolerance(physics.sensordata[:, self._pole_xz_zz][:, 1], bounds=(UPRIGHT_COSINE, 1.0))

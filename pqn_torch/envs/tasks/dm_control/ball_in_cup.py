"""Ball in cup (DM Control Suite, MuJoCo Playground semantics): swing a tethered ball into a cup.

Model: dm_control's ``ball_in_cup.xml`` with Playground's options (1 solver iteration, 4 line-search
iterations, ``eulerdamp`` off); physics at 2 ms, control every 20 ms (10 substeps). Added sensor: the
ball body's position relative to the cup's ``target`` site. The cup only slides (no rotation), so
that is exactly the world-frame difference Playground computes from ``xpos``/``site_xpos``.

Reset: Playground starts every episode from the model's default state (ball hanging 0.4 m below the
cup, at rest); it does not randomize the ball like dm_control does.

Observation (8): ``qpos`` (cup x, cup z, ball x, ball z), then ``qvel``.
"""

from __future__ import annotations

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics, sensor_slice
from pqn_torch.envs.tasks.base import StartStates, Task, TaskConfig
from pqn_torch.envs.tasks.common import load_dm_suite_spec
from pqn_torch.envs.tasks.registry import register

X_AND_Z = slice(0, 3, 2)  # the cup moves in the x-z plane


@register
class BallInCup(Task):
    """Sparse reward: 1 while the ball lies wholly inside the cup's target box in x and z, else 0."""

    name = "BallInCup"
    default_config = TaskConfig(ctrl_dt=0.02, sim_dt=0.002, naconmax=10_000, njmax=25)
    observation_layout = (("qpos: cup x, cup z, ball x, ball z", 4), ("qvel: cup x, cup z, ball x, ball z", 4))

    def build_spec(self) -> mujoco.MjSpec:
        spec = load_dm_suite_spec("ball_in_cup.xml", iterations=1, ls_iterations=4)
        spec.add_sensor(
            name="ball_from_target",
            type=mujoco.mjtSensor.mjSENS_FRAMEPOS,
            objtype=mujoco.mjtObj.mjOBJ_XBODY,
            objname="ball",
            reftype=mujoco.mjtObj.mjOBJ_SITE,
            refname="target",
        )
        return spec

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        ball_radius = float(mj_model.geom("ball").size[0])
        self._inside_x, self._inside_z = (float(half) - ball_radius for half in mj_model.site("target").size[X_AND_Z])
        self._ball_from_target = sensor_slice(mj_model, "ball_from_target")
        self._qpos0 = torch.as_tensor(mj_model.qpos0)

    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        """The model's default pose at rest, for every world."""
        qpos = self._qpos0.to(physics.qpos).expand(num, -1).clone()
        return StartStates(qpos=qpos, qvel=torch.zeros_like(physics.qvel[:num]))

    def observation(self, physics: Physics) -> torch.Tensor:
        return torch.cat([physics.qpos, physics.qvel], dim=-1)

    def reward(self, physics: Physics, action: torch.Tensor) -> torch.Tensor:
        offset = physics.sensordata[:, self._ball_from_target][:, X_AND_Z].abs()
        inside = (offset[:, 0] < self._inside_x) & (offset[:, 1] < self._inside_z)
        return inside.to(offset.dtype)

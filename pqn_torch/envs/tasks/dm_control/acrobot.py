"""Acrobot (DM Control Suite, MuJoCo Playground semantics): swing a two-link arm's tip up to a target.

Model: dm_control's ``acrobot.xml`` with Playground's options (2 solver iterations, 4 line-search
iterations, Euler instead of RK4, ``eulerdamp`` and ``energy`` off, constraints still disabled); one
10 ms physics step per control step. Only the elbow is actuated. Added sensors: both links' frame
z-axes (the ``xmat[link, 0, 2]`` / ``xmat[link, 2, 2]`` entries Playground reads) and the tip's
position relative to the fixed target site (its norm is the tip-to-target distance).

Observation (6): horizontal components of the upper and lower arm z-axes, their vertical components,
then ``qvel`` (shoulder, elbow).
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

LINKS = ("upper_arm", "lower_arm")


class Acrobot(Task):
    """Reward: gaussian tolerance of the tip-to-target distance, 1 inside the target sphere."""

    default_config = TaskConfig(ctrl_dt=0.01, sim_dt=0.01, naconmax=0, njmax=0)
    observation_layout = (
        ("x-axis horizontal component of upper_arm, lower_arm", 2),
        ("x-axis vertical component of upper_arm, lower_arm", 2),
        ("qvel: shoulder, elbow", 2),
    )
    margin: float = 1.0  # distance beyond the target radius at which the dense reward falls to 0.1

    def build_spec(self) -> mujoco.MjSpec:
        spec = load_dm_suite_spec(
            "acrobot.xml", iterations=2, ls_iterations=4, disable=(mujoco.mjtDisableBit.mjDSBL_CONSTRAINT,)
        )
        for link in LINKS:
            add_body_sensor(spec, f"{link}_zaxis", mujoco.mjtSensor.mjSENS_FRAMEZAXIS, link)
        spec.add_sensor(
            name="tip_from_target",
            type=mujoco.mjtSensor.mjSENS_FRAMEPOS,
            objtype=mujoco.mjtObj.mjOBJ_SITE,
            objname="tip",
            reftype=mujoco.mjtObj.mjOBJ_SITE,
            refname="target",
        )
        return spec

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        self._target_radius = float(mj_model.site("target").size[0])
        # build_spec adds the two z-axis sensors back to back: 3 columns per link, in LINKS order.
        self._axes = slice(
            sensor_slice(mj_model, f"{LINKS[0]}_zaxis").start, sensor_slice(mj_model, f"{LINKS[-1]}_zaxis").stop
        )
        if self._axes.stop - self._axes.start != 3 * len(LINKS):
            raise ValueError("acrobot z-axis sensors must be contiguous; another sensor was added between them")
        self._tip_from_target = sensor_slice(mj_model, "tip_from_target")

    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        """Both joint angles uniform in [-pi, pi), at rest."""
        qpos = uniform(generator, tuple(physics.qpos[:num].shape), -math.pi, math.pi, like=physics.qpos)
        return StartStates(qpos=qpos, qvel=torch.zeros_like(physics.qvel[:num]))

    def observation(self, physics: Physics) -> torch.Tensor:
        axes = physics.sensordata[:, self._axes].reshape(physics.num_worlds, len(LINKS), 3)
        return torch.cat([axes[:, :, 0], axes[:, :, 2], physics.qvel], dim=-1)  # horizontal, vertical, qvel

    def reward(self, physics: Physics, action: torch.Tensor) -> torch.Tensor:
        distance = torch.linalg.vector_norm(physics.sensordata[:, self._tip_from_target], dim=-1)
        return tolerance(distance, bounds=(0.0, self._target_radius), margin=self.margin)


@register
class AcrobotSwingup(Acrobot):
    """Swing the tip into the target; reward decays smoothly with distance."""

    name = "AcrobotSwingup"


@register
class AcrobotSwingupSparse(Acrobot):
    """Swing-up with a 0/1 reward: tip inside the target sphere (radius 0.2 m)."""

    name = "AcrobotSwingupSparse"
    margin = 0.0

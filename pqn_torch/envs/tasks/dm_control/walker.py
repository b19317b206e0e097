"""Walker (DM Control Suite, MuJoCo Playground semantics): a planar biped stands, walks or runs.

Model: dm_control's ``walker.xml`` with Playground's solver options (2 iterations, 5 line-search
iterations, ``eulerdamp`` off), physics at 2.5 ms (Playground's ``sim_dt``, which overrides the 5 ms
of its XML), control every 25 ms (10 substeps). Added sensors: each body's frame x- and z-axis (for
the ``xmat`` entries the observation and the upright term read) and the torso position (height).

Observation (24) in Playground's order: ``(xx, xz)`` of the 7 bodies' orientation matrices, then the
torso's ``zz`` entry, then ``qvel``. Note the single "height" entry is Playground's: it is the torso's
``xmat[2, 2]`` (how upright it is), not dm_control's torso height.
"""

from __future__ import annotations

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics, sensor_slice
from pqn_torch.envs.tasks.base import StartStates, Task, TaskConfig
from pqn_torch.envs.tasks.common import add_body_sensor, load_dm_suite_spec, random_planar_qpos
from pqn_torch.envs.tasks.registry import register
from pqn_torch.envs.tasks.rewards import tolerance

STAND_HEIGHT = 1.2  # torso height (m) above which standing is rewarded fully
WALK_SPEED = 1.0  # forward speeds (m/s) above which moving is rewarded fully
RUN_SPEED = 8.0
BODIES = ("torso", "right_thigh", "right_leg", "right_foot", "left_thigh", "left_leg", "left_foot")
FIRST_HINGE = 3  # rootz, rootx, rooty are unlimited


class Walker(Task):
    """Stand reward ``(3 standing + upright) / 4``; moving tasks multiply it by ``(5 move + 1) / 6``."""

    default_config = TaskConfig(ctrl_dt=0.025, sim_dt=0.0025, naconmax=50_000, njmax=100)
    move_speed: float = 0.0

    def build_spec(self) -> mujoco.MjSpec:
        spec = load_dm_suite_spec("walker.xml", iterations=2, ls_iterations=5)
        for body in BODIES:
            add_body_sensor(spec, f"{body}_xaxis", mujoco.mjtSensor.mjSENS_FRAMEXAXIS, body)
            add_body_sensor(spec, f"{body}_zaxis", mujoco.mjtSensor.mjSENS_FRAMEZAXIS, body)
        add_body_sensor(spec, "torso_pos", mujoco.mjtSensor.mjSENS_FRAMEPOS, "torso")
        return spec

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        if [mj_model.body(i).name for i in range(1, mj_model.nbody)] != list(BODIES):
            raise ValueError(f"walker model bodies changed; expected {BODIES}")
        ranges = torch.as_tensor(mj_model.jnt_range[FIRST_HINGE:])
        self._joint_low, self._joint_high = ranges[:, 0], ranges[:, 1]
        # build_spec adds (x-axis, z-axis) per body back to back: 6 columns per body, in BODIES order.
        self._axes = slice(
            sensor_slice(mj_model, f"{BODIES[0]}_xaxis").start, sensor_slice(mj_model, f"{BODIES[-1]}_zaxis").stop
        )
        if self._axes.stop - self._axes.start != 6 * len(BODIES):
            raise ValueError("walker axis sensors must be contiguous; another sensor was added between them")
        self._torso_zz = sensor_slice(mj_model, "torso_zaxis").start + 2
        self._torso_z = sensor_slice(mj_model, "torso_pos").start + 2
        self._speed = sensor_slice(mj_model, "torso_subtreelinvel").start

    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        """Pitch uniform in [-pi, pi), hinges uniform in their ranges, at rest (no settling)."""
        qpos = random_planar_qpos(generator, num, self._joint_low, self._joint_high, like=physics.qpos)
        return StartStates(qpos=qpos, qvel=torch.zeros_like(physics.qvel[:num]))

    def observation(self, physics: Physics) -> torch.Tensor:
        # xmat[b, 0, 0] is entry 0 of body b's x-axis, xmat[b, 0, 2] entry 0 of its z-axis.
        axes = physics.sensordata[:, self._axes].reshape(physics.num_worlds, len(BODIES), 6)
        orientations = axes[:, :, ::3].reshape(physics.num_worlds, 2 * len(BODIES))
        upright = physics.sensordata[:, self._torso_zz : self._torso_zz + 1]
        return torch.cat([orientations, upright, physics.qvel], dim=-1)

    def reward(self, physics: Physics, action: torch.Tensor) -> torch.Tensor:
        height = physics.sensordata[:, self._torso_z]
        standing = tolerance(height, bounds=(STAND_HEIGHT, float("inf")), margin=STAND_HEIGHT / 2)
        upright = (1 + physics.sensordata[:, self._torso_zz]) / 2
        stand = (3 * standing + upright) / 4
        if self.move_speed == 0.0:
            return stand
        move = tolerance(
            physics.sensordata[:, self._speed],
            bounds=(self.move_speed, float("inf")),
            margin=self.move_speed / 2,
            value_at_margin=0.5,
            sigmoid="linear",
        )
        return stand * (5 * move + 1) / 6


@register
class WalkerStand(Walker):
    """Stand up tall and upright."""

    name = "WalkerStand"


@register
class WalkerWalk(Walker):
    """Walk forward at 1 m/s or faster while staying up."""

    name = "WalkerWalk"
    move_speed = WALK_SPEED


@register
class WalkerRun(Walker):
    """Run forward at 8 m/s or faster while staying up."""

    name = "WalkerRun"
    move_speed = RUN_SPEED

"""Hopper (DM Control Suite, MuJoCo Playground semantics): a one-legged planar body stands or hops forward.

Model: dm_control's ``hopper.xml`` with Playground's solver options (4 iterations, 10 line-search
iterations, ``eulerdamp`` off), physics at 5 ms, control every 20 ms (4 substeps). Added sensors: the
inertial-frame positions of torso and foot (``xipos``), which the height term reads. Playground's
``<custom>`` contact hints only tune MJX's JAX collision and are not needed here.
"""

from __future__ import annotations

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics, sensor_slice
from pqn_torch.envs.tasks.base import StartStates, Task, TaskConfig
from pqn_torch.envs.tasks.common import add_body_sensor, load_dm_suite_spec, random_planar_qpos, small_control
from pqn_torch.envs.tasks.registry import register
from pqn_torch.envs.tasks.rewards import tolerance

STAND_HEIGHT = 0.6  # torso-over-foot height (m) above which standing is rewarded fully
HOP_SPEED = 2.0  # forward speed (m/s) above which hopping is rewarded fully
FIRST_HINGE = 3  # rootx, rootz, rooty are unlimited


class Hopper(Task):
    """Obs ``qpos[1:] ++ qvel ++ log1p(toe, heel touch)`` (15); reward: standing times a task term."""

    default_config = TaskConfig(ctrl_dt=0.02, sim_dt=0.005, naconmax=50_000, njmax=50)
    observation_layout = (
        ("qpos[1:]: rootz, rooty, waist, hip, knee, ankle", 6),
        ("qvel: rootx, rootz, rooty, waist, hip, knee, ankle", 7),
        ("log1p of the touch sensors: toe, heel", 2),
    )

    def build_spec(self) -> mujoco.MjSpec:
        spec = load_dm_suite_spec("hopper.xml", iterations=4, ls_iterations=10)
        for body in ("torso", "foot"):
            add_body_sensor(spec, f"{body}_inertial_pos", mujoco.mjtSensor.mjSENS_FRAMEPOS, body, inertial=True)
        return spec

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        ranges = torch.as_tensor(mj_model.jnt_range[FIRST_HINGE:])
        self._joint_low, self._joint_high = ranges[:, 0], ranges[:, 1]
        self._torso_pos = sensor_slice(mj_model, "torso_inertial_pos")
        self._foot_pos = sensor_slice(mj_model, "foot_inertial_pos")
        self._speed = sensor_slice(mj_model, "torso_subtreelinvel")
        self._toe = sensor_slice(mj_model, "touch_toe")
        self._heel = sensor_slice(mj_model, "touch_heel")

    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        """Pitch uniform in [-pi, pi), hinges uniform in their ranges, at rest (no settling)."""
        qpos = random_planar_qpos(generator, num, self._joint_low, self._joint_high, like=physics.qpos)
        return StartStates(qpos=qpos, qvel=torch.zeros_like(physics.qvel[:num]))

    def observation(self, physics: Physics) -> torch.Tensor:
        touch = torch.cat([physics.sensordata[:, self._toe], physics.sensordata[:, self._heel]], dim=-1)
        return torch.cat([physics.qpos[:, 1:], physics.qvel, torch.log1p(touch)], dim=-1)

    def standing(self, physics: Physics) -> torch.Tensor:
        """1 while the torso's centre of mass is 0.6-2 m above the foot's, gaussian fall-off outside."""
        height = physics.sensordata[:, self._torso_pos][:, 2] - physics.sensordata[:, self._foot_pos][:, 2]
        return tolerance(height, bounds=(STAND_HEIGHT, 2.0))


@register
class HopperStand(Hopper):
    """Stand tall: standing times dm_control's small-control term."""

    name = "HopperStand"

    def reward(self, physics: Physics, action: torch.Tensor) -> torch.Tensor:
        return self.standing(physics) * small_control(action)


@register
class HopperHop(Hopper):
    """Hop forward: standing times a linear ramp of the torso subtree's x-velocity (0.5 at 1 m/s, 1 from 2 m/s)."""

    name = "HopperHop"

    def reward(self, physics: Physics, action: torch.Tensor) -> torch.Tensor:
        speed = physics.sensordata[:, self._speed][:, 0]
        hopping = tolerance(
            speed, bounds=(HOP_SPEED, float("inf")), margin=HOP_SPEED / 2, value_at_margin=0.5, sigmoid="linear"
        )
        return self.standing(physics) * hopping

"""Reacher (DM Control Suite, MuJoCo Playground semantics): a planar two-link arm touches a random target.

Model: dm_control's ``reacher.xml`` with Playground's edits: 1 solver / 6 line-search iterations,
Euler, contacts and ``eulerdamp`` off, physics at 5 ms (4 substeps per 20 ms control step; dm_control
steps at 20 ms), the decorative ``root`` cylinder removed, the target moved into a mocap body and
resized per task. Added sensors: world positions of the finger and target geoms.

Observation (6), in Playground's order: ``qpos`` (2), finger-to-target (x, y) (2), ``qvel`` (2).
Reward: 1 while the finger's centre is within the summed finger and target radii, else 0.

Reset (Playground's): shoulder uniform in [-pi, pi), wrist uniform in its range, at rest; the target
at a uniform angle and a radius uniform in [0.05, 0.2] m, stored in ``mocap_pos``.
Playground moves the target after computing the reset's kinematics, so its first observation shows the
XML's default target; ours shows the drawn one (the env recomputes sensors after writing the state).

Constraint rows: Playground passes ``njmax=0``, with which MuJoCo Warp drops the wrist's joint-limit
row whenever it activates (the wrist passes through its limit), whereas native MuJoCo enforces it. We
keep the limit on both backends (as dm_control and Playground's JAX implementation do) by reserving the
one row it needs.
"""

from __future__ import annotations

import math

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics, sensor_slice
from pqn_torch.envs.tasks.base import StartStates, Task, TaskConfig
from pqn_torch.envs.tasks.common import load_dm_suite_spec, model_mocap_positions, move_into_mocap_body, uniform
from pqn_torch.envs.tasks.registry import register
from pqn_torch.envs.tasks.rewards import tolerance

BIG_TARGET_RADIUS = 0.05
SMALL_TARGET_RADIUS = 0.015
TARGET_DISTANCE = (0.05, 0.2)  # reset range of the target's distance from the shoulder (m)
WRIST_LIMIT_ROWS = 1  # the only constraint the model can activate


class Reacher(Task):
    """Reach the target; subclasses set its radius."""

    default_config = TaskConfig(ctrl_dt=0.02, sim_dt=0.005, naconmax=0, njmax=WRIST_LIMIT_ROWS)
    observation_layout = (("qpos: shoulder, wrist", 2), ("finger to target: x, y", 2), ("qvel: shoulder, wrist", 2))
    target_radius: float

    def build_spec(self) -> mujoco.MjSpec:
        spec = load_dm_suite_spec(
            "reacher.xml", iterations=1, ls_iterations=6, disable=(mujoco.mjtDisableBit.mjDSBL_CONTACT,)
        )
        spec.delete(spec.geom("root"))
        move_into_mocap_body(spec, "target")
        spec.geom("target").size[0] = self.target_radius
        for geom in ("finger", "target"):
            spec.add_sensor(
                name=f"{geom}_pos",
                type=mujoco.mjtSensor.mjSENS_FRAMEPOS,
                objtype=mujoco.mjtObj.mjOBJ_GEOM,
                objname=geom,
            )
        return spec

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        self._shoulder = int(mj_model.joint("shoulder").qposadr[0])
        wrist = mj_model.joint("wrist")
        self._wrist = int(wrist.qposadr[0])
        self._wrist_low, self._wrist_high = (float(limit) for limit in wrist.range)
        self._finger = sensor_slice(mj_model, "finger_pos")
        self._target = sensor_slice(mj_model, "target_pos")
        self._radii = float(mj_model.geom("finger").size[0] + mj_model.geom("target").size[0])
        self._target_mocap = int(mj_model.body("target").mocapid[0])
        self._mocap_start = model_mocap_positions(mj_model)

    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        qpos = torch.zeros(num, physics.qpos.shape[1], dtype=physics.dtype, device=physics.device)
        qpos[:, self._shoulder] = uniform(generator, (num,), -math.pi, math.pi, like=qpos)
        qpos[:, self._wrist] = uniform(generator, (num,), self._wrist_low, self._wrist_high, like=qpos)
        angle = uniform(generator, (num,), 0.0, 2 * math.pi, like=qpos)
        distance = uniform(generator, (num,), *TARGET_DISTANCE, like=qpos)
        mocap_pos = self._mocap_start.to(qpos).repeat(num, 1, 1)
        mocap_pos[:, self._target_mocap, 0] = distance * torch.sin(angle)
        mocap_pos[:, self._target_mocap, 1] = distance * torch.cos(angle)
        return StartStates(qpos=qpos, qvel=torch.zeros_like(physics.qvel[:num]), mocap_pos=mocap_pos)

    def _finger_to_target(self, physics: Physics) -> torch.Tensor:
        """(x, y) vector [N, 2] from the finger to the target in the world frame."""
        data = physics.sensordata
        return data[:, self._target][:, :2] - data[:, self._finger][:, :2]

    def observation(self, physics: Physics) -> torch.Tensor:
        return torch.cat([physics.qpos, self._finger_to_target(physics), physics.qvel], dim=-1)

    def reward(self, physics: Physics, action: torch.Tensor) -> torch.Tensor:
        distance = torch.linalg.vector_norm(self._finger_to_target(physics), dim=-1)
        return tolerance(distance, bounds=(0.0, self._radii))


@register
class ReacherEasy(Reacher):
    """Reach a 5 cm target."""

    name = "ReacherEasy"
    target_radius = BIG_TARGET_RADIUS


@register
class ReacherHard(Reacher):
    """Reach a 1.5 cm target."""

    name = "ReacherHard"
    target_radius = SMALL_TARGET_RADIUS

"""Fish (DM Control Suite, MuJoCo Playground semantics): swim a 3D fish's mouth into a randomly placed target.

Model: dm_control's ``fish.xml`` with Playground's edits: 2 solver / 6 line-search iterations, Euler,
gravity, constraints, contacts and ``eulerdamp`` off, physics at 2 ms (20 substeps per 40 ms control
step), the invisible ``torso_massive`` box that carries the torso's mass (and, through the fluid
model, its drag) replaced by a 3 cm sphere, and the target moved into a mocap body. Added sensors:
the torso's z-axis (uprightness) and the target's position in the mouth geom's frame.

Observation (24), in Playground's order: torso ``xmat[2, 2]`` (1), the 7 fin/tail joint angles,
the mouth-to-target vector in the mouth's frame (3), ``qvel`` (13). Reward:
``(7 * in_target + upright) / 8`` with ``in_target`` a gaussian tolerance of the mouth-target distance
(1 within the summed radii, 0.1 at twice that beyond) and ``upright = (1 + xmat[2, 2]) / 2``.

Reset (Playground's): the root at the origin with a uniformly random orientation (a normalized
4D gaussian), the 7 joints uniform in [-0.2, 0.2] rad, at rest; the target uniform in the box
[-0.4, 0.4] x [-0.4, 0.4] x [0.1, 0.3] m, stored in ``mocap_pos``.
Playground moves the target after computing the reset's kinematics, so its first observation shows the
XML's default target; ours shows the drawn one (the env recomputes sensors after writing the state).
"""

from __future__ import annotations

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics, sensor_slice
from pqn_torch.envs.tasks.base import StartStates, Task, TaskConfig
from pqn_torch.envs.tasks.common import (
    add_body_sensor,
    load_dm_suite_spec,
    model_mocap_positions,
    move_into_mocap_body,
    normal,
    uniform,
)
from pqn_torch.envs.tasks.registry import register
from pqn_torch.envs.tasks.rewards import tolerance

JOINTS = ("tail1", "tail_twist", "tail2", "finright_roll", "finright_pitch", "finleft_roll", "finleft_pitch")
JOINT_RANGE = 0.2  # reset joint angles are uniform in [-JOINT_RANGE, JOINT_RANGE] rad
TARGET_LOW = (-0.4, -0.4, 0.1)  # reset target box (m)
TARGET_HIGH = (0.4, 0.4, 0.3)
MASSIVE_SPHERE_RADIUS = 0.03  # Playground's torso_massive sphere (dm_control: a .002 x .06 x .03 box)
ROOT_QUAT = slice(3, 7)  # the free joint's orientation in qpos


@register
class FishSwim(Task):
    """Swim to the target and stay upright."""

    name = "FishSwim"
    default_config = TaskConfig(ctrl_dt=0.04, sim_dt=0.002, naconmax=0, njmax=25)

    def build_spec(self) -> mujoco.MjSpec:
        disabled = mujoco.mjtDisableBit
        spec = load_dm_suite_spec(
            "fish.xml",
            iterations=2,
            ls_iterations=6,
            disable=(disabled.mjDSBL_GRAVITY, disabled.mjDSBL_CONSTRAINT, disabled.mjDSBL_CONTACT),
        )
        massive = spec.geom("torso_massive")
        massive.type = mujoco.mjtGeom.mjGEOM_SPHERE
        massive.size = [MASSIVE_SPHERE_RADIUS, 0.0, 0.0]
        move_into_mocap_body(spec, "target")
        add_body_sensor(spec, "torso_zaxis", mujoco.mjtSensor.mjSENS_FRAMEZAXIS, "torso")
        spec.add_sensor(
            name="target_in_mouth_frame",
            type=mujoco.mjtSensor.mjSENS_FRAMEPOS,
            objtype=mujoco.mjtObj.mjOBJ_GEOM,
            objname="target",
            reftype=mujoco.mjtObj.mjOBJ_GEOM,
            refname="mouth",
        )
        return spec

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        addresses = [int(mj_model.joint(name).qposadr[0]) for name in JOINTS]
        if addresses != list(range(addresses[0], addresses[0] + len(JOINTS))):
            raise ValueError(f"fish model changed: joints {JOINTS} are no longer consecutive in qpos")
        self._joints = slice(addresses[0], addresses[0] + len(JOINTS))
        self._upright = sensor_slice(mj_model, "torso_zaxis").start + 2
        self._mouth_to_target = sensor_slice(mj_model, "target_in_mouth_frame")
        self._radii = float(mj_model.geom("mouth").size[0] + mj_model.geom("target").size[0])
        self._target_mocap = int(mj_model.body("target").mocapid[0])
        self._mocap_start = model_mocap_positions(mj_model)

    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        qpos = torch.zeros(num, physics.qpos.shape[1], dtype=physics.dtype, device=physics.device)
        quat = normal(generator, (num, 4), 1.0, like=qpos)
        qpos[:, ROOT_QUAT] = quat / torch.linalg.vector_norm(quat, dim=-1, keepdim=True)
        qpos[:, self._joints] = uniform(generator, (num, len(JOINTS)), -JOINT_RANGE, JOINT_RANGE, like=qpos)
        mocap_pos = self._mocap_start.to(qpos).repeat(num, 1, 1)
        low, high = torch.tensor(TARGET_LOW).to(qpos), torch.tensor(TARGET_HIGH).to(qpos)
        mocap_pos[:, self._target_mocap] = uniform(generator, (num, 3), low, high, like=qpos)
        return StartStates(qpos=qpos, qvel=torch.zeros_like(physics.qvel[:num]), mocap_pos=mocap_pos)

    def observation(self, physics: Physics) -> torch.Tensor:
        data = physics.sensordata
        upright = data[:, self._upright : self._upright + 1]
        return torch.cat([upright, physics.qpos[:, self._joints], data[:, self._mouth_to_target], physics.qvel], dim=-1)

    def reward(self, physics: Physics, action: torch.Tensor) -> torch.Tensor:
        data = physics.sensordata
        distance = torch.linalg.vector_norm(data[:, self._mouth_to_target], dim=-1)
        in_target = tolerance(distance, bounds=(0.0, self._radii), margin=2 * self._radii)
        upright = (1 + data[:, self._upright]) / 2
        return (7 * in_target + upright) / 8

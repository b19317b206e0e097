"""Finger (DM Control Suite, MuJoCo Playground semantics): a planar two-link finger spins or turns a hinged body.

Model: dm_control's ``finger.xml`` with Playground's edits: implicitfast integrator, 2 solver / 8
line-search iterations, pyramidal friction cone (dm_control's elliptic cone dropped), gravity and
``eulerdamp`` off, physics at 5 ms (4 substeps per 20 ms control step), the two decoration cylinders
excluded from collisions, and the target site moved into a mocap body so it can differ per world.
Everything the tasks read is a sensor the suite's model already declares.

Observation, in Playground's order: joint angles of the finger (2), the tip's (x, z) relative to the
spinner's hinge (2), ``qvel`` (3), ``log1p`` of the two fingertip touch sensors (2); the turn tasks add
the target's (x, z) relative to the hinge (2) and the signed distance from the tip to the target's
surface (1). Reward: 1 while spinning at 15 rad/s or faster (in the negative direction), resp. while
the tip is inside the target sphere, else 0.

Reset (Playground's): finger joints uniform in their ranges, spinner angle uniform in [-pi, pi), at
rest; no rejection of interpenetrating starts (dm_control rejects them). The turn tasks draw the target
angle uniformly in [-pi, pi) on the circle the spinner's tip sweeps; it lives in ``mocap_pos``.
Playground moves the target after computing the reset's kinematics, so its first observation shows the
XML's default target; ours shows the drawn one (the env recomputes sensors after writing the state).
"""

from __future__ import annotations

import math

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics, sensor_slice
from pqn_torch.envs.tasks.base import StartStates, Task, TaskConfig
from pqn_torch.envs.tasks.common import load_dm_suite_spec, model_mocap_positions, move_into_mocap_body, uniform
from pqn_torch.envs.tasks.registry import register

SPIN_VELOCITY = 15.0  # hinge speed (rad/s) from which the spinner counts as spinning
SPIN_HINGE_DAMPING = 0.03  # the spin task's lighter hinge damping (the model's is 0.5)
EASY_TARGET_RADIUS = 0.07
HARD_TARGET_RADIUS = 0.03
FINGER_JOINTS = 2  # qpos[:2]: proximal, distal; qpos[2]: the spinner's hinge
DECORATIONS = ("proximal_decoration", "spinner_decoration")


def _xz(values: torch.Tensor) -> torch.Tensor:
    """The (x, z) columns of [N, 3] frame positions (the finger moves in the x-z plane)."""
    return values[:, 0:3:2]


class Finger(Task):
    """Shared model and observation of the finger tasks."""

    default_config = TaskConfig(ctrl_dt=0.02, sim_dt=0.005, naconmax=25_000, njmax=50)

    def build_spec(self) -> mujoco.MjSpec:
        spec = load_dm_suite_spec(
            "finger.xml",
            iterations=2,
            ls_iterations=8,
            integrator=mujoco.mjtIntegrator.mjINT_IMPLICITFAST,
            disable=(mujoco.mjtDisableBit.mjDSBL_GRAVITY,),
        )
        spec.option.cone = mujoco.mjtCone.mjCONE_PYRAMIDAL
        for name in DECORATIONS:
            spec.geom(name).contype = 0
            spec.geom(name).conaffinity = 0
        move_into_mocap_body(spec, "target")
        return spec

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        ranges = torch.as_tensor(mj_model.jnt_range[:FINGER_JOINTS])
        self._joint_low, self._joint_high = ranges[:, 0], ranges[:, 1]
        self._joint_angles = [sensor_slice(mj_model, name) for name in ("proximal", "distal")]
        self._touch = [sensor_slice(mj_model, name) for name in ("touchtop", "touchbottom")]
        self._tip = sensor_slice(mj_model, "tip")
        self._spinner = sensor_slice(mj_model, "spinner")
        self._hinge_velocity = sensor_slice(mj_model, "hinge_velocity").start

    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        qpos = torch.zeros(num, physics.qpos.shape[1], dtype=physics.dtype, device=physics.device)
        low, high = self._joint_low.to(qpos), self._joint_high.to(qpos)
        qpos[:, :FINGER_JOINTS] = uniform(generator, (num, FINGER_JOINTS), low, high, like=qpos)
        qpos[:, FINGER_JOINTS] = uniform(generator, (num,), -math.pi, math.pi, like=qpos)
        return StartStates(qpos=qpos, qvel=torch.zeros_like(physics.qvel[:num]))

    def _tip_position(self, physics: Physics) -> torch.Tensor:
        """(x, z) of the spinner's tip relative to its hinge."""
        data = physics.sensordata
        return _xz(data[:, self._tip]) - _xz(data[:, self._spinner])

    def observation(self, physics: Physics) -> torch.Tensor:
        data = physics.sensordata
        angles = [data[:, columns] for columns in self._joint_angles]
        touch = torch.log1p(torch.cat([data[:, columns] for columns in self._touch], dim=-1))
        return torch.cat([*angles, self._tip_position(physics), physics.qvel, touch], dim=-1)


@register
class FingerSpin(Finger):
    """Spin the hinged body fast (9 obs); the target is hidden and unused."""

    name = "FingerSpin"

    def build_spec(self) -> mujoco.MjSpec:
        spec = super().build_spec()
        for site in ("target", "tip"):
            spec.site(site).rgba[3] = 0.0
        spec.joint("hinge").damping[0] = SPIN_HINGE_DAMPING
        return spec

    def reward(self, physics: Physics, action: torch.Tensor) -> torch.Tensor:
        spinning = physics.sensordata[:, self._hinge_velocity] <= -SPIN_VELOCITY
        return spinning.to(physics.dtype)


class FingerTurn(Finger):
    """Turn the spinner until its tip lies inside a randomly placed target sphere (12 obs)."""

    target_radius: float

    def build_spec(self) -> mujoco.MjSpec:
        spec = super().build_spec()
        spec.site("target").size[0] = self.target_radius
        return spec

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        super().bind(mj_model, device, dtype)
        self._target = sensor_slice(mj_model, "target")
        self._target_mocap = int(mj_model.body("target").mocapid[0])
        # The tip sweeps a circle of the first cap's radius + half-length around the hinge's anchor,
        # which is fixed in the world (the spinner hangs from the world body).
        self._sweep_radius = float(mj_model.geom("cap1").size.sum())
        data = mujoco.MjData(mj_model)
        mujoco.mj_kinematics(mj_model, data)
        self._hinge_anchor = torch.as_tensor(data.xanchor[mj_model.joint("hinge").id].copy())
        self._mocap_start = model_mocap_positions(mj_model)

    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        start = super().sample_start(generator, num, physics)
        angle = uniform(generator, (num,), -math.pi, math.pi, like=start.qpos)
        anchor = self._hinge_anchor.to(start.qpos)
        mocap_pos = self._mocap_start.to(start.qpos).repeat(num, 1, 1)
        mocap_pos[:, self._target_mocap, 0] = anchor[0] + self._sweep_radius * torch.sin(angle)
        mocap_pos[:, self._target_mocap, 2] = anchor[2] + self._sweep_radius * torch.cos(angle)
        start.mocap_pos = mocap_pos
        return start

    def _target_position(self, physics: Physics) -> torch.Tensor:
        """(x, z) of the target relative to the spinner's hinge."""
        data = physics.sensordata
        return _xz(data[:, self._target]) - _xz(data[:, self._spinner])

    def _distance_to_target(self, physics: Physics) -> torch.Tensor:
        """Signed distance [N, 1] from the tip to the target sphere's surface, negative inside."""
        to_target = self._target_position(physics) - self._tip_position(physics)
        return torch.linalg.vector_norm(to_target, dim=-1, keepdim=True) - self.target_radius

    def observation(self, physics: Physics) -> torch.Tensor:
        return torch.cat(
            [super().observation(physics), self._target_position(physics), self._distance_to_target(physics)], dim=-1
        )

    def reward(self, physics: Physics, action: torch.Tensor) -> torch.Tensor:
        return (self._distance_to_target(physics)[:, 0] <= 0).to(physics.dtype)


@register
class FingerTurnEasy(FingerTurn):
    """Turn the tip into a 7 cm target."""

    name = "FingerTurnEasy"
    target_radius = EASY_TARGET_RADIUS


@register
class FingerTurnHard(FingerTurn):
    """Turn the tip into a 3 cm target."""

    name = "FingerTurnHard"
    target_radius = HARD_TARGET_RADIUS

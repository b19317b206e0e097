"""Swimmer (DM Control Suite, MuJoCo Playground semantics): a planar 6-link snake swims its nose to a target.

Model: dm_control's ``swimmer.xml`` head, extended by the same procedure as dm_control's (and
Playground's) generator: each further link is a body 10 cm behind its parent with a visual capsule, an
inertial box, a site, a hinge limited to +-360/n degrees, a motor, and a velocimeter and gyro on the
site. Playground's edits on top: 4 solver / 8 line-search iterations, Euler, contacts and
``eulerdamp`` off, physics at 3 ms (10 substeps per 30 ms control step), every geom excluded from
collisions, and the target moved into a mocap body.

Observation (25 for 6 links), in Playground's order: the 5 hinge angles, the nose-to-target (x, y)
in the head's frame (2), then (vx, vy, wz) of the head and each link in its own frame (18). Reward: a
long-tail tolerance of the nose-target distance, 1 inside the 10 cm target, 0.1 at 50 cm beyond.

Reset (Playground's): the head at the origin with a heading uniform in [-pi, pi), hinges uniform in
their ranges, at rest; the target (x, y) uniform in [-0.3, 0.3]^2 with probability 0.2, else in
[-2, 2]^2, stored in ``mocap_pos``.
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
from pqn_torch.envs.tasks.rewards import tolerance

LINK_SPACING = 0.1  # each link's body sits this far (m, along y) from its parent's
NEAR_TARGET_PROBABILITY = 0.2  # chance that the reset target is drawn from the small box
NEAR_TARGET_BOX = 0.3  # half-widths (m) of the two target boxes
FAR_TARGET_BOX = 2.0
HEADING = 2  # qpos[:3]: rootx, rooty (slides), rootz (heading); then the hinges
FIRST_HINGE = 3


def add_links(spec: mujoco.MjSpec, num_bodies: int) -> None:
    """Chain ``num_bodies - 1`` links behind the head, as dm_control's swimmer generator does."""
    if num_bodies < 3:
        raise ValueError(f"a swimmer needs at least 3 bodies, got {num_bodies}")
    swimmer, visual, inertial = (spec.find_default(name) for name in ("swimmer", "visual", "inertial"))
    joint_limit = 360.0 / num_bodies  # degrees, the MJCF's angle unit
    parent = spec.body("head")
    for index in range(num_bodies - 1):
        link = parent.add_body(name=f"segment_{index}", pos=[0.0, LINK_SPACING, 0.0])
        link.add_geom(visual, name=f"visual_{index}")
        link.add_geom(inertial, name=f"inertial_{index}")
        site = link.add_site(swimmer, name=f"site_{index}")
        link.add_joint(swimmer, name=f"joint_{index}", range=[-joint_limit, joint_limit])
        motor = spec.add_actuator(
            spec.default, name=f"motor_{index}", target=f"joint_{index}", trntype=mujoco.mjtTrn.mjTRN_JOINT
        )
        motor.set_to_motor()
        for sensor_type, kind in (
            (mujoco.mjtSensor.mjSENS_VELOCIMETER, "velocimeter"),
            (mujoco.mjtSensor.mjSENS_GYRO, "gyro"),
        ):
            spec.add_sensor(
                name=f"{kind}_{index}", type=sensor_type, objtype=mujoco.mjtObj.mjOBJ_SITE, objname=site.name
            )
        parent = link


class Swimmer(Task):
    """Swim the nose into the target; subclasses set the number of bodies."""

    default_config = TaskConfig(ctrl_dt=0.03, sim_dt=0.003, naconmax=0, njmax=40)
    num_bodies: int

    def build_spec(self) -> mujoco.MjSpec:
        spec = load_dm_suite_spec(
            "swimmer.xml", iterations=4, ls_iterations=8, disable=(mujoco.mjtDisableBit.mjDSBL_CONTACT,)
        )
        add_links(spec, self.num_bodies)
        move_into_mocap_body(spec, "target")
        for geom in spec.geoms:
            geom.contype = 0
            geom.conaffinity = 0
        return spec

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        ranges = torch.as_tensor(mj_model.jnt_range[FIRST_HINGE:])
        self._joint_low, self._joint_high = ranges[:, 0], ranges[:, 1]
        self._nose = sensor_slice(mj_model, "nose_pos")
        self._target = sensor_slice(mj_model, "target_pos")
        self._head_axes = [sensor_slice(mj_model, name) for name in ("head_xaxis", "head_yaxis")]
        # (velocimeter, gyro) of the head, then of each link, back to back: 6 columns per body.
        self._velocities = slice(
            sensor_slice(mj_model, "head_vel").start, sensor_slice(mj_model, f"gyro_{self.num_bodies - 2}").stop
        )
        if self._velocities.stop - self._velocities.start != 6 * self.num_bodies:
            raise ValueError("swimmer velocity sensors must be contiguous; another sensor was added between them")
        self._target_radius = float(mj_model.geom("target").size[0])
        self._target_mocap = int(mj_model.body("target").mocapid[0])
        self._mocap_start = model_mocap_positions(mj_model)

    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        qpos = torch.zeros(num, physics.qpos.shape[1], dtype=physics.dtype, device=physics.device)
        qpos[:, HEADING] = uniform(generator, (num,), -math.pi, math.pi, like=qpos)
        low, high = self._joint_low.to(qpos), self._joint_high.to(qpos)
        qpos[:, FIRST_HINGE:] = uniform(generator, (num, low.numel()), low, high, like=qpos)
        near = uniform(generator, (num,), 0.0, 1.0, like=qpos) < NEAR_TARGET_PROBABILITY
        box = torch.where(near, NEAR_TARGET_BOX, FAR_TARGET_BOX).to(qpos).unsqueeze(-1)
        mocap_pos = self._mocap_start.to(qpos).repeat(num, 1, 1)
        mocap_pos[:, self._target_mocap, :2] = uniform(generator, (num, 2), -box, box, like=qpos)
        return StartStates(qpos=qpos, qvel=torch.zeros_like(physics.qvel[:num]), mocap_pos=mocap_pos)

    def _nose_to_target(self, physics: Physics) -> torch.Tensor:
        """(x, y) [N, 2] of the target relative to the nose, in the head's frame."""
        data = physics.sensordata
        nose_to_target = data[:, self._target] - data[:, self._nose]
        return torch.stack([(nose_to_target * data[:, axis]).sum(dim=-1) for axis in self._head_axes], dim=-1)

    def observation(self, physics: Physics) -> torch.Tensor:
        # Per body: velocimeter (vx, vy, vz), gyro (wx, wy, wz); the swimmer moves in-plane: vx, vy, wz.
        velocities = physics.sensordata[:, self._velocities].reshape(physics.num_worlds, self.num_bodies, 6)
        planar = torch.cat([velocities[:, :, 0:2], velocities[:, :, 5:6]], dim=-1)
        planar_velocities = planar.reshape(physics.num_worlds, -1)
        return torch.cat([physics.qpos[:, FIRST_HINGE:], self._nose_to_target(physics), planar_velocities], dim=-1)

    def reward(self, physics: Physics, action: torch.Tensor) -> torch.Tensor:
        distance = torch.linalg.vector_norm(self._nose_to_target(physics), dim=-1)
        return tolerance(
            distance, bounds=(0.0, self._target_radius), margin=5 * self._target_radius, sigmoid="long_tail"
        )


@register
class SwimmerSwimmer6(Swimmer):
    """The 6-body swimmer."""

    name = "SwimmerSwimmer6"
    num_bodies = 6

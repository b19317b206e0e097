"""Humanoid (DM Control Suite, MuJoCo Playground semantics): a 21-joint 3D humanoid stands, walks or runs.

Model: dm_control's ``humanoid.xml`` with Playground's edits: Newton solver with 4 iterations and 8
line-search iterations, ``eulerdamp`` off, and the 18 touch sensors removed (nothing reads them).
Physics at 5 ms, control every 25 ms (5 substeps). Added sensors: head position, the torso frame's
axes, and the hands' and feet's positions in the torso frame (the observation's "extremities").

Reset: Playground's, the model's default pose (standing upright, 1.5 m torso height) at rest, with no
randomization; every start state is that pose.

Observation (67), Playground's order: joint angles ``qpos[7:]`` (21), head height (1), hands and feet
relative to the torso in its frame (left hand, left foot, right hand, right foot: 12), the z-row of
the torso's orientation matrix (3), centre-of-mass velocity (3), ``qvel`` (27).
Reward: ``standing * upright * small_control * move``, each in [0, 1].

NaN. MuJoCo Warp warns that a frictional contact (condim >= 3) whose friction is below ``mjMINMU``
"may cause NaN": its pyramid rows then get a ~0 regularizer, ``efc_D`` explodes and the float32 Newton
Hessian can turn indefinite. This model has no such contact, so no model edit is needed for it: the
humanoid's geoms are frictionless (condim 1, friction (0.7, 0.005, 1e-4)) and the floor's is (1, 0.005,
1e-4) with condim 3, and MuJoCo mixes both by maximum, so every humanoid-floor contact has sliding
friction 1; mujoco-warp 4.0.0's ``put_model`` raises no warning for it. Checked here (2-core CPU): along
stressed native rollouts the largest ``efc_D`` is ~800 and cond(H) <= 1.3e5, so the float32 Cholesky
never fails, and 10^5 random-action steps of each humanoid task on MuJoCo Warp (CPU) gave no
non-finite state or reward. A world that still goes non-finite (e.g. a GPU-only solver failure) is
terminated, rewarded 0 and reset by the env, and counted in ``env.stats``.
"""

from __future__ import annotations

from abc import abstractmethod

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics, sensor_slice
from pqn_torch.envs.tasks.base import StartStates, Task, TaskConfig
from pqn_torch.envs.tasks.common import add_body_sensor, load_dm_suite_spec, small_control
from pqn_torch.envs.tasks.registry import register
from pqn_torch.envs.tasks.rewards import tolerance

STAND_HEIGHT = 1.4  # head height (m) above which standing is rewarded fully
WALK_SPEED = 1.0  # horizontal centre-of-mass speeds (m/s) above which moving is rewarded fully
RUN_SPEED = 10.0
EXTREMITIES = ("left_hand", "left_foot", "right_hand", "right_foot")
AXES = (
    (mujoco.mjtSensor.mjSENS_FRAMEXAXIS, "x"),
    (mujoco.mjtSensor.mjSENS_FRAMEYAXIS, "y"),
    (mujoco.mjtSensor.mjSENS_FRAMEZAXIS, "z"),
)
FREE_JOINT_QPOS = 7  # root position (3) and quaternion (4)


class Humanoid(Task):
    """Shared model, reset and observation; subclasses choose the move term (see module docstring)."""

    default_config = TaskConfig(ctrl_dt=0.025, sim_dt=0.005, naconmax=200_000, njmax=250)

    def build_spec(self) -> mujoco.MjSpec:
        spec = load_dm_suite_spec("humanoid.xml", iterations=4, ls_iterations=8, solver=mujoco.mjtSolver.mjSOL_NEWTON)
        for sensor in list(spec.sensors):
            if sensor.type == mujoco.mjtSensor.mjSENS_TOUCH:
                spec.delete(sensor)
        add_body_sensor(spec, "head_pos", mujoco.mjtSensor.mjSENS_FRAMEPOS, "head")
        for sensor_type, axis in AXES:
            add_body_sensor(spec, f"torso_{axis}axis", sensor_type, "torso")
        for body in EXTREMITIES:
            add_body_sensor(spec, f"{body}_in_torso", mujoco.mjtSensor.mjSENS_FRAMEPOS, body, relative_to="torso")
        return spec

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        self._qpos0 = torch.as_tensor(mj_model.qpos0)
        self._head_z = sensor_slice(mj_model, "head_pos").start + 2
        # build_spec adds the torso's x-, y- and z-axis back to back (9 columns); entry 2 of each is
        # the z-row of xmat, and the last column is xmat[2, 2].
        self._axes = slice(sensor_slice(mj_model, "torso_xaxis").start, sensor_slice(mj_model, "torso_zaxis").stop)
        self._extremities = slice(
            sensor_slice(mj_model, f"{EXTREMITIES[0]}_in_torso").start,
            sensor_slice(mj_model, f"{EXTREMITIES[-1]}_in_torso").stop,
        )
        if self._axes.stop - self._axes.start != 9 or self._extremities.stop - self._extremities.start != 12:
            raise ValueError("humanoid frame sensors must be contiguous; another sensor was added between them")
        self._com_velocity = sensor_slice(mj_model, "torso_subtreelinvel")

    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        """The default pose at rest for every world (Playground does not randomize the humanoid)."""
        qpos = self._qpos0.to(physics.qpos).expand(num, -1).clone()
        return StartStates(qpos=qpos, qvel=torch.zeros_like(physics.qvel[:num]))

    def torso_vertical(self, physics: Physics) -> torch.Tensor:
        """Row 2 of the torso's orientation matrix: the world z-axis in torso coordinates [N, 3]."""
        return physics.sensordata[:, self._axes][:, 2::3]

    def observation(self, physics: Physics) -> torch.Tensor:
        return torch.cat(
            [
                physics.qpos[:, FREE_JOINT_QPOS:],
                physics.sensordata[:, self._head_z : self._head_z + 1],
                physics.sensordata[:, self._extremities],
                self.torso_vertical(physics),
                physics.sensordata[:, self._com_velocity],
                physics.qvel,
            ],
            dim=-1,
        )

    @abstractmethod
    def move(self, physics: Physics) -> torch.Tensor:
        """The task's term on the horizontal centre-of-mass velocity, in [0, 1]."""

    def reward(self, physics: Physics, action: torch.Tensor) -> torch.Tensor:
        standing = tolerance(
            physics.sensordata[:, self._head_z], bounds=(STAND_HEIGHT, float("inf")), margin=STAND_HEIGHT / 4
        )
        upright = tolerance(
            self.torso_vertical(physics)[:, 2],
            bounds=(0.9, float("inf")),
            sigmoid="linear",
            margin=1.9,
            value_at_margin=0,
        )
        return standing * upright * small_control(action) * self.move(physics)


@register
class HumanoidStand(Humanoid):
    """Stand still: each horizontal centre-of-mass velocity component near 0 (gaussian, 0.1 at 2 m/s)."""

    name = "HumanoidStand"

    def move(self, physics: Physics) -> torch.Tensor:
        horizontal = physics.sensordata[:, self._com_velocity][:, :2]
        return tolerance(horizontal, margin=2).mean(dim=-1)


class HumanoidMove(Humanoid):
    """Move at ``speed`` or faster: ``(5 m + 1) / 6`` with m a linear ramp of the horizontal COM speed."""

    speed: float

    def move(self, physics: Physics) -> torch.Tensor:
        horizontal_speed = torch.linalg.vector_norm(physics.sensordata[:, self._com_velocity][:, :2], dim=-1)
        ramp = tolerance(
            horizontal_speed, bounds=(self.speed, float("inf")), margin=self.speed, value_at_margin=0, sigmoid="linear"
        )
        return (5 * ramp + 1) / 6


@register
class HumanoidWalk(HumanoidMove):
    """Walk at 1 m/s or faster while standing upright."""

    name = "HumanoidWalk"
    speed = WALK_SPEED


@register
class HumanoidRun(HumanoidMove):
    """Run at 10 m/s or faster while standing upright."""

    name = "HumanoidRun"
    speed = RUN_SPEED

"""Cartpole (DM Control Suite, MuJoCo Playground semantics): balance or swing up a pole on a cart.

Model: dm_control's ``cartpole.xml`` with Playground's options (1 solver iteration, 4 line-search
iterations, Euler instead of RK4, ``eulerdamp`` and ``energy`` off, contacts still disabled); one
physics step of 10 ms per control step. Added sensor: the pole's frame z-axis, whose x and z entries
are the ``xmat[pole, 0, 2]`` (sine) and ``xmat[pole, 2, 2]`` (cosine) Playground reads.

Observation (5), Playground's and dm_control's order: cart position, pole cosine, pole sine, ``qvel``
(cart velocity, pole angular velocity). As in Playground the angle terms come from the kinematics at
the start of the last physics step (``xmat`` after ``mjx.step``) and the rest from the new state.
"""

from __future__ import annotations

import math

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics, sensor_slice
from pqn_torch.envs.tasks.base import StartStates, Task, TaskConfig
from pqn_torch.envs.tasks.common import add_body_sensor, load_dm_suite_spec, normal, small_control, uniform
from pqn_torch.envs.tasks.registry import register
from pqn_torch.envs.tasks.rewards import tolerance

JOINTS = ("slider", "hinge_1")  # qpos[0] = cart position, qpos[1] = pole angle (0 = upright)
CART_RANGE = (-0.25, 0.25)  # sparse reward: cart position bounds
ANGLE_COSINE_RANGE = (0.995, 1.0)  # sparse reward: pole cosine bounds
BALANCE_CART_START = 0.1  # balance reset: cart uniform in +-0.1 m
BALANCE_ANGLE_START = 0.034  # balance reset: pole angle uniform in +-0.034 rad
SWINGUP_START_STD = 0.01  # swing-up reset: cart and pole angle (around pi, hanging down) noise
START_VELOCITY_STD = 0.01  # both resets: qvel noise


class Cartpole(Task):
    """Dense reward: ``upright * centered * small_control * small_velocity``; sparse: pole up and cart centred."""

    default_config = TaskConfig(ctrl_dt=0.01, sim_dt=0.01, naconmax=0, njmax=2)
    observation_layout = (
        ("cart position", 1),
        ("pole angle cosine", 1),
        ("pole angle sine", 1),
        ("qvel: cart velocity, pole angular velocity", 2),
    )
    swing_up: bool = False
    sparse: bool = False

    def build_spec(self) -> mujoco.MjSpec:
        spec = load_dm_suite_spec(
            "cartpole.xml", iterations=1, ls_iterations=4, disable=(mujoco.mjtDisableBit.mjDSBL_CONTACT,)
        )
        add_body_sensor(spec, "pole_zaxis", mujoco.mjtSensor.mjSENS_FRAMEZAXIS, "pole_1")
        return spec

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        joints = tuple(mj_model.joint(i).name for i in range(mj_model.njnt))
        if joints != JOINTS or mj_model.nq != len(JOINTS):
            raise ValueError(f"cartpole model joints changed; expected {JOINTS}, got {joints}")
        axis = sensor_slice(mj_model, "pole_zaxis")
        self._pole_sin, self._pole_cos = axis.start, axis.start + 2

    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        """Balance: near upright and centred; swing-up: hanging down; small random velocities."""
        like = physics.qpos
        if self.swing_up:
            cart = normal(generator, (num,), SWINGUP_START_STD, like=like)
            angle = normal(generator, (num,), SWINGUP_START_STD, like=like, mean=math.pi)
        else:
            cart = uniform(generator, (num,), -BALANCE_CART_START, BALANCE_CART_START, like=like)
            angle = uniform(generator, (num,), -BALANCE_ANGLE_START, BALANCE_ANGLE_START, like=like)
        qvel = normal(generator, (num, physics.qvel.shape[1]), START_VELOCITY_STD, like=physics.qvel)
        return StartStates(qpos=torch.stack([cart, angle], dim=-1), qvel=qvel)

    def observation(self, physics: Physics) -> torch.Tensor:
        sensors = physics.sensordata
        return torch.cat(
            [
                physics.qpos[:, :1],
                sensors[:, self._pole_cos : self._pole_cos + 1],
                sensors[:, self._pole_sin : self._pole_sin + 1],
                physics.qvel,
            ],
            dim=-1,
        )

    def reward(self, physics: Physics, action: torch.Tensor) -> torch.Tensor:
        cart = physics.qpos[:, 0]
        pole_cos = physics.sensordata[:, self._pole_cos]
        if self.sparse:
            return tolerance(cart, bounds=CART_RANGE) * tolerance(pole_cos, bounds=ANGLE_COSINE_RANGE)
        upright = (pole_cos + 1) / 2
        centered = (1 + tolerance(cart, margin=2)) / 2
        small_velocity = (1 + tolerance(physics.qvel[:, 1:], margin=5).amin(dim=-1)) / 2
        return upright * centered * small_control(action) * small_velocity


@register
class CartpoleBalance(Cartpole):
    """Keep the pole upright from a near-upright start."""

    name = "CartpoleBalance"


@register
class CartpoleBalanceSparse(Cartpole):
    """Balance with a 0/1 reward: pole within ~5.7 degrees of upright and cart within 0.25 m of centre."""

    name = "CartpoleBalanceSparse"
    sparse = True


@register
class CartpoleSwingup(Cartpole):
    """Swing the pole up from hanging down and keep it upright."""

    name = "CartpoleSwingup"
    swing_up = True


@register
class CartpoleSwingupSparse(Cartpole):
    """Swing-up with the sparse 0/1 reward."""

    name = "CartpoleSwingupSparse"
    swing_up = True
    sparse = True

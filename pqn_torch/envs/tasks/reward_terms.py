"""Reward terms that recur across MuJoCo Playground's robot tasks, written once (unscaled, [N] per world).

A task combines them with its scales in :meth:`~pqn_torch.envs.tasks.robot_task.RobotTask.total_reward`. Each
function states its formula; names follow Playground's reward configs. Notation: ``c`` the command
``[vx, vy, yaw rate]``, ``v`` the local linear velocity, ``w`` angular velocity, ``q``/``qd`` joint angles and
velocities, ``q0`` the home pose, ``tau`` actuator forces, ``a``/``a1``/``a2`` this, the last and the
second-last action, ``1[.]`` an indicator.
"""

from __future__ import annotations

import torch


def tracking_lin_vel(command: torch.Tensor, local_linvel: torch.Tensor, sigma: float) -> torch.Tensor:
    """``exp(-|c_xy - v_xy|^2 / sigma)``: follow the commanded planar velocity."""
    return torch.exp(-((command[:, :2] - local_linvel[:, :2]) ** 2).sum(-1) / sigma)


def tracking_ang_vel(command: torch.Tensor, gyro: torch.Tensor, sigma: float) -> torch.Tensor:
    """``exp(-(c_yaw - w_z)^2 / sigma)``: follow the commanded yaw rate (``gyro`` in the trunk frame)."""
    return torch.exp(-((command[:, 2] - gyro[:, 2]) ** 2) / sigma)


def lin_vel_z(global_linvel: torch.Tensor) -> torch.Tensor:
    """``v_z^2`` (world frame): bouncing."""
    return global_linvel[:, 2] ** 2


def ang_vel_xy(global_angvel: torch.Tensor) -> torch.Tensor:
    """``w_x^2 + w_y^2`` (world frame): rolling and pitching."""
    return (global_angvel[:, :2] ** 2).sum(-1)


def orientation(upvector: torch.Tensor) -> torch.Tensor:
    """``up_x^2 + up_y^2`` of the trunk's up axis in the world: tilt away from level."""
    return (upvector[:, :2] ** 2).sum(-1)


def stand_still(pose_offset: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
    """``|q - q0|_1 * (1 - moving)``: keep the home pose when the command is zero (``moving`` in {0, 1})."""
    return pose_offset.abs().sum(-1) * (1.0 - moving)


def termination(terminated: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``1[terminated]`` in ``like``'s dtype: the step that ends the episode early."""
    return terminated.to(like.dtype)


def pose(pose_offset: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``exp(-sum_j weight_j (q - q0)_j^2)``: stay near the home pose."""
    return torch.exp(-(pose_offset**2 * weights).sum(-1))


def pose_deviation(pose_offset: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_j weight_j (q - q0)_j^2``: away from the home pose (the humanoids' ``pose``, a cost)."""
    return (pose_offset**2 * weights).sum(-1)


def joint_deviation(pose_offset: torch.Tensor) -> torch.Tensor:
    """``sum_j |q - q0|_j`` over the given joints' offsets (the humanoids' hip and knee deviation costs)."""
    return pose_offset.abs().sum(-1)


def torques(force: torch.Tensor) -> torch.Tensor:
    """``|tau|_2 + |tau|_1``: actuator effort."""
    return torch.linalg.vector_norm(force, dim=-1) + force.abs().sum(-1)


def torques_l1(force: torch.Tensor) -> torch.Tensor:
    """``|tau|_1``: actuator effort (the humanoids' ``torques``)."""
    return force.abs().sum(-1)


def action_rate(action: torch.Tensor, last: torch.Tensor, before_last: torch.Tensor | None = None) -> torch.Tensor:
    """``|a - a1|^2``, plus ``|a - 2 a1 + a2|^2`` when ``before_last`` is given: jerky actions."""
    rate = ((action - last) ** 2).sum(-1)
    if before_last is None:
        return rate
    return rate + ((action - 2 * last + before_last) ** 2).sum(-1)


def energy(joint_velocity: torch.Tensor, force: torch.Tensor) -> torch.Tensor:
    """``sum_j |qd_j| |tau_j|``: mechanical power."""
    return (joint_velocity.abs() * force.abs()).sum(-1)


def feet_slip(feet_speed_xy: torch.Tensor, contact: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
    """``sum_feet |v_foot,xy|^2 1[contact] * moving``: feet sliding on the floor."""
    return (feet_speed_xy**2 * contact).sum(-1) * moving


def feet_clearance(feet_height: torch.Tensor, feet_speed_xy: torch.Tensor, max_height: float) -> torch.Tensor:
    """``sum_feet |z_foot - max_height| sqrt(|v_foot,xy|)``: moving feet away from the swing height."""
    return ((feet_height - max_height).abs() * feet_speed_xy.sqrt()).sum(-1)


def feet_height(
    swing_peak: torch.Tensor, landing: torch.Tensor, max_height: float, moving: torch.Tensor
) -> torch.Tensor:
    """``sum_feet (peak / max_height - 1)^2 1[landing] * moving``: swings that miss the target height."""
    return (((swing_peak / max_height - 1.0) ** 2) * landing).sum(-1) * moving


def feet_air_time(
    air_time: torch.Tensor,
    landing: torch.Tensor,
    moving: torch.Tensor,
    threshold: float = 0.1,
    longest: float | None = None,
) -> torch.Tensor:
    """``sum_feet min((air_time - threshold) 1[landing], longest - threshold) * moving``: long steps, paid when
    the foot lands; ``longest`` (the humanoids' 0.5 s) caps what one step earns, ``None``: no cap (Go1)."""
    paid = (air_time - threshold) * landing
    if longest is not None:
        paid = paid.clamp(max=longest - threshold)
    return paid.sum(-1) * moving


def body_slip(body_speed_xy: torch.Tensor, contact: torch.Tensor) -> torch.Tensor:
    """``|v_body,xy| * sum_feet 1[contact]``: the trunk moving while feet touch the floor (the humanoids'
    ``feet_slip``, which reads the trunk's velocity, not the feet's)."""
    return body_speed_xy * contact.to(body_speed_xy.dtype).sum(-1)


def swing_height_curve(phase: torch.Tensor, swing_height: float | torch.Tensor) -> torch.Tensor:
    """The target foot height over a gait cycle (Playground's ``gait.get_rz``): with ``x = (phase + pi) / 2pi``
    in [0, 1], the foot rises from 0 to ``swing_height`` along the cubic ``s^3 + 3 s^2 (1 - s)``, ``s = 2x``, in
    the first half and comes down the same curve, ``s = 2x - 1``, in the second. ``swing_height``: one for all
    worlds or [N, 1] (Spot's per-episode height)."""
    x = (phase + torch.pi) / (2 * torch.pi)
    rising, falling = 2 * x, 2 * x - 1

    def bezier(s: torch.Tensor) -> torch.Tensor:
        return s**3 + 3 * s**2 * (1 - s)

    return torch.where(x <= 0.5, swing_height * bezier(rising), swing_height * (1 - bezier(falling)))


def feet_phase(
    feet_height: torch.Tensor, phase: torch.Tensor, swing_height: float | torch.Tensor, sigma: float = 0.01
) -> torch.Tensor:
    """``exp(-sum_feet (z_foot - z_target(phase_foot))^2 / sigma)``: feet following the gait's height curve
    (:func:`swing_height_curve`; Spot's gait tracking uses ``sigma`` 0.1, the humanoids 0.01)."""
    error = ((feet_height - swing_height_curve(phase, swing_height)) ** 2).sum(-1)
    return torch.exp(-error / sigma)


def dof_pos_limits(q: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """``sum_j max(low_j - q_j, 0) + max(q_j - high_j, 0)``: joints outside their (soft) limits."""
    return ((low - q).clamp(min=0.0) + (q - high).clamp(min=0.0)).sum(dim=-1)


def dof_vel(joint_velocity: torch.Tensor, limit: float) -> torch.Tensor:
    """``sum_j max(|qd_j| - limit, 0)^2``: joint speeds above ``limit``."""
    return ((joint_velocity.abs() - limit).clamp(min=0.0) ** 2).sum(-1)


def dof_acc(joint_acceleration: torch.Tensor) -> torch.Tensor:
    """``sum_j qdd_j^2`` (``qacc`` of the joints)."""
    return (joint_acceleration**2).sum(-1)

"""Analytic forward and inverse kinematics of the Franka Emika Panda arm, batched over worlds.

The inverse is the closed-form solution of He and Liu (2021) for the Panda with joint 7 given (the arm's one
redundant degree of freedom), as MuJoCo Playground 0.2.0's PandaPickCubeCartesian uses it: of the up to eight
solutions it returns the one on the same branches as the current joint angles ``q_actual`` (the side of joint 2
and the elbow configuration of joint 6), so a small move of the target gives a small move of the joints.

The kinematic chain is the manufacturer's modified Denavit-Hartenberg table; the end effector is 0.2104 m out
along the flange's z axis and turned by -45 degrees about it: the point between the fingertips of Menagerie's
``hand`` body (0.1034 m out along its z axis), with the hand's orientation.

The solution always bends the elbow: joint 4 in [-3.61, -0.47] (its limits are [-3.07, -0.07]); joint 2 is
taken as 0 near its singularity (:data:`VERTICAL_COSINE`). Away from both, IK of the FK pose returns the joints.

Everything is a tensor function of [N, ...] inputs with fixed shapes and no host syncs (CUDA-graph safe).
Unreachable targets are answered per world with ``torch.where``, never by branching on values.
"""

from __future__ import annotations

import math

import torch

SHOULDER_HEIGHT = 0.333  # d1
UPPER_ARM = 0.316  # d3
FOREARM = 0.384  # d5
ELBOW_OFFSET = 0.0825  # a4 (and -a4 back at joint 5)
WRIST_OFFSET = 0.088  # a7
FLANGE_TO_TIP = 0.2104  # flange to the end effector along the flange's z axis (0.107 flange + 0.1034 hand)
HAND_TO_TIP = FLANGE_TO_TIP - 0.107
HAND_TURN = -math.pi / 4  # the hand is turned by -45 degrees about the flange's z axis

JOINT6_LIMITS = (-0.0175, 3.7525)
VERTICAL_COSINE = 0.999
"""Beyond this |cos| of the shoulder-to-elbow direction from the vertical, joint 2 is taken as 0 and joint 1 is
kept (the singular configuration: joint 1 and 3 then turn about the same axis)."""

# Shoulder (joint 2) - elbow (joint 4) - wrist (joint 6) triangle: two fixed sides and fixed angles.
_SHOULDER_ELBOW_SQ = ELBOW_OFFSET**2 + UPPER_ARM**2
_ELBOW_WRIST_SQ = ELBOW_OFFSET**2 + FOREARM**2
_SHOULDER_ELBOW = math.sqrt(_SHOULDER_ELBOW_SQ)
_ELBOW_WRIST = math.sqrt(_ELBOW_WRIST_SQ)
_ANGLE_H46 = math.atan2(FOREARM, ELBOW_OFFSET)  # at the elbow, between the forearm and the offset link
_ANGLE_342 = math.atan2(UPPER_ARM, ELBOW_OFFSET)  # at the elbow, between the offset link and the upper arm
_ANGLE_46H = math.atan2(ELBOW_OFFSET, FOREARM)  # at the wrist, between the forearm and the line to H

# Modified DH parameters (alpha, a, d) of joints 1-7; joint 5's a = -a4 is applied as a separate offset.
_DH = (
    (0.0, 0.0, SHOULDER_HEIGHT),
    (-math.pi / 2, 0.0, 0.0),
    (math.pi / 2, 0.0, UPPER_ARM),
    (math.pi / 2, ELBOW_OFFSET, 0.0),
    (-math.pi / 2, -ELBOW_OFFSET, FOREARM),
    (math.pi / 2, 0.0, 0.0),
    (math.pi / 2, WRIST_OFFSET, 0.0),
)


def dh_transform(theta: torch.Tensor, alpha: float, a: float, d: float) -> torch.Tensor:
    """[N, 4, 4] modified DH transforms ``RotX(alpha) TransX(a) RotZ(theta) TransZ(d)`` for angles ``theta`` [N]."""
    cos_t, sin_t = torch.cos(theta), torch.sin(theta)
    cos_a, sin_a = math.cos(alpha), math.sin(alpha)
    zero, one = torch.zeros_like(theta), torch.ones_like(theta)
    rows = (
        (cos_t, -sin_t, zero, zero + a),
        (sin_t * cos_a, cos_t * cos_a, zero - sin_a, zero - d * sin_a),
        (sin_t * sin_a, cos_t * sin_a, zero + cos_a, zero + d * cos_a),
        (zero, zero, zero, one),
    )
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def _frames_to_wrist(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frames after joint 4's offset (point H, where the -a4 step back lands), joint 6 and joint 7, [N, 4, 4]."""
    frame = dh_transform(q[:, 0], *_DH[0])
    for joint in (1, 2, 3):
        frame = frame @ dh_transform(q[:, joint], *_DH[joint])
    alpha, a, d = _DH[4]
    at_h = frame @ dh_transform(torch.zeros_like(q[:, 4]), 0.0, a, 0.0)  # the step back by -a4 alone
    at_6 = at_h @ dh_transform(q[:, 4], alpha, 0.0, d) @ dh_transform(q[:, 5], *_DH[5])
    return at_h, at_6, at_6 @ dh_transform(q[:, 6], *_DH[6])


def franka_fk(q: torch.Tensor) -> torch.Tensor:
    """End-effector pose [N, 4, 4] in the arm's base frame for joint angles ``q`` [N, 7]."""
    _, _, flange = _frames_to_wrist(q)
    return flange @ dh_transform(torch.full_like(q[:, 0], HAND_TURN), 0.0, 0.0, FLANGE_TO_TIP)


def _rotation_z(angle: torch.Tensor) -> torch.Tensor:
    """[N, 3, 3] rotations by ``angle`` [N] about z."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero, one = torch.zeros_like(angle), torch.ones_like(angle)
    return torch.stack(
        [torch.stack([cos, -sin, zero], -1), torch.stack([sin, cos, zero], -1), torch.stack([zero, zero, one], -1)],
        dim=-2,
    )


def _unit(vector: torch.Tensor) -> torch.Tensor:
    return vector / torch.linalg.vector_norm(vector, dim=-1, keepdim=True)


def _columns(*vectors: torch.Tensor) -> torch.Tensor:
    return torch.stack(vectors, dim=-1)


def _apply(matrix: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """``matrix @ vector`` for [N, 3, 3] and [N, 3]."""
    return (matrix @ vector.unsqueeze(-1)).squeeze(-1)


def franka_ik(
    rotation: torch.Tensor, position: torch.Tensor, q7: torch.Tensor, q_actual: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint angles [N, 7] that put the end effector at ``position`` [N, 3] with orientation ``rotation``
    [N, 3, 3] (base frame), joint 7 at ``q7`` [N], on the branches of ``q_actual`` [N, 7]; and [N] bool
    ``solved``. Where the pose is out of reach (a triangle or angle of the solution does not close: NaN in the
    closed form) ``solved`` is False and the angles are ``q_actual``. Joint limits are not checked, except that
    joint 6 is wrapped into its range by one turn."""
    # Branches of the current configuration: the elbow (joint 6) side and the sign of joint 2.
    at_h, at_6, _ = _frames_to_wrist(q_actual)
    shoulder = torch.zeros_like(position)
    shoulder[:, 2].fill_(SHOULDER_HEIGHT)
    wrist_now = at_6[:, :3, 3]
    turn = torch.linalg.cross(at_h[:, :3, 3] - wrist_now, shoulder - wrist_now, dim=-1)
    elbow_case_0 = (turn * at_6[:, :3, 2]).sum(-1) <= 0
    joint2_negative = q_actual[:, 1] < 0

    # Wrist centre (joint 6) from the end-effector pose and joint 7.
    z_tip = rotation[:, :, 2]
    flange = position - FLANGE_TO_TIP * z_tip
    angle7 = q7 - math.pi / 4
    x_6 = _unit(_apply(rotation, _columns(torch.cos(angle7), -torch.sin(angle7), torch.zeros_like(q7))))
    wrist = flange - WRIST_OFFSET * x_6

    # Joint 4 from the shoulder-elbow-wrist triangle.
    shoulder_to_wrist = wrist - shoulder
    length_sq = (shoulder_to_wrist * shoulder_to_wrist).sum(-1)
    length = torch.sqrt(length_sq)
    angle_246 = torch.acos((_SHOULDER_ELBOW_SQ + _ELBOW_WRIST_SQ - length_sq) / (2 * _SHOULDER_ELBOW * _ELBOW_WRIST))
    q4 = angle_246 + _ANGLE_H46 + _ANGLE_342 - 2 * math.pi

    # Joint 6 from the direction of the shoulder seen in the wrist's frame.
    angle_462 = torch.acos((length_sq + _ELBOW_WRIST_SQ - _SHOULDER_ELBOW_SQ) / (2 * length * _ELBOW_WRIST))
    angle_26h = _ANGLE_46H + angle_462
    reach = -length * torch.cos(angle_26h)
    z_6 = _unit(torch.linalg.cross(z_tip, x_6, dim=-1))
    y_6 = _unit(torch.linalg.cross(z_6, x_6, dim=-1))
    wrist_frame = _columns(x_6, y_6, z_6)
    to_shoulder = _apply(wrist_frame.transpose(-1, -2), -shoulder_to_wrist)
    phi = torch.atan2(to_shoulder[:, 1], to_shoulder[:, 0])
    theta = torch.asin(reach / torch.linalg.vector_norm(to_shoulder[:, :2], dim=-1))
    q6 = torch.where(elbow_case_0, math.pi - theta - phi, theta - phi)
    q6 = torch.where(q6 <= JOINT6_LIMITS[0], q6 + 2 * math.pi, q6)
    q6 = torch.where(q6 >= JOINT6_LIMITS[1], q6 - 2 * math.pi, q6)

    # Joints 1 and 2 from the direction of point P (on joint 5's axis, level with the elbow) from the shoulder.
    angle_p26 = 1.5 * math.pi - angle_462 - angle_246 - _ANGLE_342
    angle_p = math.pi - angle_p26 - angle_26h
    wrist_to_p = length * torch.sin(angle_p26) / torch.sin(angle_p)
    z_5 = _apply(wrist_frame, _columns(torch.sin(q6), torch.cos(q6), torch.zeros_like(q6)))
    shoulder_to_p = wrist - wrist_to_p.unsqueeze(-1) * z_5 - shoulder
    z_3 = _unit(shoulder_to_p)
    vertical = z_3[:, 2].abs() > VERTICAL_COSINE
    q1 = torch.atan2(shoulder_to_p[:, 1], shoulder_to_p[:, 0])
    q1 = torch.where(joint2_negative, torch.where(q1 < 0, q1 + math.pi, q1 - math.pi), q1)
    q2 = torch.where(joint2_negative, -torch.acos(z_3[:, 2]), torch.acos(z_3[:, 2]))
    q1 = torch.where(vertical, q_actual[:, 0], q1)
    q2 = torch.where(vertical, torch.zeros_like(q2), q2)

    # Joint 3 from the upper arm's frame in joint 2's frame.
    y_3 = _unit(-torch.linalg.cross(shoulder_to_wrist, shoulder_to_p, dim=-1))
    x_3 = torch.linalg.cross(y_3, z_3, dim=-1)
    frame_2 = _rotation_z(q1) @ dh_transform(q2, *_DH[1])[:, :3, :3]
    x_3_in_2 = _apply(frame_2.transpose(-1, -2), x_3)
    q3 = torch.atan2(x_3_in_2[:, 2], x_3_in_2[:, 0])

    # Joint 5 from the direction of point H (elbow offset) in joint 5's frame.
    wrist_to_h = shoulder + UPPER_ARM * z_3 + ELBOW_OFFSET * x_3 - wrist + FOREARM * z_5
    frame_5 = wrist_frame @ dh_transform(q6, *_DH[5])[:, :3, :3].transpose(-1, -2)
    h_in_5 = _apply(frame_5.transpose(-1, -2), wrist_to_h)
    q5 = -torch.atan2(h_in_5[:, 1], h_in_5[:, 0])

    q = torch.stack([q1, q2, q3, q4, q5, q6, q7], dim=-1)
    solved = torch.isfinite(q).all(dim=-1)
    return torch.where(solved.unsqueeze(-1), q, q_actual), solved

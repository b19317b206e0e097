"""The Franka arm's analytic kinematics (``franka_ik.py``) against MuJoCo's own kinematics of Menagerie's Panda:
forward kinematics, inverse of forward over random reachable poses (the pose MuJoCo computes for the solution
is the one commanded), the branch kept near the current joints, float32, unreachable targets, no host sync."""

import mujoco
import numpy as np
import pytest
import torch

from pqn_torch.cuda_graph import forbid_host_syncs
from pqn_torch.envs.tasks.manipulation.franka_ik import HAND_TO_TIP, franka_fk, franka_ik
from pqn_torch.envs.tasks.manipulation.panda import PandaPickCube

ARM = 7
SAMPLES = 500
POSITION_TOLERANCE = 1e-9  # m, float64
ROTATION_TOLERANCE = 1e-6  # per matrix entry: Menagerie's hand quaternion has 7 digits (3.5e-8 off -45 degrees)


@pytest.fixture(scope="module")
def model() -> mujoco.MjModel:
    return PandaPickCube().build_spec().compile()


def mujoco_tip(model: mujoco.MjModel, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MuJoCo's end-effector poses for arm joint angles ``q`` [N, 7]: the hand body's frame moved 0.1034 m out along
    its z axis (between the fingertips), as rotations [N, 3, 3] and positions [N, 3]."""
    data = mujoco.MjData(model)
    rotations, positions = [], []
    for angles in q:
        data.qpos[:ARM] = angles
        mujoco.mj_kinematics(model, data)
        hand = data.body("hand")
        rotation = hand.xmat.reshape(3, 3).copy()
        rotations.append(rotation)
        positions.append(hand.xpos + HAND_TO_TIP * rotation[:, 2])
    return np.array(rotations), np.array(positions)


def random_joints(model: mujoco.MjModel, num: int, seed: int) -> np.ndarray:
    """``num`` arm configurations uniform within the joint limits, on the solver's branch: joint 4 at most -0.5
    (the solution always bends the elbow that far) and |joint 2| at least 0.05 (near 0 the solver sets it to 0)."""
    rng = np.random.default_rng(seed)
    low, high = model.jnt_range[:ARM, 0], model.jnt_range[:ARM, 1]
    kept = np.empty((0, ARM))
    while len(kept) < num:
        q = rng.uniform(low, high, size=(num, ARM))
        kept = np.concatenate([kept, q[(q[:, 3] <= -0.5) & (np.abs(q[:, 1]) >= 0.05)]])
    return kept[:num]


def test_forward_kinematics_matches_mujoco(model):
    q = random_joints(model, 300, seed=0)
    rotations, positions = mujoco_tip(model, q)
    pose = franka_fk(torch.as_tensor(q))
    torch.testing.assert_close(pose[:, :3, 3], torch.as_tensor(positions), atol=1e-12, rtol=0)
    torch.testing.assert_close(pose[:, :3, :3], torch.as_tensor(rotations), atol=ROTATION_TOLERANCE, rtol=0)
    torch.testing.assert_close(pose[:, 3], torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64).expand(300, 4))


def test_inverse_of_random_reachable_poses_reaches_them(model):
    """500 poses MuJoCo computes for random joint angles: IK (joint 7 and the current joints given) returns
    angles whose MuJoCo pose is the commanded one, and they are the angles the pose came from."""
    q = random_joints(model, SAMPLES, seed=1)
    rotations, positions = mujoco_tip(model, q)
    q_true = torch.as_tensor(q)
    solution, solved = franka_ik(torch.as_tensor(rotations), torch.as_tensor(positions), q_true[:, 6], q_true)
    assert solved.all()
    reached_rotations, reached_positions = mujoco_tip(model, solution.numpy())
    position_error = np.abs(reached_positions - positions).max()
    rotation_error = np.abs(reached_rotations - rotations).max()
    assert position_error < POSITION_TOLERANCE and rotation_error < ROTATION_TOLERANCE, (position_error, rotation_error)
    # Near the wrist's singularity the joints amplify the hand quaternion's rounding: 6e-5 rad measured.
    torch.testing.assert_close(solution, q_true, atol=1e-3, rtol=0)


def test_current_joints_a_little_off_select_the_same_solution(model):
    """The branch (the elbow side of joint 6, the sign of joint 2) comes from the current joints: with them up to
    0.02 rad off, IK still reaches the pose with the configuration it came from (within 0.05 rad: next to a branch
    boundary the two solutions are close), not another of its eight."""
    q = random_joints(model, SAMPLES, seed=2)
    rotations, positions = mujoco_tip(model, q)
    q_true = torch.as_tensor(q)
    noise = torch.rand(SAMPLES, ARM, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.04 - 0.02
    solution, solved = franka_ik(torch.as_tensor(rotations), torch.as_tensor(positions), q_true[:, 6], q_true + noise)
    assert solved.all()
    _, reached = mujoco_tip(model, solution.numpy())
    assert np.abs(reached - positions).max() < POSITION_TOLERANCE
    torch.testing.assert_close(solution, q_true, atol=0.05, rtol=0)


def test_float32_reaches_within_a_tenth_of_a_millimetre(model):
    """MuJoCo Warp's dtype: the same poses solved in float32 land within 0.1 mm of the target."""
    q = random_joints(model, SAMPLES, seed=3)
    rotations, positions = mujoco_tip(model, q)
    q_true, rotations32 = torch.as_tensor(q, dtype=torch.float32), torch.as_tensor(rotations, dtype=torch.float32)
    solution, solved = franka_ik(rotations32, torch.as_tensor(positions, dtype=torch.float32), q_true[:, 6], q_true)
    assert solved.all() and solution.dtype == torch.float32
    _, reached = mujoco_tip(model, solution.double().numpy())
    assert np.abs(reached - positions).max() < 1e-4


def test_unreachable_targets_keep_the_current_joints(model):
    """World 1 asks for the tip 1.5 m out (the shoulder-elbow-wrist triangle cannot stretch that far), world 2 for
    the wrist centre at the shoulder (it cannot fold that close): they are not solved and keep their current
    joints exactly, while worlds 0 and 3 get the same solution as when solved alone."""
    q = random_joints(model, 4, seed=4)
    rotations, positions = mujoco_tip(model, q)
    q_true = torch.as_tensor(q)
    alone, _ = franka_ik(torch.as_tensor(rotations), torch.as_tensor(positions), q_true[:, 6], q_true)
    positions[1] = [1.5, 0.0, 0.3]
    angle = q[2, 6] - np.pi / 4  # joint 7 sets the wrist's offset direction in the tip's frame
    wrist_offset = 0.088 * rotations[2] @ np.array([np.cos(angle), -np.sin(angle), 0.0])
    positions[2] = np.array([0.0, 0.0, 0.333]) + 0.2104 * rotations[2][:, 2] + wrist_offset
    current = q_true + 0.1
    solution, solved = franka_ik(torch.as_tensor(rotations), torch.as_tensor(positions), q_true[:, 6], current)
    assert solved.tolist() == [True, False, False, True]
    assert torch.equal(solution[1:3], current[1:3])
    assert torch.isfinite(solution).all()
    torch.testing.assert_close(solution[[0, 3]], alone[[0, 3]], atol=1e-6, rtol=0)


def test_inverse_kinematics_makes_no_host_sync(model):
    q = torch.as_tensor(random_joints(model, 8, seed=5))
    pose = franka_fk(q)
    pose[0, 0, 3] = 2.0  # one unreachable world: its fallback is chosen without a host check
    with forbid_host_syncs():
        franka_ik(pose[:, :3, :3], pose[:, :3, 3], q[:, 6], q)


def test_near_the_shoulder_singularity_joint_1_keeps_its_angle(model):
    """With the upper arm within 2.6 degrees of vertical the solver sets joint 2 to 0 and keeps joint 1 at its
    current angle, also when joint 2 is negative now (Playground's port turned joint 1 by pi there); the pose
    then misses by the tilt dropped (0.02 rad at most ~0.9 m from the shoulder: under 2 cm)."""
    q = random_joints(model, 2, seed=6)
    q[:, 1] = 0.02
    rotations, positions = mujoco_tip(model, q)
    current = torch.as_tensor(q)
    current[1, 1] = -0.02  # world 1: joint 2 negative now
    solution, solved = franka_ik(torch.as_tensor(rotations), torch.as_tensor(positions), current[:, 6], current)
    assert solved.all()
    torch.testing.assert_close(solution[:, 0], current[:, 0], atol=1e-12, rtol=0)
    assert (solution[:, 1] == 0).all()
    _, reached = mujoco_tip(model, solution.numpy())
    assert np.abs(reached - positions).max() < 0.02

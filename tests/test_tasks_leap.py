"""The LEAP hand cube tasks: sizes and model, observation layouts against MuJoCo's own kinematics, reward terms on
hand-built states (orientation errors worked by hand from quaternions), the controls (Reorient's moving average
against a worked sequence), reset distributions, goal turning after a success, the cube-drop termination,
graph safety, warp parity and a training smoke run."""

import contextlib
import math

import mujoco
import numpy as np
import pytest
import torch

from pqn_torch.cuda_graph import forbid_host_syncs
from pqn_torch.envs.tasks.manipulation import leap_hand
from pqn_torch.training import run_training

from task_testing import double, make_task_env, random_actions
from training_testing import tiny_config

ROTATE, REORIENT = "LeapCubeRotateZAxis", "LeapCubeReorient"
HOME_HAND = [0.8, 0, 0.8, 0.8, 0.8, 0, 0.8, 0.8, 0.8, 0, 0.8, 0.8, 0.8, 0.8, 0.8, 0]  # the home keyframe's joints
HAND, CUBE, CUBE_QUAT = slice(0, 16), slice(16, 19), slice(19, 23)
CUBE_LINVEL, CUBE_ANGVEL = slice(16, 19), slice(19, 22)  # free joint: world linear, body-frame angular velocity
GOAL_HOME = (0.25, 0.16, 0.0)
DT = 0.05


def turn(axis, angle) -> list[float]:
    """The quaternion of a turn by ``angle`` about the unit ``axis``."""
    return [math.cos(angle / 2), *(math.sin(angle / 2) * np.asarray(axis, dtype=float))]


def home_state(env, goal_quat=(1.0, 0.0, 0.0, 0.0)):
    """Every world at the home keyframe (cube resting in the palm), at rest, the goal at its home position."""
    qpos = torch.as_tensor(env.physics.mj_model.keyframe("home").qpos).repeat(env.num_envs, 1)
    mocap_pos = double([[GOAL_HOME]]).repeat(env.num_envs, 1, 1)
    mocap_quat = double([[goal_quat]]).repeat(env.num_envs, 1, 1)
    return qpos, torch.zeros_like(env.physics.qvel), mocap_pos, mocap_quat


def kinematics(model: mujoco.MjModel, qpos, qvel, ctrl, mocap_quat=None) -> mujoco.MjData:
    """MuJoCo's forward pass of one world, for independent expectations."""
    data = mujoco.MjData(model)
    data.qpos[:], data.qvel[:], data.ctrl[:] = np.asarray(qpos), np.asarray(qvel), np.asarray(ctrl)
    if mocap_quat is not None:
        data.mocap_pos[:], data.mocap_quat[:] = np.asarray(GOAL_HOME), np.asarray(mocap_quat)
    mujoco.mj_forward(model, data)
    return data


def relative_rotation_rows(quat, goal) -> np.ndarray:
    """Rows 2-3 of the rotation matrix of ``quat * goal^-1``, by MuJoCo's quaternion functions."""
    inverse, product, matrix = np.zeros(4), np.zeros(4), np.zeros(9)
    mujoco.mju_negQuat(inverse, np.asarray(goal, dtype=float))
    mujoco.mju_mulQuat(product, np.asarray(quat, dtype=float), inverse)
    mujoco.mju_quat2Mat(matrix, product)
    return matrix[3:]


@pytest.fixture(scope="module")
def rotate():
    return make_task_env(ROTATE, num_envs=4, obs_noise_level=0.0)


@pytest.fixture(scope="module")
def reorient():
    return make_task_env(REORIENT, num_envs=4, obs_noise_level=0.0)


@pytest.mark.parametrize(
    "name, obs, critic, length, mapping",
    [
        (ROTATE, 32, 105, 500, ("default_pose_offset", 0.6, False)),
        (REORIENT, 57, 128, 1000, ("ctrl_increment", 0.5, True)),
    ],
)
def test_sizes_timing_model_and_action_space(name, obs, critic, length, mapping):
    env = make_task_env(name, num_envs=2)
    assert (env.obs_dim, env.critic_obs_dim, env.action_dim) == (obs, critic, 16)
    assert sum(size for _, size in env.task.observation_layout) == obs
    assert env.episode_length == length and env.ctrl_dt == DT and env.task.substeps == 5
    assert env.task.config.contacts_per_world == 30 and env.task.config.njmax == 160
    model = env.physics.mj_model
    assert (model.nq, model.nv, model.nu, model.nmocap, model.nmesh) == (23, 22, 16, 1, 0)  # meshes dropped
    assert model.opt.timestep == 0.01 and model.opt.ccd_iterations == 10
    assert (model.opt.iterations, model.opt.ls_iterations) == (5, 8)
    colliding = [i for i in range(model.ngeom) if model.geom_contype[i] or model.geom_conaffinity[i]]
    kinds = [int(model.geom_type[i]) for i in colliding]
    assert kinds.count(mujoco.mjtGeom.mjGEOM_BOX) == 36 and kinds.count(mujoco.mjtGeom.mjGEOM_PLANE) == 1
    assert len(kinds) == 37
    torch.testing.assert_close(env.action_low, -torch.ones(16))
    torch.testing.assert_close(env.action_high, torch.ones(16))
    described = env.task.control_mapping()
    assert (described.mode, described.scale, described.clipped) == mapping


def test_rotate_observation_layout_at_a_known_state(rotate):
    """Hand bent, the cube turned and spinning: each entry against MuJoCo's own forward pass."""
    env = rotate
    qpos, qvel, _, _ = home_state(env)
    qpos[:, 1], qpos[:, 13] = 0.3, 0.5  # index finger turned, thumb axis
    qpos[:, CUBE_QUAT] = double(turn([0, 1, 0], 0.7))
    qvel[:, 2], qvel[:, CUBE_LINVEL], qvel[:, CUBE_ANGVEL] = -0.4, double([0.1, 0.0, -0.2]), double([0.5, 1.0, 2.0])
    ctrl = qpos[:, HAND].clone()
    ctrl[:, 0] += 0.05
    td = env.reset_to(qpos, qvel, ctrl)
    obs, critic = td["obs"][0].double(), td["critic_obs"][0].double()
    data = kinematics(env.physics.mj_model, qpos[0], qvel[0], ctrl[0])
    palm = data.site("grasp_site")
    tips = [
        palm.xmat.reshape(3, 3).T @ (data.site(tip).xpos - palm.xpos)
        for tip in ("th_tip", "if_tip", "mf_tip", "rf_tip")
    ]
    cube_rotation = data.body("cube").xmat.reshape(3, 3)
    expected = np.concatenate(
        [
            qpos[0, HAND].numpy(),
            np.zeros(16),  # last action
            qpos[0, HAND].numpy(),
            qvel[0, HAND].numpy(),
            data.actuator_force,
            np.concatenate(tips),
            palm.xpos - data.body("cube").xpos,
            qpos[0, CUBE_QUAT].numpy(),
            cube_rotation @ qvel[0, CUBE_ANGVEL].numpy(),  # world frame
            qvel[0, CUBE_LINVEL].numpy(),
        ]
    )
    torch.testing.assert_close(critic, torch.as_tensor(expected), atol=1e-6, rtol=0)
    torch.testing.assert_close(obs, critic[:32])
    assert critic[64].item() == pytest.approx(3.0 * 0.05)  # kp (ctrl - q) of the first actuator


def test_reorient_observation_layout_at_a_known_state(reorient):
    env = reorient
    goal = turn([0, 0, 1], 0.6)
    qpos, qvel, mocap_pos, mocap_quat = home_state(env, goal)
    qpos[:, 4] = 1.0
    qpos[:, CUBE_QUAT] = double(turn([1, 0, 0], 0.9))
    qvel[:, 5], qvel[:, CUBE_ANGVEL] = 0.7, double([0.0, 0.3, -1.0])
    ctrl = qpos[:, HAND].clone()
    ctrl[:, 4] -= 0.2
    last_act = torch.linspace(-1, 1, 16, dtype=torch.float64).repeat(4, 1)
    td = env.reset_to(qpos, qvel, ctrl, mocap_pos, mocap_quat, task_state={"last_act": last_act})
    obs, critic = td["obs"][0].double(), td["critic_obs"][0].double()
    data = kinematics(env.physics.mj_model, qpos[0], qvel[0], ctrl[0], goal)
    palm = data.site("grasp_site")
    tips = [
        palm.xmat.reshape(3, 3).T @ (data.site(tip).xpos - palm.xpos)
        for tip in ("th_tip", "if_tip", "mf_tip", "rf_tip")
    ]
    rows = relative_rotation_rows(qpos[0, CUBE_QUAT].numpy(), goal)
    actor = np.concatenate(
        [
            qpos[0, HAND].numpy(),
            (qpos[0, HAND] - ctrl[0]).numpy(),
            palm.xpos - data.body("cube").xpos,
            rows,
            last_act[0].numpy(),
        ]
    )
    expected = np.concatenate(
        [
            actor,
            qpos[0, HAND].numpy(),
            qvel[0, HAND].numpy(),
            np.concatenate(tips),
            palm.xpos - data.body("cube").xpos,
            rows,
            qvel[0, CUBE_LINVEL].numpy(),
            data.body("cube").xmat.reshape(3, 3) @ qvel[0, CUBE_ANGVEL].numpy(),
            np.zeros(12),  # no perturbation
        ]
    )
    torch.testing.assert_close(critic, torch.as_tensor(expected), atol=1e-6, rtol=0)
    torch.testing.assert_close(obs, critic[:57])
    assert obs[20].item() == pytest.approx(0.2)  # q - ctrl of the middle finger's first joint


def test_reorient_noise_follows_playgrounds_scales():
    """Joint angles + U(-0.05, 0.05); cube position + U(-0.02, 0.02); cube quaternion + 0.1 N(0, 1), normalized:
    the rotation rows move as much as in a numpy simulation of that noise."""
    env = make_task_env(REORIENT, num_envs=2000, reset_pool_size=4)
    qpos, qvel, mocap_pos, mocap_quat = home_state(env)
    clean = env.reset_to(qpos, qvel, None, mocap_pos, mocap_quat)["critic_obs"][:, 57:].double()
    obs = env.task.observe(env.physics, env.task_state, env.generator)[0].double()
    joint_noise = obs[:, :16] - qpos[:, HAND]
    assert joint_noise.abs().max().item() <= 0.05 and joint_noise.abs().max().item() > 0.049
    assert joint_noise.std().item() == pytest.approx(0.05 / math.sqrt(3), rel=0.02)
    cube_noise = clean[:, 44:47] - obs[:, 32:35]  # clean palm - cube minus noisy palm - cube = noisy - clean cube
    assert cube_noise.abs().max().item() <= 0.02 and cube_noise.abs().max().item() > 0.0195
    assert cube_noise.std().item() == pytest.approx(0.02 / math.sqrt(3), rel=0.03)
    cube, goal = qpos[0, CUBE_QUAT].numpy(), mocap_quat[0, 0].numpy()
    rng = np.random.default_rng(0)
    simulated = []
    for _ in range(2000):
        noisy = cube + 0.1 * rng.standard_normal(4)
        simulated.append(relative_rotation_rows(noisy / np.linalg.norm(noisy), goal))
    expected = np.abs(np.array(simulated) - relative_rotation_rows(cube, goal)).mean()
    moved = (obs[:, 35:41] - clean[:, 47:53]).abs().mean().item()
    assert moved == pytest.approx(expected, rel=0.05)


def test_rotate_reward_is_the_cube_spin_about_z_and_the_drop_penalty(rotate):
    """The cube turned 90 degrees about x and spinning at world (0.3, -0.2, 2.0) rad/s: the angvel term is 2.0,
    whatever the cube's orientation; world 3 is dropped: 2.0 - 100, times dt."""
    env = rotate
    qpos, qvel, _, _ = home_state(env)
    quat = turn([1, 0, 0], math.pi / 2)
    qpos[:, CUBE_QUAT] = double(quat)
    rotation = np.zeros(9)
    mujoco.mju_quat2Mat(rotation, np.asarray(quat))
    qvel[:, CUBE_ANGVEL] = double(rotation.reshape(3, 3).T @ np.array([0.3, -0.2, 2.0]))  # body frame
    qpos[3, 18] = -0.2
    env.reset_to(qpos, qvel)
    terms = env.task.reward_terms(env.physics, env.task.dropped(env.physics))
    torch.testing.assert_close(terms["angvel"], torch.full((4,), 2.0, dtype=torch.float64))
    assert terms["termination"].tolist() == [0, 0, 0, 1]
    reward, shares = env.task.total_reward(terms)
    torch.testing.assert_close(reward, double([0.1, 0.1, 0.1, 0.1 - 5.0]))
    assert env.task.reward_term_names == ("angvel", "termination") and set(shares) == {"angvel", "termination"}


def test_reorient_reward_terms_at_a_hand_built_state(reorient):
    """Cube turned 90 degrees about z, goal 90 degrees about x: q_cube q_goal^-1 = (0.5, -0.5, -0.5, 0.5), a turn by
    2 asin(sqrt(3)/2) = 2 pi / 3, so orientation = 1 - 0.9 (2 pi / 3 - 0.2) / pi = 0.4 + 0.18 / pi. The cube 3 cm
    from the palm site: position = 1 - 0.9 (0.03 - 0.02) / 0.05 = 0.82. Two joints 0.1 from home: hand_pose 0.02.
    Joint 0 moving at 2 rad/s with ctrl 0.05 ahead of it: energy |2| * 3 * 0.05 = 0.3."""
    env = reorient
    c = math.sqrt(0.5)
    qpos, qvel, mocap_pos, mocap_quat = home_state(env, (c, c, 0.0, 0.0))
    qpos[:, CUBE_QUAT] = double([c, 0.0, 0.0, c])
    qpos[:, 1] += 0.1
    qpos[:, 5] -= 0.1
    qvel[:, 0] = 2.0
    ctrl = qpos[:, HAND].clone()
    ctrl[:, 0] += 0.05
    palm = kinematics(env.physics.mj_model, qpos[0], qvel[0], ctrl[0]).site("grasp_site").xpos
    qpos[:, CUBE] = double(palm + np.array([0.0, 0.03, 0.0]))
    action = torch.zeros(4, 16, dtype=torch.float64)
    action[:, 0] = 0.5
    last, before_last = torch.zeros_like(action), torch.zeros_like(action)
    last[:, 0], before_last[:, 0] = -0.5, 1.0  # rate (0.5 + 0.5)^2 + (0.5 + 1 + 1)^2 = 1 + 6.25
    env.reset_to(qpos, qvel, ctrl, mocap_pos, mocap_quat, task_state={"last_act": last, "last_last_act": before_last})
    terms = env.task.reward_terms(env.physics, action, env.task_state, env.task.dropped(env.physics))
    expected = {
        "orientation": 0.4 + 0.18 / math.pi,
        "position": 0.82,
        "termination": 0.0,
        "hand_pose": 0.02,
        "action_rate": 7.25,
        "energy": 0.3,
    }
    for name, value in expected.items():
        torch.testing.assert_close(terms[name], torch.full((4,), value, dtype=torch.float64), msg=name)
    error = leap_hand.orientation_error(double([[c, 0, 0, c]]), double([[c, c, 0, 0]])).item()
    assert error == pytest.approx(2 * math.pi / 3)
    reward, _ = env.task.total_reward(terms)
    scaled = 5 * expected["orientation"] + 0.5 * 0.82 - 0.5 * 0.02 - 0.001 * 7.25 - 0.001 * 0.3
    torch.testing.assert_close(reward, torch.full((4,), DT * scaled, dtype=torch.float64))


def test_reorient_success_pays_and_sets_the_goal_turning(reorient):
    """World 0 holds the cube at the goal (error 0), world 1 0.3 rad away. The success pays 100 (not scaled by dt)
    and gives world 0's goal a spin in [1, 5]^3 rad/s, which turns the mocap goal by 2 dt |w| (MuJoCo's own
    mju_quatIntegrate) and decays by 0.8 in the next step; world 1's goal stays."""
    env = reorient
    qpos, qvel, mocap_pos, mocap_quat = home_state(env)
    cube = qpos[0, CUBE_QUAT].numpy()
    mocap_quat[:, 0] = torch.as_tensor(cube)
    qpos[1, CUBE_QUAT] = double(quat_product(cube, turn([0, 0, 1], 0.3)))
    env.reset_to(qpos, qvel, None, mocap_pos, mocap_quat)
    td = env.step(torch.zeros(4, 16))
    success = td["episode_reward_terms"][:, env.task.reward_term_names.index("success")]
    assert success[:2].tolist() == [100.0, 0.0]
    assert td["reward"][0].item() > 100 and td["reward"][1].item() < 1
    spin = env.task_state["goal_quat_dquat"].clone()
    assert ((spin[0] >= 1) & (spin[0] <= 5)).all() and (spin[1] == 0).all()
    expected = cube.copy()
    mujoco.mju_quatIntegrate(expected, spin[0].numpy(), 2 * DT)
    torch.testing.assert_close(env.physics.mocap_quat[0, 0], torch.as_tensor(expected))
    torch.testing.assert_close(env.physics.mocap_quat[1, 0], torch.as_tensor(cube))
    env.step(torch.zeros(4, 16))  # the goal has turned away: no success, the spin decays
    torch.testing.assert_close(env.task_state["goal_quat_dquat"][0], 0.8 * spin[0])
    mujoco.mju_quatIntegrate(expected, 0.8 * spin[0].numpy(), 2 * DT)
    torch.testing.assert_close(env.physics.mocap_quat[0, 0], torch.as_tensor(expected))


def quat_product(a, b) -> np.ndarray:
    product = np.zeros(4)
    mujoco.mju_mulQuat(product, np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    return product


def test_rotate_controls_are_offsets_from_the_home_pose(rotate):
    """``ctrl = home + 0.6 a``, not clipped: the index finger's turn by a = 1 goes to 0.6, its first joint by
    a = -1 to 0.2, and a = 1 on the thumb's last joint beyond nothing (0.6)."""
    env = rotate
    qpos, qvel, _, _ = home_state(env)
    env.reset_to(qpos, qvel)
    torch.testing.assert_close(env.physics.ctrl, double(HOME_HAND).repeat(4, 1))
    action = torch.zeros(4, 16)
    action[:, 0], action[:, 1], action[:, 15] = -1.0, 1.0, 1.0
    for step in range(2):  # the same both times: no integration
        obs = env.step(action)["obs"]
        torch.testing.assert_close(obs[:, 16:], action * step)  # the action before this step's, as in Playground
        expected = double(HOME_HAND)
        expected[0], expected[1], expected[15] = 0.2, 0.6, 0.6
        torch.testing.assert_close(env.physics.ctrl, expected.repeat(4, 1))


@pytest.mark.parametrize("alpha, expected", [(1.0, [2.23, 2.23, 1.73]), (0.5, [2.115, 2.1725, 1.9225])])
def test_reorient_controls_integrate_clip_and_average(alpha, expected):
    """From ctrl 2.0 on the index finger's first joint (limit 2.23), actions +1, +1, -1 with scale 0.5:
    alpha 1 gives clip(2.5) = 2.23, clip(2.73) = 2.23, 1.73; alpha 0.5 averages each clipped target with the last
    ctrl: (2.23 + 2.0) / 2 = 2.115, (2.23 + 2.115) / 2 = 2.1725, (1.6725 + 2.1725) / 2 = 1.9225."""
    env = make_task_env(REORIENT, num_envs=2, ema_alpha=alpha)
    qpos, qvel, mocap_pos, mocap_quat = home_state(env)
    ctrl = double(HOME_HAND).repeat(2, 1)
    ctrl[:, 0] = 2.0
    env.reset_to(qpos, qvel, ctrl, mocap_pos, mocap_quat)
    for value, sign in zip(expected, (1.0, 1.0, -1.0), strict=True):
        action = torch.zeros(2, 16)
        action[:, 0] = sign
        env.step(action)
        torch.testing.assert_close(env.physics.ctrl[:, 0], torch.full((2,), value, dtype=torch.float64))
        torch.testing.assert_close(env.physics.ctrl[:, 1:], double(HOME_HAND[1:]).repeat(2, 1))


def test_reorient_ema_option_errors():
    with pytest.raises(ValueError, match=r"ema_alpha must be in \(0, 1\]"):
        make_task_env(REORIENT, num_envs=1, ema_alpha=0.0)
    env = make_task_env(REORIENT, num_envs=1, ema_alpha=0.5)
    with pytest.raises(ValueError, match="cannot describe ema_alpha=0.5"):
        env.task.control_mapping()


@pytest.mark.parametrize("name", [ROTATE, REORIENT])
def test_reset_distribution(name):
    env = make_task_env(name, num_envs=2)
    num = 4000
    starts = env.task.sample_start(torch.Generator().manual_seed(0), num, env.physics)
    hand = starts.qpos[:, HAND] - double(HOME_HAND)
    torch.testing.assert_close(hand.mean(0), torch.zeros(16, dtype=torch.float64), atol=0.01, rtol=0)
    torch.testing.assert_close(hand.std(0), torch.full((16,), 0.1, dtype=torch.float64), atol=0.01, rtol=0)
    model = env.physics.mj_model
    low, high = (torch.as_tensor(limits) for limits in model.actuator_ctrlrange.T)
    assert ((starts.qpos[:, HAND] >= low) & (starts.qpos[:, HAND] <= high)).all()
    cube = starts.qpos[:, CUBE] - double([0.1, 0.0, 0.05])
    assert cube.abs().max().item() <= 0.01 and cube.abs().max().item() > 0.0099
    torch.testing.assert_close(cube.mean(0), torch.zeros(3, dtype=torch.float64), atol=0.001, rtol=0)
    assert (starts.qvel == 0).all()
    quats = [starts.qpos[:, CUBE_QUAT]] + ([starts.mocap_quat[:, 0]] if name == REORIENT else [])
    for quat in quats:  # uniform over rotations: unit, each component's square averages 1/4, no preferred sign
        torch.testing.assert_close(quat.norm(dim=-1), torch.ones(num, dtype=torch.float64))
        torch.testing.assert_close((quat**2).mean(0), torch.full((4,), 0.25, dtype=torch.float64), atol=0.015, rtol=0)
        assert (quat.mean(0).abs() < 0.03).all()
    goal = (-100.0, -100.0, -100.0) if name == ROTATE else GOAL_HOME
    torch.testing.assert_close(starts.mocap_pos[:, 0], double(goal).repeat(num, 1))
    if name == ROTATE:
        torch.testing.assert_close(starts.mocap_quat[:, 0], double([1, 0, 0, 0]).repeat(num, 1))
    env.reset()
    torch.testing.assert_close(env.physics.ctrl, env.physics.qpos[:, HAND])  # position targets at the joints


@pytest.mark.parametrize("name", [ROTATE, REORIENT])
def test_termination_when_the_cube_drops(name):
    """A cube released below the hand (z -0.04, falling) crosses -0.05 m in the step; one at rest in the palm does
    not; a terminated world restarts with its task state fresh."""
    env = make_task_env(name, num_envs=3)
    qpos, qvel, mocap_pos, mocap_quat = home_state(env)
    qpos[1:, 16:18] = double([0.3, 0.3])  # beside the hand
    qpos[1, 18], qpos[2, 18] = -0.04, 0.2
    qvel[1, 18] = -1.0
    env.reset_to(qpos, qvel, None, mocap_pos, mocap_quat, task_state={"last_act": torch.ones(3, 16)})
    td = env.step(torch.zeros(3, 16))
    assert td["terminated"].tolist() == [False, True, False]
    assert env.task_state["last_act"][1].abs().sum().item() == 0  # reset: fresh task state
    assert td["episode_reward_terms"][1, env.task.reward_term_names.index("termination")].item() == -5.0


@pytest.mark.parametrize("name", [ROTATE, REORIENT])
def test_seeded_run_across_autoresets_does_not_depend_on_host_shortcuts(name):
    """The CUDA code path (masked autoreset, no host checks) gives the CPU path's results bit for bit, and makes
    no host sync in its steps and resets, across episode ends of 4 steps (and Reorient's goal turning)."""

    def run(shortcuts):
        env = make_task_env(name, num_envs=3, episode_length=4, seed=5)
        env.host_shortcuts = shortcuts
        results = []
        with forbid_host_syncs() if not shortcuts else contextlib.nullcontext():
            env.reset()
            if name == REORIENT:  # world 0 at its goal: a success in the first step
                env.physics.mocap_quat[0, 0] = env.physics.qpos[0, CUBE_QUAT]
            for action in random_actions(env, 10):
                results.append(env.step(action))
                results[-1]["mocap_quat"] = env.physics.mocap_quat.clone()
        return torch.stack(results)

    fast, masked = run(True), run(False)
    assert fast["done"].sum() == 6
    for key in ("obs", "critic_obs", "reward", "terminated", "truncated", "final_obs", "mocap_quat"):
        assert torch.equal(fast[key], masked[key]), key
    if name == REORIENT:
        assert fast["episode_reward_terms"][0, 0, -1].item() == 100.0


def test_domain_randomization_follows_playgrounds_leap_randomizer():
    """randomize=true: per world one fingertip friction U(0.5, 1) for all four tips, the cube's inertia scaled as a
    whole by U(0.8, 1.2), kp scaled by U(0.8, 1.2) in gainprm and biasprm alike (bias = -kp), the hand's masses,
    damping, armature, frictionloss and reference pose within their ranges; the worlds step."""
    env = make_task_env(REORIENT, num_envs=64, reset_pool_size=4, randomize=True)
    physics, model = env.physics, env.physics.mj_model
    friction = physics.model_field("geom_friction")[:, [model.geom(tip).id for tip in leap_hand.FINGERTIPS], 0]
    assert (friction == friction[:, :1]).all() and friction.min() >= 0.5 and friction.max() <= 1.0
    assert friction[:, 0].std().item() > 0.1
    cube = model.body("cube").id
    ratio = physics.model_field("body_inertia")[:, cube] / torch.as_tensor(model.body_inertia[cube])
    assert (ratio - ratio[:, :1]).abs().max().item() < 1e-12 and ratio.min() >= 0.8 and ratio.max() <= 1.2
    ipos = physics.model_field("body_ipos")[:, cube] - torch.as_tensor(model.body_ipos[cube])
    assert ipos.abs().max().item() <= 5e-3 and ipos.abs().max().item() > 4e-3
    kp = physics.model_field("actuator_gainprm")[:, :, 0]
    torch.testing.assert_close(physics.model_field("actuator_biasprm")[:, :, 1], -kp)
    assert kp.min() >= 0.8 * 3.0 and kp.max() <= 1.2 * 3.0 and kp.std().item() > 0.2
    for field, nominal, low, high in (
        ("dof_damping", 0.2, 0.8, 1.2),
        ("dof_armature", 0.00149376, 1.0, 1.05),
        ("dof_frictionloss", 0.02, 0.5, 2.0),
    ):
        ratio = physics.model_field(field)[:, :16] / nominal
        assert ratio.min() >= low - 1e-9 and ratio.max() <= high + 1e-9, field
        torch.testing.assert_close(
            physics.model_field(field)[:, 16:], torch.as_tensor(getattr(model, field)[16:]).repeat(64, 1)
        )
    masses = physics.model_field("body_mass")[:, 2:19] / torch.as_tensor(model.body_mass[2:19])
    assert masses.min() >= 0.9 and masses.max() <= 1.1
    assert (physics.model_field("body_mass")[:, cube] == model.body_mass[cube]).all()  # the cube's mass stays
    offsets = physics.model_field("qpos0")[:, :16] - torch.as_tensor(model.qpos0[:16])
    assert offsets.abs().max().item() <= 0.05
    env.reset()
    for action in random_actions(env, 3):
        assert torch.isfinite(env.step(action)["obs"]).all()


@pytest.mark.slow
@pytest.mark.warp
def test_warp_matches_native_for_one_step():
    """MuJoCo Warp (float32, CPU) vs native MuJoCo (float64): one Reorient step from the home state with random
    actions (the cube still falling into the palm), world 0 at its goal (a success: the goal turns), no observation
    noise, Playground's solver settings. Measured: rewards within 1e-6, critic observations within 7e-6 relative.

    Not asserted: the step after, where the cube lands. Both backends find the same contacts, but with Playground's
    pyramidal friction cone and the joints' frictionloss they resolve them differently (measured with zero actions:
    cube angular velocity (-1.1, 4.0, 1.0) rad/s native vs (0.0, 10.2, 1.3) warp; with an elliptic cone, or
    frictionloss 0, they agree within 1 %).
    """
    options = {"num_envs": 4, "seed": 3, "obs_noise_level": 0.0}
    native = make_task_env(REORIENT, **options)
    warp = make_task_env(REORIENT, backend="warp", **options)
    qpos, qvel, mocap_pos, mocap_quat = home_state(native, turn([0, 1, 0], 0.4))
    mocap_quat[0, 0] = qpos[0, CUBE_QUAT]
    before = [env.reset_to(qpos, qvel, None, mocap_pos, mocap_quat)["critic_obs"] for env in (native, warp)]
    torch.testing.assert_close(before[1].double(), before[0].double(), atol=1e-5, rtol=1e-5)
    action = random_actions(native, 1)[0] * 0.5
    after = [env.step(action) for env in (native, warp)]
    reward_gap = (after[1]["reward"] - after[0]["reward"]).abs().max().item()
    relative = (after[1]["critic_obs"] - after[0]["critic_obs"]).abs() / (1 + after[0]["critic_obs"].abs())
    assert reward_gap < 1e-4 and relative.max() < 1e-4, (reward_gap, relative.max())
    assert after[0]["reward"][0].item() > 100 and after[1]["reward"][0].item() > 100
    torch.testing.assert_close(warp.task_state["goal_quat_dquat"].double(), native.task_state["goal_quat_dquat"])
    torch.testing.assert_close(warp.physics.mocap_quat.double(), native.physics.mocap_quat, atol=1e-6, rtol=0)


def test_training_smoke_run(tmp_path):
    """A few PQN updates on LeapCubeRotateZAxis with a tiny config run and write checkpoints and evaluations."""
    config = tiny_config(task=ROTATE, num_envs=4, episode_length=8, eval_envs=2, total_timesteps=128)
    run_training(config, tmp_path, show_progress=False)
    assert list((tmp_path / "checkpoints").glob("*.pt"))
    assert len((tmp_path / "eval.csv").read_text().strip().splitlines()) >= 3


HAND_MESHES = ("palm_right", "base", "proximal", "medial", "distal", "tip", "thumb_base", "thumb_proximal")
HAND_MESHES += ("thumb_distal", "thumb_tip")
TETRAHEDRON_OBJ = "v 0 0 0\nv 0.01 0 0\nv 0 0.01 0\nv 0 0 0.01\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n"


def test_scene_keeps_the_menagerie_meshes_and_drops_playgrounds_own(tmp_path, monkeypatch):
    """With a Menagerie checkout (stand-in tetrahedra) the hand's 10 meshes load from it; Playground's own cube and
    mount meshes (not shipped, never in Menagerie) are dropped with their geoms instead of failing the build."""
    assets = tmp_path / "leap_hand" / "assets"
    assets.mkdir(parents=True)
    for name in HAND_MESHES:
        (assets / f"{name}.obj").write_text(TETRAHEDRON_OBJ)
    monkeypatch.setenv("MENAGERIE_ROOT", str(tmp_path))
    model = make_task_env(REORIENT, num_envs=1).physics.mj_model
    assert sorted(model.mesh(i).name for i in range(model.nmesh)) == sorted(
        (
            "palm",
            "base",
            "proximal",
            "medial",
            "distal",
            "tip",
            "thumb_base",
            "thumb_proximal",
            "thumb_distal",
            "thumb_tip",
        )
    )
    assert model.nq == 23

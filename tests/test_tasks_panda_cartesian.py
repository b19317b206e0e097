"""PandaPickCubeCartesian: sizes and model, observation layout, the Cartesian control (the arm's targets reach the
tip target in MuJoCo's own kinematics; the workspace clip; unreachable targets; the gripper), the guide-pose jump,
the progress reward on hand-built states, reset distribution, termination, graph safety, warp parity and a
training smoke run."""

import math

import mujoco
import numpy as np
import pytest
import torch

from pqn_torch.envs.tasks.manipulation.franka_ik import HAND_TO_TIP
from pqn_torch.training import run_training

from task_testing import double, make_task_env, random_actions, seeded_run
from training_testing import tiny_config

TASK = "PandaPickCubeCartesian"
BOX_QPOS, TARGET = slice(9, 16), 0  # the box's free joint in qpos; the target's mocap index
TIP_STEP = 0.005
TERMS = ("gripper_box", "box_target", "no_floor_collision", "action_rate", "no_soln", "lifted", "success", "progress")


def mujoco_data(model: mujoco.MjModel, qpos, mocap_pos=None) -> mujoco.MjData:
    """MuJoCo's forward pass of one world, for independent expectations."""
    data = mujoco.MjData(model)
    data.qpos[:] = np.asarray(qpos)
    if mocap_pos is not None:
        data.mocap_pos[:] = np.asarray(mocap_pos)
    mujoco.mj_forward(model, data)
    return data


def tip_position(model: mujoco.MjModel, arm_angles) -> np.ndarray:
    """The point between the fingertips (hand frame + 0.1034 m along its z axis) for arm joint angles."""
    data = mujoco.MjData(model)
    data.qpos[:7] = np.asarray(arm_angles)
    mujoco.mj_kinematics(model, data)
    return data.body("hand").xpos + HAND_TO_TIP * data.body("hand").xmat.reshape(3, 3)[:, 2]


def home_qpos(model: mujoco.MjModel) -> np.ndarray:
    return model.keyframe("low_home").qpos.copy()


@pytest.fixture(scope="module")
def env():
    return make_task_env(TASK, num_envs=4)


def home_state(env, **task_state):
    """Every world at ``low_home`` with the box on its line at rest, the target fixed; ``task_state`` entries
    replace the fresh ones (a first step unless ``newly_reset`` is given)."""
    model = env.physics.mj_model
    qpos = torch.as_tensor(home_qpos(model)).repeat(4, 1)
    qpos[:, 9:12] = double([env.task.box_line_x, 0.0, 0.03])
    mocap_pos = double([[env.task.box_line_x, 0.0, 0.2]]).repeat(4, 1, 1)
    mocap_quat = double([[[1.0, 0.0, 0.0, 0.0]]]).repeat(4, 1, 1)
    return env.reset_to(qpos, torch.zeros(4, 15), None, mocap_pos, mocap_quat, task_state=task_state or None)


def test_sizes_timing_model_and_action_space(env):
    assert (env.obs_dim, env.critic_obs_dim, env.action_dim) == (70, 70, 3)
    assert env.episode_length == 200 and env.ctrl_dt == 0.05 and env.task.substeps == 10
    assert env.task.config.contacts_per_world == 24 and env.task.config.njmax == 128
    model = env.physics.mj_model
    assert (model.nq, model.nv, model.nu, model.nmocap, model.nmesh) == (16, 15, 8, 1, 0)
    assert model.opt.timestep == 0.005 and (model.opt.iterations, model.opt.ls_iterations) == (5, 8)
    colliding = {model.geom(i).name for i in range(model.ngeom) if model.geom_contype[i] or model.geom_conaffinity[i]}
    assert colliding == {"floor", "box", "hand_capsule", "left_finger_pad", "right_finger_pad"}
    torch.testing.assert_close(env.action_low, -torch.ones(3))
    torch.testing.assert_close(env.action_high, torch.ones(3))
    assert env.task.reward_term_names == TERMS
    assert sum(size for _, size in env.task.observation_layout) == 70
    mapping = env.task.control_mapping()
    assert (mapping.mode, mapping.scale, mapping.clipped) == ("cartesian_increment", TIP_STEP, True)


def test_reset_distribution(env):
    """The arm at ``low_home``; the box on the line 3 cm behind the home tip, y U(-0.05, 0.05), centre on the floor;
    the target fixed 0.2 m above the line's centre; the tip target at the home tip; a first step pending."""
    model = env.physics.mj_model
    line_x = tip_position(model, model.keyframe("low_home").ctrl[:7])[0] - 0.03
    assert env.task.box_line_x == pytest.approx(line_x, abs=1e-9)
    starts = env.task.sample_start(torch.Generator().manual_seed(0), 4000, env.physics)
    home = torch.as_tensor(home_qpos(model))
    torch.testing.assert_close(starts.qpos[:, :9], home[:9].repeat(4000, 1))
    torch.testing.assert_close(starts.qpos[:, 12:], home[12:].repeat(4000, 1))  # upright
    torch.testing.assert_close(starts.qpos[:, 9], torch.full((4000,), line_x, dtype=torch.float64))
    assert (starts.qpos[:, 11] == 0).all() and (starts.qvel == 0).all()
    y = starts.qpos[:, 10]
    assert y.abs().max() <= 0.05 and y.min() < -0.049 and y.max() > 0.049 and abs(y.mean().item()) < 0.002
    torch.testing.assert_close(starts.mocap_pos[:, TARGET], double([line_x, 0.0, 0.2]).repeat(4000, 1))
    torch.testing.assert_close(starts.mocap_quat[:, TARGET], double([1.0, 0.0, 0.0, 0.0]).repeat(4000, 1))
    td = env.reset()
    state = env.task_state
    torch.testing.assert_close(state["current_pos"], torch.as_tensor(tip_position(model, home[:7])).repeat(4, 1))
    assert state["newly_reset"].all() and (state["prev_reward"] == 0).all() and (state["reached_box"] == 0).all()
    assert (td["obs"][:, 66:] == 0).all()  # no_soln and the last action start at 0


def test_observation_layout_at_a_known_state(env):
    """The first 66 entries are the pick task's (checked against MuJoCo there; spot-checked here), then
    ``no_soln`` and the last action from task state."""
    model = env.physics.mj_model
    td = home_state(env, no_soln=double([0, 1, 0, 1]), prev_action=double([[0.1, -0.2, 0.3]]).repeat(4, 1))
    obs = td["obs"].double()
    data = mujoco_data(model, env.physics.qpos[0], env.physics.mocap_pos[0])
    torch.testing.assert_close(obs[0, 31:34], torch.as_tensor(data.site("gripper").xpos), atol=1e-6, rtol=0)
    target_minus_box = data.mocap_pos[TARGET] - data.body("box").xpos
    torch.testing.assert_close(obs[0, 49:52], torch.as_tensor(target_minus_box), atol=1e-6, rtol=0)
    torch.testing.assert_close(obs[:, 66], double([0, 1, 0, 1]))
    torch.testing.assert_close(obs[:, 67:], double([[0.1, -0.2, 0.3]]).repeat(4, 1), atol=1e-7, rtol=0)


def test_control_moves_the_tip_target_through_the_inverse_kinematics(env):
    """From home, action (1, -1, .): the tip target moves 5 mm in +y and -z, and MuJoCo's kinematics of the new arm
    targets put the tip there. The gripper target: 0.04 + 0.02 clipped to 0.04 (action[2] >= 0), 0.02 (< 0).
    World 3 starts at a workspace corner: its target is clipped back there, which the arm cannot reach (1.2 m
    from the shoulder): no solution, arm targets and tip target unchanged, no_soln 1."""
    model = env.physics.mj_model
    corner = double([0.77, 0.32, 0.02])
    start = env.task.start_tip.repeat(4, 1)
    start[3] = corner
    home_state(env, newly_reset=torch.zeros(4, dtype=torch.bool), current_pos=start)
    home_ctrl = env.physics.ctrl.clone()
    action = double([[1.0, -1.0, 0.0], [1.0, -1.0, -1.0], [0.0, 0.0, -0.5], [1.0, -1.0, 1.0]])
    env.task.control(env.physics, action, env.task_state, env.generator)
    ctrl, tip_target = env.physics.ctrl, env.task_state["current_pos"]
    expected = env.task.start_tip.repeat(4, 1) + double([[0, TIP_STEP, -TIP_STEP]] * 2 + [[0, 0, 0]] * 2)
    expected[3] = corner
    torch.testing.assert_close(tip_target, expected, atol=1e-12, rtol=0)
    for world in range(3):
        reached = tip_position(model, ctrl[world, :7])
        np.testing.assert_allclose(reached, expected[world].numpy(), atol=1e-9, rtol=0)
    assert ctrl[:, 7].tolist() == pytest.approx([0.04, 0.02, 0.02, 0.04])
    assert env.task_state["no_soln"].tolist() == [0, 0, 0, 1]
    assert torch.equal(ctrl[3, :7], home_ctrl[3, :7])
    torch.testing.assert_close(ctrl[2, :7], home_ctrl[2, :7], atol=1e-6, rtol=0)  # no move: the keyframe's joints


def test_first_step_jumps_five_percent_of_the_worlds_to_the_picked_pose():
    """Worlds on their first step jump to the ``picked`` keyframe (qpos and ctrl) with probability 0.05, and only
    then: 1000 worlds, 2 control calls."""
    env = make_task_env(TASK, num_envs=1000, seed=3)
    env.reset()
    model = env.physics.mj_model
    before = env.physics.qpos.clone()
    env.task.control(env.physics, torch.zeros(1000, 3, dtype=torch.float64), env.task_state, env.generator)
    picked = torch.as_tensor(model.keyframe("picked").qpos)
    jumped = (env.physics.qpos == picked).all(dim=-1)
    assert torch.equal(env.physics.qpos[~jumped], before[~jumped])
    assert 25 <= int(jumped.sum()) <= 75  # 50 expected, standard deviation 6.9
    torch.testing.assert_close(env.physics.ctrl[jumped, 7], torch.full((int(jumped.sum()),), 0.02, dtype=torch.float64))
    env.task_state["newly_reset"].fill_(False)
    after_first = env.physics.qpos.clone()
    env.task.control(env.physics, torch.zeros(1000, 3, dtype=torch.float64), env.task_state, env.generator)
    assert torch.equal(env.physics.qpos, after_first)


def test_progress_reward_at_a_hand_built_success(env):
    """The box and the target at the gripper tip (gripper_box, box_target, no_floor_collision, lifted, success all
    1: total 14.75). World 0: first step, pays 0; world 1: best so far 5, action change of norm 1, pays
    14.7495 - 5; world 2: best so far 20, pays 0 and keeps 20; world 3: no IK solution, pays 14.74. Every world
    has succeeded: terminated."""
    model = env.physics.mj_model
    qpos = torch.as_tensor(home_qpos(model)).repeat(4, 1)
    gripper = torch.as_tensor(mujoco_data(model, qpos[0]).site("gripper").xpos.copy())
    qpos[:, 9:12] = gripper
    state = {
        "newly_reset": torch.tensor([True, False, False, False]),
        "prev_reward": double([0.0, 5.0, 20.0, 0.0]),
        "no_soln": double([0, 0, 0, 1]),
        "reached_box": double([1, 1, 1, 1]),
    }
    mocap = gripper.repeat(4, 1, 1)
    env.reset_to(qpos, torch.zeros(4, 15), None, mocap, double([[[1.0, 0.0, 0.0, 0.0]]]).repeat(4, 1, 1), state)
    action = double([[0, 0, 0], [0.6, 0.8, 0], [0, 0, 0], [0, 0, 0]])
    result = env.task.transition(env.physics, action, env.task_state, env.generator)
    totals = double([14.75, 14.7495, 14.75, 14.74])
    torch.testing.assert_close(result.reward, double([0.0, 14.7495 - 5.0, 0.0, 14.74]))
    torch.testing.assert_close(env.task_state["prev_reward"], double([14.75, 14.7495, 20.0, 14.74]))
    shares = result.reward_terms
    assert tuple(shares) == TERMS
    torch.testing.assert_close(sum(shares.values()), result.reward)
    torch.testing.assert_close(shares["progress"], result.reward - totals)
    for name, scale in (("gripper_box", 4.0), ("box_target", 8.0), ("lifted", 0.5), ("success", 2.0)):
        torch.testing.assert_close(shares[name], torch.full((4,), scale, dtype=torch.float64), atol=1e-9, rtol=0)
    assert result.terminated.all()
    assert not env.task_state["newly_reset"].any()
    torch.testing.assert_close(env.task_state["prev_action"], action)


def test_rewards_are_progress_only_and_the_first_step_pays_nothing():
    env = make_task_env(TASK, num_envs=8, seed=2)
    env.reset()
    rewards = torch.stack([env.step(action)["reward"] for action in random_actions(env, 12)])
    assert (rewards[0] == 0).all() and (rewards >= 0).all() and (rewards[1:] > 0).any()


def test_termination_out_of_bounds_and_at_success(env):
    """Box beyond 1 m along x ends the episode; so does the box within 5 cm of the target. With the target moved
    aside (y 0.2, clear of the arm), a box released 3 cm above it ends the step within 5 cm (it falls 1.2 cm), one
    released 10 cm above does not."""
    home_state(env)
    line_x = env.task.box_line_x
    qpos = env.physics.qpos.clone()
    qpos[:, 9:12] = double([[line_x, 0.0, 0.03], [1.05, 0.0, 0.03], [line_x, 0.2, 0.23], [line_x, 0.2, 0.3]])
    mocap_pos = double([[line_x, 0.2, 0.2]]).repeat(4, 1, 1)
    state = {"newly_reset": torch.zeros(4, dtype=torch.bool)}
    env.reset_to(qpos, torch.zeros(4, 15), None, mocap_pos, env.physics.mocap_quat.clone(), state)
    assert env.task.success(env.physics).tolist() == [0, 0, 1, 0]
    assert env.task.out_of_bounds(env.physics).tolist() == [False, True, False, False]
    assert env.step(torch.zeros(4, 3))["terminated"].tolist() == [False, True, True, False]


def test_seeded_run_across_autoresets_does_not_depend_on_host_shortcuts():
    """The CUDA code path (masked autoreset, no host checks) gives the CPU path's results bit for bit, and makes
    no host sync, across episode ends of 4 steps (guide jumps, IK, progress reward)."""
    keys = ("current_pos", "prev_reward", "no_soln")
    fast, masked = (seeded_run(TASK, shortcuts, 6, keys) for shortcuts in (True, False))
    assert fast["done"].sum() >= 12
    for key in ("obs", "reward", "terminated", "truncated", "final_obs", *keys):
        assert torch.equal(fast[key], masked[key]), key


@pytest.mark.slow
@pytest.mark.warp
def test_warp_matches_native_for_one_step():
    """MuJoCo Warp (float32, CPU) vs native MuJoCo (float64) for one step from the same state, past the first
    step (no guide draw), with the tip target moved: the IK in float32 and the physics agree.

    Measured: rewards (0-1.8) within 8e-7, observations within 8e-6 relative, arm targets within 4e-7 rad.
    """
    options = {"num_envs": 4, "seed": 3}
    native = make_task_env(TASK, **options)
    warp = make_task_env(TASK, backend="warp", **options)
    state = {"newly_reset": torch.zeros(4, dtype=torch.bool), "prev_reward": double([0.0, 1.0, 2.0, 3.0])}
    for env in (native, warp):
        home_state(env, **state)
    action = (torch.rand(4, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1) * 0.8
    after = [env.step(action) for env in (native, warp)]
    reward_gap = (after[1]["reward"] - after[0]["reward"]).abs().max().item()
    relative = (after[1]["obs"] - after[0]["obs"]).abs() / (1 + after[0]["obs"].abs())
    assert reward_gap < 1e-4 and relative.max() < 1e-4, (reward_gap, relative.max())
    tip_targets = [env.task_state["current_pos"].double() for env in (native, warp)]
    torch.testing.assert_close(tip_targets[1], tip_targets[0], atol=1e-6, rtol=0)
    assert math.isclose(after[0]["reward"].sum().item(), after[1]["reward"].sum().item(), abs_tol=1e-4)


def test_training_smoke_run(tmp_path):
    """A few PQN updates on PandaPickCubeCartesian with a tiny config run and write checkpoints and evaluations."""
    config = tiny_config(task=TASK, num_envs=4, episode_length=8, eval_envs=2, total_timesteps=128)
    run_training(config, tmp_path, show_progress=False)
    assert list((tmp_path / "checkpoints").glob("*.pt"))
    assert len((tmp_path / "eval.csv").read_text().strip().splitlines()) >= 3

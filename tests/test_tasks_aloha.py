"""The ALOHA tasks (AlohaHandOver, AlohaSinglePegInsertion): sizes and model, observation layouts against MuJoCo's
own kinematics, reward terms and the hand-over's potential-based progress on hand-built states, reset
distributions, ctrl integration and clipping, action repeat, terminations, graph safety, warp parity and training
smoke runs."""

import contextlib
import math
import re

import mujoco
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pqn_torch.cuda_graph import forbid_host_syncs
from pqn_torch.envs.tasks.manipulation.aloha import logistic_barrier
from pqn_torch.training import run_training
from pqn_torch.training.playback import evaluate_checkpoint

from task_testing import double, make_task_env, random_actions
from training_testing import tiny_config

HAND_OVER, PEG = "AlohaHandOver", "AlohaSinglePegInsertion"
LEFT_GRIPPER, RIGHT_GRIPPER = 6, 13  # actuator (and action) columns of the grippers
ACTUATED_QPOS = [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14]  # each gripper drives its left finger
BOX = slice(16, 23)  # the hand-over box's free joint in qpos
PEG_QPOS, SOCKET_QPOS = slice(23, 30), slice(16, 23)
HANDOVER_POINT = np.array([0.0, 0.0, 0.24])
POTENTIAL_WEIGHTS = {"gripper_box": 1.0, "box_handover": 4.0, "handover_target": 8.0, "no_table_collision": 0.3}
PEG_WEIGHTS = {
    "left_reward": 1.0,
    "right_reward": 1.0,
    "left_target_qpos": 0.3,
    "right_target_qpos": 0.3,
    "no_table_collision": 0.3,
    "socket_z_up": 0.5,
    "peg_z_up": 0.5,
    "socket_entrance_reward": 4.0,
    "peg_end2_reward": 4.0,
    "peg_insertion_reward": 8.0,
}


def keyframe_state(env, key: str = "home", target=(0.2, 0.0, 0.25)):
    """Every world at keyframe ``key``, at rest, the hand-over's target at ``target``: qpos, qvel, mocap_pos, quat."""
    model = env.physics.mj_model
    qpos = torch.as_tensor(model.keyframe(key).qpos).repeat(env.num_envs, 1)
    mocap_pos = double([[target]] * model.nmocap).reshape(1, model.nmocap, 3).repeat(env.num_envs, 1, 1)
    mocap_quat = double([[[1.0, 0.0, 0.0, 0.0]] * model.nmocap]).repeat(env.num_envs, 1, 1)
    return qpos, torch.zeros_like(env.physics.qvel), mocap_pos, mocap_quat


def reset_hand_over(env, qpos, qvel, mocap_pos, mocap_quat, **task_state):
    return env.reset_to(qpos, qvel, None, mocap_pos, mocap_quat, task_state=task_state or None)


def kinematics(model: mujoco.MjModel, qpos, mocap_pos=None) -> mujoco.MjData:
    """MuJoCo's forward pass of one world, for independent expectations."""
    data = mujoco.MjData(model)
    data.qpos[:] = np.asarray(qpos)
    if mocap_pos is not None:
        data.mocap_pos[:] = np.asarray(mocap_pos)
    mujoco.mj_forward(model, data)
    return data


def closeness(a, b) -> float:
    """Playground's hand-over ``distance``: exp(-10 |a - b|)."""
    return math.exp(-10 * float(np.linalg.norm(np.asarray(a) - np.asarray(b))))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@pytest.fixture(scope="module")
def hand_over():
    return make_task_env(HAND_OVER, num_envs=4)


@pytest.fixture(scope="module")
def peg():
    return make_task_env(PEG, num_envs=4)


# ----------------------------------------------------------------- both tasks
@pytest.mark.parametrize(
    "name, obs_dim, sizes, episode, substeps, repeat, njmax",
    [(HAND_OVER, 83, (23, 22, 14, 1), 250, 4, 1, 88), (PEG, 82, (30, 28, 14, 0), 500, 1, 2, 256)],
)
def test_sizes_timing_model_and_action_space(name, obs_dim, sizes, episode, substeps, repeat, njmax):
    env = make_task_env(name, num_envs=2)
    assert (env.obs_dim, env.critic_obs_dim, env.action_dim) == (obs_dim, obs_dim, 14)
    assert (env.episode_length, env.task.substeps, env.action_repeat) == (episode, substeps, repeat)
    assert env.task.config.contacts_per_world == 24 and env.task.config.njmax == njmax
    model = env.physics.mj_model
    assert (model.nq, model.nv, model.nu, model.nmocap) == sizes
    assert (model.nmesh, model.neq) == (0, 2)  # visual meshes dropped; the coupled fingers
    assert (model.opt.iterations, model.opt.ls_iterations, model.opt.impratio) == (10, 10, 5.0)
    assert model.opt.integrator == mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    assert model.opt.timestep == (0.005 if name == HAND_OVER else 0.0025)
    colliding = {model.geom(i).name for i in range(model.ngeom) if model.geom_contype[i] or model.geom_conaffinity[i]}
    fingers = {
        f"{arm}/{f}_finger_{p}" for arm in ("left", "right") for f in ("left", "right") for p in ("top", "bottom")
    }
    objects = {"box"} if name == HAND_OVER else {"socket-B", "socket-T", "socket-L", "socket-R", "wall", "red_peg"}
    assert colliding == {"table", "left/gripper_base", "right/gripper_base"} | fingers | objects
    torch.testing.assert_close(env.action_low, -torch.ones(14))
    torch.testing.assert_close(env.action_high, torch.ones(14))
    mapping = env.task.control_mapping()
    assert (mapping.mode, mapping.scale, mapping.clipped) == (
        "ctrl_increment",
        0.015 if name == HAND_OVER else 0.005,
        True,
    )
    # The actuated joints are not consecutive in qpos (the right fingers follow through the equality constraints).
    angles, _ = env.task.joints(env.physics)
    torch.testing.assert_close(angles, env.physics.qpos[:, ACTUATED_QPOS])
    left_gripper_low = 0.01 if name == HAND_OVER else 0.002  # Playground's hand-over raises it
    assert model.actuator_ctrlrange[LEFT_GRIPPER, 0] == left_gripper_low and model.actuator_ctrlrange[13, 0] == 0.002
    terms = ("progress", "holding", "dropped") if name == HAND_OVER else tuple(PEG_WEIGHTS)
    assert env.task.reward_term_names == terms


@pytest.mark.parametrize("name", [HAND_OVER, PEG])
def test_ctrl_starts_at_the_keyframe_and_integrates_clipped_actions(name):
    """HandOver (0.015 per step): the left gripper from 0.037 by -1, -1, -1, +1 gives 0.022, 0.01 (clipped at
    its raised limit), 0.01, 0.025; the right gripper by -1 each step 0.022, 0.007, 0.002 (clipped), 0.002; the
    left waist by +0.5 adds 0.0075 per step. Peg (0.005 per control step, two per agent step): the left gripper
    from 0.0305 by +1 gives 0.037 (clipped), the right from 0.0186 by -1 gives 0.0086, 0.002 (clipped)."""
    env = make_task_env(name, num_envs=2)
    qpos, qvel, mocap_pos, mocap_quat = keyframe_state(env)
    env.reset_to(qpos, qvel, None, mocap_pos if name == HAND_OVER else None, mocap_quat if name == HAND_OVER else None)
    home_ctrl = torch.as_tensor(env.physics.mj_model.keyframe("home").ctrl)
    torch.testing.assert_close(env.physics.ctrl, home_ctrl.repeat(2, 1))
    if name == HAND_OVER:
        assert home_ctrl[LEFT_GRIPPER] == 0.037 and qpos[0, 6] == 0.0305  # the target is not the finger's position
        left, right, waist = [-1, -1, -1, 1], [-1, -1, -1, -1], [0.5] * 4
        expected = {LEFT_GRIPPER: [0.022, 0.01, 0.01, 0.025], RIGHT_GRIPPER: [0.022, 0.007, 0.002, 0.002]}
        expected[0] = [home_ctrl[0].item() + 0.0075 * k for k in (1, 2, 3, 4)]
    else:
        left, right, waist = [1, 1], [-1, -1], [0.5, 0.5]
        expected = {LEFT_GRIPPER: [0.037, 0.037], RIGHT_GRIPPER: [0.0086, 0.002]}
        expected[0] = [home_ctrl[0].item() + 0.005 * k for k in (1, 2)]
    for step in range(len(left)):
        action = torch.zeros(2, 14)
        action[:, LEFT_GRIPPER], action[:, RIGHT_GRIPPER], action[:, 0] = left[step], right[step], waist[step]
        env.step(action)
        for column, values in expected.items():
            torch.testing.assert_close(env.physics.ctrl[:, column], torch.full((2,), values[step], dtype=torch.float64))
    untouched = [1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12]
    torch.testing.assert_close(env.physics.ctrl[:, untouched], home_ctrl[untouched].repeat(2, 1))


@pytest.mark.parametrize("name", [HAND_OVER, PEG])
def test_seeded_run_across_autoresets_does_not_depend_on_host_shortcuts(name):
    """The CUDA code path (masked autoreset, no host checks) gives the CPU path's results bit for bit, and makes
    no host sync in step or reset, across episode ends of 3 agent steps."""

    def run(shortcuts):
        env = make_task_env(name, num_envs=3, episode_length=3, seed=5)
        env.host_shortcuts = shortcuts
        results = []
        with forbid_host_syncs() if not shortcuts else contextlib.nullcontext():
            env.reset()
            for action in random_actions(env, 7):
                results.append(env.step(action))
                for key, value in env.task_state.items():
                    results[-1][key] = value.clone()
        return torch.stack(results)

    fast, masked = run(True), run(False)
    assert fast["done"].sum() == 6
    keys = ["obs", "reward", "terminated", "truncated", "final_obs", "episode_reward_terms"]
    keys += ["prev_potential", "episode_picked", "steps"] if name == HAND_OVER else []
    for key in keys:
        assert torch.equal(fast[key], masked[key]), key


MILESTONES = {
    HAND_OVER: ("lifted", "at_handover", "at_target"),
    PEG: ("socket_reached", "peg_reached", "socket_lifted", "peg_lifted", "at_goals", "peg_in_socket"),
}


@pytest.mark.parametrize("name", [HAND_OVER, PEG])
def test_training_smoke_run(name, tmp_path):
    """A few PQN updates with a tiny config run and write checkpoints and evaluations."""
    config = tiny_config(task=name, num_envs=4, episode_length=8, eval_envs=2, total_timesteps=128)
    run_training(config, tmp_path, show_progress=False)
    assert list((tmp_path / "checkpoints").glob("*.pt"))
    assert len((tmp_path / "eval.csv").read_text().strip().splitlines()) >= 3
    report = evaluate_checkpoint(tmp_path, episodes=2)
    names = MILESTONES[name]
    stages = ", ".join(rf"{stage} (\d) \((\d+) %\)" for stage in names)
    milestones = re.search(r"\nmilestones, episodes of 2 that reached each: " + stages + "\n", report)
    assert milestones is not None, report
    counts, shares = milestones.groups()[::2], milestones.groups()[1::2]
    assert all(int(share) == 50 * int(count) for count, share in zip(counts, shares, strict=True))
    events = EventAccumulator(str(next((tmp_path / "tensorboard").glob("events.*"))))
    events.Reload()
    assert {f"eval/milestone_{stage}" for stage in names} <= set(events.Tags()["scalars"])


# ----------------------------------------------------------------- AlohaHandOver
def test_hand_over_observation_layout_at_a_known_state(hand_over):
    env = hand_over
    qpos, qvel, mocap_pos, mocap_quat = keyframe_state(env, "transferred", target=(0.25, -0.1, 0.3))
    qvel[:, 2], qvel[:, 16] = 0.4, -0.3  # left elbow, box x velocity
    obs = reset_hand_over(env, qpos, qvel, mocap_pos, mocap_quat, steps=torch.tensor([0, 5, 125, 250]))["obs"]
    model = env.physics.mj_model
    data = kinematics(model, qpos[0], mocap_pos[0])
    box = data.body("box")
    left, right = data.site("left/gripper"), data.site("right/gripper")
    fingers = qpos[0, [6, 7, 14, 15]].numpy() - 0.015  # the box's half width (y)
    expected = np.concatenate(
        [
            qpos[0].numpy(),
            qvel[0].numpy(),
            fingers,
            data.site("box_top").xpos,
            data.site("box_bottom").xpos,
            left.xpos,
            left.xmat[3:],
            right.xpos,
            right.xmat[3:],
            box.xmat[3:],
            box.xpos - np.array([0.25, -0.1, 0.3]),
        ]
    )
    for world in range(4):
        torch.testing.assert_close(obs[world, :82].double(), torch.as_tensor(expected), atol=1e-6, rtol=0)
    torch.testing.assert_close(obs[:, 82], torch.tensor([0.0, 0.02, 0.5, 1.0]))  # steps / 250
    assert sum(size for _, size in env.task.observation_layout) == 83


def test_hand_over_potential_terms_by_arm_turn(hand_over):
    """The box's x picks the terms: home (x = -0.16, the left arm's turn), "picked" (x = -0.142, left), a box
    between -0.1 and 0 (both arms), "transferred" (x = 0.013, the right arm's turn, its gripper terms doubled)."""
    env = hand_over
    model = env.physics.mj_model
    target = np.array([0.2, 0.05, 0.3])
    cases = []
    for key, box_x in (("home", None), ("picked", None), ("picked", -0.05), ("transferred", None)):
        qpos = torch.as_tensor(model.keyframe(key).qpos).clone()
        if box_x is not None:
            qpos[16] = box_x
        cases.append(qpos)
    qpos = torch.stack(cases)
    _, qvel, mocap_pos, mocap_quat = keyframe_state(env, target=tuple(target))
    reset_hand_over(env, qpos, qvel, mocap_pos, mocap_quat)
    terms = env.task.potential_terms(env.physics)
    for world in range(4):
        data = kinematics(model, qpos[world])
        box, top, bottom = data.body("box").xpos, data.site("box_top").xpos, data.site("box_bottom").xpos
        left, right = data.site("left/gripper").xpos, data.site("right/gripper").xpos
        before, past = box[0] < -0.1, box[0] >= 0.0
        assert (before, past) == [(True, False), (True, False), (False, False), (False, True)][world]
        left_part = 0.0 if past else closeness(top, left)
        right_part = 0.0 if before else closeness(bottom, right) * (2 if past else 1)
        handover = max(closeness(box, HANDOVER_POINT), closeness(left, HANDOVER_POINT) if past else 0.0)
        to_target = closeness(target, box) * right_part * sigmoid(-100 * left[0])
        expected = {"gripper_box": left_part + right_part, "box_handover": handover, "handover_target": to_target}
        for name, value in expected.items():
            assert terms[name][world].item() == pytest.approx(value, rel=1e-9, abs=1e-12), (world, name)
        assert terms["no_table_collision"][world].item() == 1.0
    potential = env.task.potential(env.physics)
    weighted = sum(weight * terms[name] for name, weight in POTENTIAL_WEIGHTS.items()) / 13.3
    torch.testing.assert_close(potential, weighted)


def test_hand_over_table_collision_follows_the_finger_contacts(hand_over):
    """The left shoulder leaning forward (0.3 rad) pushes the left fingers into the table: MuJoCo's contact list
    has finger-table pairs there and none at home."""
    env = hand_over
    qpos, qvel, mocap_pos, mocap_quat = keyframe_state(env)
    qpos[2:, 1] = 0.3
    reset_hand_over(env, qpos, qvel, mocap_pos, mocap_quat)
    model = env.physics.mj_model
    table = model.geom("table").id
    for world, expected in ((0, 1.0), (2, 0.0)):
        data = kinematics(model, qpos[world])
        names = [{model.geom(c.geom1).name, model.geom(c.geom2).name} for c in data.contact[: data.ncon]]
        fingers = [pair for pair in names if "table" in pair and any("finger" in name for name in pair)]
        assert bool(fingers) == (expected == 0.0) and table >= 0
        assert env.task.potential_terms(env.physics)["no_table_collision"][world].item() == expected


def test_logistic_barrier_values():
    """1 / (1 + exp(-100 d (x - x0))): one half at x0, sigmoid(1) = 0.7311 one centimetre past it."""
    x = double([0.1, 0.11, 0.09, -0.01])
    torch.testing.assert_close(logistic_barrier(x, 0.10), double([0.5, sigmoid(1), sigmoid(-1), sigmoid(-11)]))
    torch.testing.assert_close(
        logistic_barrier(x, direction=-1), double([sigmoid(-10), sigmoid(-11), sigmoid(-9), sigmoid(1)])
    )


def test_hand_over_reward_pays_progress_over_the_best_potential(hand_over):
    """From one state (the "transferred" keyframe) with different task state: a first step pays nothing but
    records the potential; later steps pay max(potential - best so far, 0) + 0.02 potential x barriers."""
    env = hand_over
    qpos, qvel, mocap_pos, mocap_quat = keyframe_state(env, "transferred")
    reset_hand_over(env, qpos, qvel, mocap_pos, mocap_quat)
    potential = env.task.potential(env.physics)[0].item()
    state = {
        "prev_potential": double([0.0, 0.9, potential - 0.01, 0.0]),
        "steps": torch.tensor([0, 5, 5, 5]),
        "episode_picked": torch.tensor([False, True, True, True]),
    }
    reset_hand_over(env, qpos, qvel, mocap_pos, mocap_quat, **state)
    terms = env.task.step_reward(env.physics, env.task_state)
    data = kinematics(env.physics.mj_model, qpos[0])
    barrier = sigmoid(-100 * data.site("left/gripper").xpos[0]) * sigmoid(100 * (data.body("box").xpos[0] - 0.1))
    holding = potential * barrier
    torch.testing.assert_close(terms["progress"], double([0.0, 0.0, 0.01, potential]), atol=1e-12, rtol=0)
    torch.testing.assert_close(terms["holding"], double([0.0, holding, holding, holding]))
    torch.testing.assert_close(terms["dropped"], torch.zeros(4, dtype=torch.float64))  # box at 0.22 m
    torch.testing.assert_close(env.task_state["prev_potential"], double([potential, 0.9, potential, potential]))
    reward, _ = env.task.total_reward(terms)
    torch.testing.assert_close(reward, terms["progress"] + 0.02 * terms["holding"])


def test_hand_over_progress_adds_up_to_the_best_potential_gain():
    """Over an episode the progress paid telescopes: sum = best potential - potential after the first step."""
    env = make_task_env(HAND_OVER, num_envs=3, seed=2)
    env.reset()
    potentials, progress = [], torch.zeros(3, dtype=torch.float64)
    column = env.reward_term_names.index("progress")
    for action in random_actions(env, 40, seed=3):
        td = env.step(action * 0.5)
        assert not td["done"].any()
        potentials.append(env.task.potential(env.physics))
        progress = td["episode_reward_terms"][:, column].double()
    potentials = torch.stack(potentials)
    gained = potentials.max(0).values - potentials[0]
    assert (gained > 0).all()
    torch.testing.assert_close(progress, gained, atol=1e-5, rtol=1e-5)


def test_hand_over_picked_dropped_and_out_of_bounds(hand_over):
    """World 0: the box lifted to 0.2 m (picked, not dropped); 1: on the table after a pick (dropped: -0.1 and
    the episode ends); 2: on the table, never picked; 3: beyond x = 1 m (out of bounds)."""
    env = hand_over
    qpos, qvel, mocap_pos, mocap_quat = keyframe_state(env)
    qpos[0, 16], qpos[0, 18] = -0.3, 0.2  # clear of the left gripper
    qpos[3, 16] = 1.05
    picked = torch.tensor([False, True, False, False])
    reset_hand_over(env, qpos, qvel, mocap_pos, mocap_quat, episode_picked=picked, steps=torch.full((4,), 3))
    td = env.step(torch.zeros(4, 14))
    assert td["terminated"].tolist() == [False, True, False, True]
    dropped = td["episode_reward_terms"][:, env.reward_term_names.index("dropped")]
    torch.testing.assert_close(dropped, torch.tensor([0.0, -0.1, 0.0, 0.0]))
    # World 1 restarted with fresh state; world 0 has picked the box now.
    assert env.task_state["episode_picked"].tolist() == [True, False, False, False]
    assert env.task_state["steps"].tolist() == [4, 0, 4, 0]
    torch.testing.assert_close(td["obs"][:, 82], torch.tensor([4 / 250, 0.0, 4 / 250, 0.0]))  # counted before obs
    torch.testing.assert_close(td["final_obs"][:, 82], torch.full((4,), 4 / 250))
    torch.testing.assert_close(env.task_state["prev_potential"][[1, 3]], torch.zeros(2, dtype=torch.float64))


def test_hand_over_milestones_at_hand_placed_boxes(hand_over):
    """World 0: the box on the table (no stage); 1: lifted to 0.2 m left of the middle (lifted, 20 cm from the
    hand-over point); 2: 2.4 cm from the hand-over point (lifted, at_handover); 3: 1 cm from the target (lifted,
    at_target; 21 cm from the hand-over point)."""
    env = hand_over
    qpos, qvel, mocap_pos, mocap_quat = keyframe_state(env, target=(0.2, 0.0, 0.25))
    qpos[1, 16:19] = torch.tensor([-0.2, 0.0, 0.2], dtype=qpos.dtype)
    qpos[2, 16:19] = torch.tensor([0.02, 0.01, 0.25], dtype=qpos.dtype)
    qpos[3, 16:19] = torch.tensor([0.21, 0.0, 0.25], dtype=qpos.dtype)
    reset_hand_over(env, qpos, qvel, mocap_pos, mocap_quat)
    stages = env.task.episode_milestones(env.physics, env.task_state)
    assert stages["lifted"].tolist() == [False, True, True, True]
    assert stages["at_handover"].tolist() == [False, False, True, False]
    assert stages["at_target"].tolist() == [False, False, False, True]


def test_hand_over_reset_distribution(hand_over):
    """Box xy + (U(-0.05, 0.05), U(-0.1, 0.1)); target (0.2, 0, 0.25) + U(-0.15, 0.15)^3 with x raised to 0.15:
    a third of the draws sit at x = 0.15 and x averages 0.15 / 3 + 0.25 * 2 / 3 = 0.2167."""
    env = hand_over
    starts = env.task.sample_start(torch.Generator().manual_seed(0), 4000, env.physics)
    home = torch.as_tensor(env.physics.mj_model.keyframe("home").qpos)
    unmoved = [*range(16), *range(18, 23)]
    torch.testing.assert_close(starts.qpos[:, unmoved], home[unmoved].repeat(4000, 1))
    assert (starts.qvel == 0).all()
    box = starts.qpos[:, 16:18] - home[16:18]
    target = starts.mocap_pos[:, 0]
    for values, low, high in (
        (box, (-0.05, -0.1), (0.05, 0.1)),
        (target[:, 1:], (-0.15, 0.1), (0.15, 0.4)),
        (target[:, :1], (0.15,), (0.35,)),
    ):
        low, high = double(low), double(high)
        assert (values >= low - 1e-12).all() and (values <= high + 1e-12).all()
        assert ((values.min(0).values - low) < 0.01).all() and ((high - values.max(0).values) < 0.01).all()
    torch.testing.assert_close(box.mean(0), torch.zeros(2, dtype=torch.float64), atol=0.005, rtol=0)
    torch.testing.assert_close(target[:, 1:].mean(0), double([0.0, 0.25]), atol=0.01, rtol=0)
    assert (target[:, 0] == 0.15).double().mean().item() == pytest.approx(1 / 3, abs=0.03)
    assert target[:, 0].mean().item() == pytest.approx(0.15 / 3 + 0.25 * 2 / 3, abs=0.005)
    td = env.reset()  # the worlds take pool entries and observe their drawn target
    drawn = env.physics.qpos[:, 16:19] - env.physics.mocap_pos[:, 0]
    torch.testing.assert_close(td["obs"][:, 79:82].double(), drawn, atol=1e-6, rtol=0)
    assert (td["obs"][:, 82] == 0).all() and env.task_state["steps"].tolist() == [0] * 4


# ----------------------------------------------------------------- AlohaSinglePegInsertion
def test_peg_observation_layout_at_a_known_state(peg):
    env = peg
    qpos, qvel, _, _ = keyframe_state(env)
    tilt = 0.3
    qpos[:, 19:23] = double([math.cos(tilt / 2), math.sin(tilt / 2), 0.0, 0.0])  # socket turned about x
    qpos[:, 23:26] += double([0.02, -0.03, 0.1])
    qvel[:, 20] = 0.5  # socket y velocity
    obs = env.reset_to(qpos, qvel)["obs"][0].double()
    data = kinematics(env.physics.mj_model, qpos[0])
    expected = np.concatenate(
        [
            qpos[0].numpy(),
            qvel[0].numpy(),
            data.site("left/gripper").xpos,
            data.body("socket").xpos,
            data.site("right/gripper").xpos,
            data.body("peg").xpos,
            data.site("socket_entrance").xpos,
            data.site("peg_end2").xpos,
            data.body("socket").xmat[6:],
            data.body("peg").xmat[6:],
        ]
    )
    torch.testing.assert_close(obs, torch.as_tensor(expected), atol=1e-6, rtol=0)
    assert obs[-4].item() == pytest.approx(math.cos(tilt))  # the socket's z-axis, world z
    assert sum(size for _, size in env.task.observation_layout) == 82


def peg_state(env, socket, peg_position, socket_tilt=0.0):
    """Arms at home, the socket at ``socket`` turned by ``socket_tilt`` about x, the peg level at ``peg_position``."""
    qpos, qvel, _, _ = keyframe_state(env)
    qpos[:, 16:19], qpos[:, 23:26] = double(socket), double(peg_position)
    qpos[:, 19:23] = double([math.cos(socket_tilt / 2), math.sin(socket_tilt / 2), 0.0, 0.0])
    qpos[:, 26:30] = double([1.0, 0.0, 0.0, 0.0])
    return qpos, qvel


def linear_tolerance(distance: float, bound: float, margin: float) -> float:
    """Playground's ``tolerance(d, (0, bound), margin, "linear")``: 1 within the bound, then falling by 0.9 per
    margin (0.1 at the margin, the default value there), 0 from bound + margin / 0.9 on."""
    return max(0.0, 1 - 0.9 * max(distance - bound, 0.0) / margin)


def test_peg_reward_terms_at_hand_built_states(peg):
    """Socket at its lift goal (-0.05, 0, 0.15), the peg 0.052 m to the right of its goal with its end 2 (0.048 m
    left of its centre) at the socket's rear in world 0: insertion 1, peg lift 1 - 0.9 (0.052 - 0.01) / 0.15 =
    0.748. World 1: the peg at its goal, its end 2 0.052 m from the rear on the axis: insertion 1 - 0.9 x 0.051 /
    0.1 = 0.541. World 2: as 0, 4 mm off the axis (still paid: 1 - 0.9 x 0.003 / 0.1 = 0.973); world 3: 6 mm off
    (not paid), and the socket tilted so its z-axis' world z is 0.975: z_up 1 - 0.9 x 0.015 / 0.03 = 0.55."""
    env = peg
    qpos, qvel = peg_state(env, (-0.05, 0.0, 0.15), (0.048 - 0.05, 0.0, 0.15))
    qpos[1, 23:26] = double([0.05, 0.0, 0.15])
    qpos[2, 24] = 0.004
    qpos[3, 24] = 0.006
    tilt = math.acos(0.975)
    qpos[3, 19:23] = double([math.cos(tilt / 2), math.sin(tilt / 2), 0.0, 0.0])
    env.reset_to(qpos, qvel)
    terms = env.task.reward_terms(env.physics)
    # Playground's 1e-6 in the projection's denominator leaves 2.3e-5 m on the axis 5 cm away (world 1).
    axis_distance = env.task.peg_end_in_socket_frame(env.physics)[0]
    torch.testing.assert_close(axis_distance, double([0.0, 0.0, 0.004, 0.006]), atol=3e-5, rtol=0)
    expected = {
        "socket_entrance_reward": [1.0, 1.0, 1.0, 1.0],
        "socket_z_up": [1.0, 1.0, 1.0, 0.55],
        "peg_end2_reward": [0.748, 1.0] + [1 - 0.9 * (math.hypot(0.052, y) - 0.01) / 0.15 for y in (0.004, 0.006)],
        "peg_insertion_reward": [1.0, 0.541, 0.973, 0.0],
        "no_table_collision": [1.0] * 4,
    }
    expected["peg_z_up"] = expected["peg_end2_reward"]  # the peg level
    model = env.physics.mj_model
    for name in ("left_reward", "right_reward", "left_target_qpos", "right_target_qpos"):
        expected[name] = []
    for world in range(4):  # the arms at home: pose 1, the arm-pose terms are left x right
        data = kinematics(model, qpos[world])
        left = linear_tolerance(np.linalg.norm(data.body("socket").xpos - data.site("left/gripper").xpos), 0.001, 0.3)
        right = linear_tolerance(np.linalg.norm(data.body("peg").xpos - data.site("right/gripper").xpos), 0.001, 0.3)
        expected["left_reward"].append(left)
        expected["right_reward"].append(right)
        expected["left_target_qpos"].append(left * right)
        expected["right_target_qpos"].append(left * right)
    for name, values in expected.items():
        torch.testing.assert_close(terms[name], double(values), atol=1e-9, rtol=0, msg=name)
    reward, shares = env.task.total_reward(terms)
    expected_reward = sum(PEG_WEIGHTS[name] * double(values) for name, values in expected.items()) / 19.9
    torch.testing.assert_close(reward, expected_reward)
    torch.testing.assert_close(sum(shares.values()), reward)


def test_peg_milestones_at_hand_placed_objects(peg):
    """World 0: the socket raised 4 cm (not lifted), the peg 2.5 cm below the right gripper (reached, lifted).
    1: the socket at its goal (-0.05, 0, 0.15), the peg level with its end 2 (0.048 m left of its centre) halfway
    into the socket's 0.048 m bore, 6 mm off its axis: both lifted and within 5 cm of their goals, not inserted,
    the grippers above them out of reach (8-9 cm). 2: the same on the axis: inserted. 3: the socket 2.5 cm below
    the left gripper (reached, lifted, 6 cm from its goal), the peg raised 6 cm at its home x, y. The grippers'
    positions come from MuJoCo's kinematics of the home pose."""
    env = peg
    qpos, qvel = peg_state(env, (-0.05, 0.0, 0.15), (-0.002 + 0.024, 0.0, 0.15))
    qpos[1, 24] = 0.006
    home = kinematics(env.physics.mj_model, qpos[0])
    below = np.array([0.0, 0.0, -0.025])
    qpos[0, 16:19] = double([-0.147, 0.0, 0.0228 + 0.04])
    qpos[0, 23:26] = double(home.site("right/gripper").xpos + below)
    qpos[3, 16:19] = double(home.site("left/gripper").xpos + below)
    qpos[3, 23:26] = double([0.1365, 0.0, 0.0108 + 0.06])
    env.reset_to(qpos, qvel)
    stages = env.task.episode_milestones(env.physics, env.task_state)
    assert stages["socket_reached"].tolist() == [False, False, False, True]
    assert stages["peg_reached"].tolist() == [True, False, False, False]
    assert stages["socket_lifted"].tolist() == [False, True, True, True]
    assert stages["peg_lifted"].tolist() == [True, True, True, True]
    assert stages["at_goals"].tolist() == [False, True, True, False]
    assert stages["peg_in_socket"].tolist() == [False, False, True, False]


def test_peg_reach_and_pose_terms_at_home(peg):
    """At the home keyframe (socket and peg on the table): reach = linear tolerance of |object - gripper| from
    MuJoCo's kinematics, bounds (0, 1 mm), margin 0.3; both arms at home (pose 1, so the pose terms equal left x
    right); the left arm 1 rad off home in one joint: gaussian tolerance 0.1^((0.99 / 2)^2) = 0.57."""
    env = peg
    qpos, qvel, _, _ = keyframe_state(env)
    qpos[2:, 0] += 1.0  # the left waist turned in worlds 2, 3 (the left gripper moves too)
    env.reset_to(qpos, qvel)
    terms = env.task.reward_terms(env.physics)
    for world in (0, 2):
        data = kinematics(env.physics.mj_model, qpos[world])
        left = linear_tolerance(np.linalg.norm(data.body("socket").xpos - data.site("left/gripper").xpos), 0.001, 0.3)
        right = linear_tolerance(np.linalg.norm(data.body("peg").xpos - data.site("right/gripper").xpos), 0.001, 0.3)
        pose = 1.0 if world == 0 else 0.1 ** (((1.0 - 0.01) / 2.0) ** 2)
        assert terms["left_reward"][world].item() == pytest.approx(left, abs=1e-9)
        assert terms["right_reward"][world].item() == pytest.approx(right, abs=1e-9)
        assert terms["left_target_qpos"][world].item() == pytest.approx(pose * left * right, abs=1e-9)
        assert terms["right_target_qpos"][world].item() == pytest.approx(left * right, abs=1e-9)
    assert min(terms["left_reward"][0].item(), terms["right_reward"][0].item()) > 0  # in reach at home


def test_peg_action_repeat_sums_two_control_steps():
    """One agent step = two control steps with the same action (rewards and reward terms summed) and ends the
    episode after 2 x 500 control steps: compared with the same task at action_repeat 1."""
    repeated = make_task_env(PEG, num_envs=2, seed=1)
    single = make_task_env(PEG, num_envs=2, seed=1, action_repeat=1, episode_length=1000)
    qpos, qvel = peg_state(repeated, (-0.1, 0.05, 0.022), (0.12, -0.03, 0.011))
    for env in (repeated, single):
        env.reset_to(qpos, qvel)
    actions = random_actions(repeated, 2, seed=4)
    twice = repeated.step(actions[0])
    first, second = single.step(actions[0]), single.step(actions[0])
    assert torch.equal(twice["reward"], first["reward"] + second["reward"])
    torch.testing.assert_close(twice["obs"], second["obs"], atol=0, rtol=0)
    torch.testing.assert_close(twice["episode_reward_terms"], second["episode_reward_terms"], atol=1e-6, rtol=0)
    assert repeated.physics.time[0].item() == pytest.approx(0.005)
    short = make_task_env(PEG, num_envs=2, episode_length=3)
    short.reset()
    for step, action in enumerate(random_actions(short, 3), start=1):
        td = short.step(action * 0.1)
        assert td["truncated"].all() == (step == 3)
        if step == 2:
            assert short.physics.time[0].item() == pytest.approx(4 * 0.0025)


def test_peg_reset_distribution_and_termination(peg):
    env = peg
    starts = env.task.sample_start(torch.Generator().manual_seed(0), 4000, env.physics)
    home = torch.as_tensor(env.physics.mj_model.keyframe("home").qpos)
    unmoved = [*range(16), 18, 19, 20, 21, 22, 25, 26, 27, 28, 29]
    torch.testing.assert_close(starts.qpos[:, unmoved], home[unmoved].repeat(4000, 1))
    assert (starts.qvel == 0).all() and starts.mocap_pos is None
    for columns in ((16, 17), (23, 24)):
        moved = starts.qpos[:, columns] - home[list(columns)]
        assert (moved.abs() <= 0.1).all() and (moved.abs().max(0).values > 0.099).all()
        torch.testing.assert_close(moved.mean(0), torch.zeros(2, dtype=torch.float64), atol=0.005, rtol=0)
    # Termination: the socket or the peg beyond 1 m of the origin along an axis.
    qpos, qvel = peg_state(env, (-0.1, 0.0, 0.022), (0.1, 0.0, 0.011))
    qpos[1, 16], qpos[2, 24], qpos[3, 25] = -1.05, 1.02, 1.2
    env.reset_to(qpos, qvel)
    assert env.step(torch.zeros(4, 14))["terminated"].tolist() == [False, True, True, True]


@pytest.mark.slow
@pytest.mark.warp
def test_hand_over_warp_matches_native_for_one_step():
    """MuJoCo Warp (float32, CPU) vs native MuJoCo (float64) for one step from the "picked" and "transferred"
    keyframes (box in a gripper, contacts between fingers and box) with the same ctrl, target and task state."""
    options = {"num_envs": 4, "seed": 3}
    native = make_task_env(HAND_OVER, **options)
    warp = make_task_env(HAND_OVER, backend="warp", **options)
    model = native.physics.mj_model
    keys = ("home", "picked", "transferred", "transferred")
    qpos = torch.stack([torch.as_tensor(model.keyframe(key).qpos) for key in keys])
    ctrl = torch.stack([torch.as_tensor(model.keyframe(key).ctrl) for key in keys]).clamp(min=0.002)
    ctrl[:, LEFT_GRIPPER] = ctrl[:, LEFT_GRIPPER].clamp(min=0.01)
    _, qvel, mocap_pos, mocap_quat = keyframe_state(native, target=(0.25, 0.05, 0.3))
    state = {"steps": torch.tensor([0, 3, 3, 3]), "prev_potential": double([0.0, 0.1, 0.2, 0.9])}
    before = [env.reset_to(qpos, qvel, ctrl, mocap_pos, mocap_quat, task_state=state)["obs"] for env in (native, warp)]
    torch.testing.assert_close(before[1].double(), before[0].double(), atol=1e-5, rtol=1e-5)
    action = (torch.rand(4, 14, generator=torch.Generator().manual_seed(0)) * 2 - 1) * 0.5
    after = [env.step(action) for env in (native, warp)]
    reward_gap = (after[1]["reward"] - after[0]["reward"]).abs().max().item()
    relative = (after[1]["obs"] - after[0]["obs"]).abs() / (1 + after[0]["obs"].abs())
    assert reward_gap < 1e-4 and relative.max() < 1e-3, (reward_gap, relative.max())
    for key in ("prev_potential", "episode_picked", "steps"):
        torch.testing.assert_close(warp.task_state[key].double(), native.task_state[key].double(), atol=1e-5, rtol=0)

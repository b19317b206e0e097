"""PandaRobotiqPushCube: sizes and model (the wrist sensor's inertials), the action and observation delay buffers
against worked sequences, action_repeat's reward sum, reward terms on hand-built states, success and the
in-episode target reset, resets, terminations, graph safety, warp parity and a training smoke run."""

import contextlib
import math

import mujoco
import numpy as np
import pytest
import torch
from test_tasks_panda import kinematics

from pqn_torch.cuda_graph import forbid_host_syncs
from pqn_torch.envs.tasks.manipulation.panda_robotiq import push_and_pick
from pqn_torch.envs.tasks.robots import load_playground_scene, quat_multiply

from task_testing import double, make_task_env, random_actions
from training_testing import check_training_smoke_run

TASK = "PandaRobotiqPushCube"
BOX = slice(13, 20)  # the box's free joint in qpos
BOX_HOME = (0.56784, -0.0253974, 0.0306525)  # the home keyframe's box position
WEIGHTS = (2.0, 8.0, 6.0, 1.0, 0.75, 1.0, 3.0, -0.1, -0.1)  # Playground's scales, in reward term order
SHAPED = (
    "gripper_box",
    "box_target",
    "box_orientation",
    "gripper_collision_side",
    "robot_target_qpos",
    "joint_vel",
    "joint_vel_limit",
    "total_command",
    "action_rate",
)
LAST_ACTION = slice(9, 16)  # in a frame


def yaw(angle: float) -> list[float]:
    return [math.cos(angle / 2), 0.0, 0.0, math.sin(angle / 2)]


def home_state(env, box_xy=(0.6, 0.0), box_yaw=0.0, target_xy=(0.6, 0.0), target_yaw=0.0):
    """Every world at the home keyframe's arm, at rest, the box upright on the floor at ``box_xy`` turned by
    ``box_yaw``, the target at ``target_xy`` (box height) turned by ``target_yaw``."""
    qpos = torch.as_tensor(env.physics.mj_model.keyframe("home").qpos).repeat(env.num_envs, 1)
    qpos[:, BOX] = double([*box_xy, BOX_HOME[2], *yaw(box_yaw)])
    mocap_pos = double([[[*target_xy, BOX_HOME[2]]]]).repeat(env.num_envs, 1, 1)
    mocap_quat = double([[yaw(target_yaw)]]).repeat(env.num_envs, 1, 1)
    return qpos, torch.zeros_like(env.physics.qvel), mocap_pos, mocap_quat


def reset_home(env):
    """Reset every world to :func:`home_state`."""
    qpos, qvel, mocap_pos, mocap_quat = home_state(env)
    return env.reset_to(qpos, qvel, None, mocap_pos, mocap_quat)


def linear(distance: float, bound: float, margin: float) -> float:
    """dm_control's tolerance with a linear sigmoid (0.1 at the margin), worked out."""
    return 1.0 if distance <= bound else max(0.0, 1 - 0.9 * (distance - bound) / margin)


def reciprocal(distance: float, bound: float, margin: float) -> float:
    """dm_control's tolerance with a reciprocal sigmoid (0.1 at the margin), worked out."""
    return 1.0 if distance <= bound else 1 / (9 * (distance - bound) / margin + 1)


def turn_from_box(env) -> torch.Tensor:
    """[N] angle about z from the box's orientation to the target's (both upright)."""
    box = env.task.read(env.physics, "box_quat")
    turn = quat_multiply(box * double([1, -1, -1, -1]), env.physics.mocap_quat[:, 0])
    return 2 * torch.atan2(turn[:, 3], turn[:, 0])


@pytest.fixture(scope="module")
def env():
    return make_task_env(TASK, num_envs=4, action_repeat=1, obs_noise_level=0.0)


def test_sizes_timing_model_and_action_space():
    env = make_task_env(TASK, num_envs=2)
    assert (env.obs_dim, env.critic_obs_dim, env.action_dim) == (48, 48, 7)
    assert (env.episode_length, env.action_repeat, env.ctrl_dt, env.task.substeps) == (750, 4, 0.005, 1)
    assert env.task.config.contacts_per_world == 32 and env.task.config.njmax == 256
    model = env.physics.mj_model
    assert (model.nq, model.nv, model.nu, model.nmocap, model.nmesh) == (20, 19, 8, 1, 0)  # visual meshes dropped
    assert model.opt.timestep == 0.005 and (model.opt.iterations, model.opt.ls_iterations) == (10, 10)
    assert model.opt.integrator == mujoco.mjtIntegrator.mjINT_IMPLICITFAST and model.opt.ccd_iterations == 10
    assert model.opt.disableflags & mujoco.mjtDisableBit.mjDSBL_EULERDAMP
    colliding = {model.geom(i).name for i in range(model.ngeom) if model.geom_contype[i] or model.geom_conaffinity[i]}
    gripper = {f"{side}_{part}" for side in ("left", "right") for part in ("coupler_col_1", "coupler_col_2")}
    gripper |= {f"{side}_{part}" for side in ("left", "right") for part in ("follower_pad2", "finger_pad")}
    assert colliding == {"floor", "wall", "box", "hand_capsule"} | gripper
    torch.testing.assert_close(env.action_low, -torch.ones(7))
    torch.testing.assert_close(env.action_high, torch.ones(7))
    assert env.task.reward_term_names == (*SHAPED, "termination", "success_wait", "success")
    assert sum(size for _, size in env.task.observation_layout) == 48
    mapping = env.task.control_mapping()
    assert (mapping.mode, mapping.scale) == ("motor_torque", 0.1)


def test_wrist_sensor_bodies_carry_the_mass_of_their_meshes():
    """``base_mount`` and ``fts300_sensor_body`` have only mesh geoms: the scene without meshes gives them no mass;
    the task gives them the inertials MuJoCo computes with Menagerie's meshes (the full model's values)."""
    scene = load_playground_scene(
        "manipulation/franka_emika_panda_robotiq/xmls/scene_panda_robotiq_cube.xml",
        ("franka_emika_panda", "robotiq_2f85_v4"),
    ).compile()
    model = make_task_env(TASK, num_envs=1).physics.mj_model
    expected = {
        "base_mount": (
            0.0658264838,
            (1.67739e-4, 5.004572e-4, 3.879624e-3),
            (-1.7031862e-3, 0.7069976193, -4.3115966e-3, 0.7072007322),
            (4.1271886e-05, 2.2103664e-05, 2.1029871e-05),
        ),
        "fts300_sensor_body": (
            0.0868423305,
            (-1.1983721e-4, 1.3080537e-6, -1.0485288e-2),
            (1.02313e-3, 0.7079054088, -1.004455e-3, 0.7063057953),
            (5.3627387e-05, 2.9216175e-05, 2.8995448e-05),
        ),
    }
    for name, (mass, ipos, iquat, inertia) in expected.items():
        assert scene.body(name).mass[0] == 0.0
        body = model.body(name)
        assert body.mass[0] == pytest.approx(mass, abs=1e-10)
        np.testing.assert_allclose(body.ipos, ipos, atol=1e-9)
        np.testing.assert_allclose(body.iquat, iquat, atol=1e-9)
        np.testing.assert_allclose(body.inertia, inertia, rtol=1e-7)
    arm = model.body("link7").id
    assert model.body_subtreemass[arm] - scene.body_subtreemass[arm] == pytest.approx(0.0658264838 + 0.0868423305)


def test_push_and_pick_on_a_worked_sequence():
    """A 4-entry history of scalars 1, 2, ...: after pushing k it holds k, k-1, ... (newest first, zeros before
    1), and the pick is the entry 1 or 2 steps old, both drawn."""
    history = torch.zeros(32, 4, 1)
    generator = torch.Generator().manual_seed(0)
    picks = []
    for value in range(1, 6):
        picks.append(push_and_pick(history, torch.full((32, 1), float(value)), (1, 2), generator)[:, 0])
        expected = [max(value - age, 0) for age in range(4)]
        assert (history[:, :, 0] == torch.tensor(expected, dtype=torch.float32)).all()
    assert (picks[0] == 0).all()  # 1 or 2 steps before the first push: nothing yet
    for value, picked in enumerate(picks[1:], start=2):
        assert ((picked == value - 1) | (picked == value - 2)).all()
        assert (picked == value - 1).any() and (picked == value - 2).any()


def test_control_applies_the_action_one_or_two_steps_old_as_clipped_torques():
    """Actions 0.2 t in step t (t = 1, 2, 3; joint 1 at 1.0 in step 3), then ones: each step's arm ctrl is 0.1
    times the action 1 or 2 steps old (0 before the first), joint 1's clipped to 8 / 150; the gripper stays at
    0.82."""
    env = make_task_env(TASK, num_envs=64, action_repeat=1, obs_noise_level=0.0)
    env.reset_to(*home_state(env)[:2])
    actions = [torch.full((64, 7), 0.2 * step) for step in (1, 2, 3)]
    actions[2][:, 0] = 1.0
    applied = []
    for step, action in enumerate(actions):
        env.step(action)
        ctrl = env.physics.ctrl.float()
        assert (ctrl[:, 7] == 0.82).all()
        torch.testing.assert_close(ctrl[:, :7], 0.1 * env.task_state["delayed_action"].float())
        torch.testing.assert_close(env.task_state["action_history"][:, 0].float(), action)
        applied.append(env.task_state["delayed_action"][:, 1].float())
        if step == 0:
            assert (applied[0] == 0).all()
    assert ((applied[1] == 0.2) | (applied[1] == 0.0)).all() and (applied[1] == 0.2).any() and (applied[1] == 0).any()
    assert ((applied[2] == 0.4) | (applied[2] == 0.2)).all() and (applied[2] == 0.4).any()
    assert (env.physics.ctrl[:, 0] <= 8 / 150 + 1e-12).all()  # the action 1.0 of step 3 is not applied yet
    env.step(torch.ones(64, 7))
    recent = env.task_state["delayed_action"][:, 0] == 1.0
    torch.testing.assert_close(
        env.physics.ctrl[recent, 0], torch.full((int(recent.sum()),), 8 / 150, dtype=torch.float64)
    )
    joint5 = torch.where(recent, 0.06, 0.04).double()  # step 3's 0.6 or step 2's 0.4, below 8 / 20: not clipped
    torch.testing.assert_close(env.physics.ctrl[:, 4], joint5)


def test_observation_is_a_frame_six_to_eleven_steps_old():
    """The reset fills the history with the first frame; each step pushes one frame (its newest entry) and the
    observation is the frame 6 to 11 steps old: the first frame for 6 steps, then frames of the run."""
    env = make_task_env(TASK, num_envs=64, action_repeat=1, obs_noise_level=0.0)
    first = reset_home(env)["obs"]
    assert (env.task_state["obs_history"].float() == first.unsqueeze(1)).all()
    frames, delays, applied = [first], set(), [torch.zeros(64, 7)]
    for action in random_actions(env, 14, seed=1):
        obs = env.step(action)["obs"]
        frames.append(env.task_state["obs_history"][:, 0].float())
        # A frame shows the action the previous control step applied.
        torch.testing.assert_close(frames[-1][:, LAST_ACTION], applied[-1])
        applied.append(env.task_state["last_action"].float())
        step = len(frames) - 1
        ages = torch.stack([frames[max(step - age, 0)] for age in range(6, 12)], dim=1)  # [N, 6, 48]
        matches = (ages == obs.unsqueeze(1)).all(dim=-1)
        assert matches.any(dim=1).all()
        if step <= 6:
            assert (obs == first).all()
        else:
            delays.update((6 + matches.float().argmax(dim=1)).tolist())
    assert delays == set(range(6, 12))


def test_action_repeat_sums_the_rewards_of_its_control_steps():
    """With the action history full of one action (so the delays do not matter) one agent step with
    action_repeat 4 pays the sum of 4 single control steps' rewards and terms, and moves the clock 4 times."""
    action = torch.full((2, 7), 0.3)
    results = []
    for repeat in (4, 1):
        env = make_task_env(TASK, num_envs=2, action_repeat=repeat, obs_noise_level=0.0)
        qpos, qvel, mocap_pos, mocap_quat = home_state(env, target_xy=(0.5, 0.1))
        state = {"action_history": double(0.3).expand(2, 5, 7), "last_action": double(0.3).expand(2, 7)}
        env.reset_to(qpos, qvel, None, mocap_pos, mocap_quat, task_state=state)
        steps = [env.step(action) for _ in range(4 // repeat)]
        results.append((steps, env.physics.time.clone(), env.episode_step))
    (repeated,), time_repeated, episode_repeated = results[0]
    single, time_single, episode_single = results[1]
    total = sum(step["reward"] for step in single)
    torch.testing.assert_close(repeated["reward"], total, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(
        repeated["episode_reward_terms"], single[-1]["episode_reward_terms"], rtol=1e-5, atol=1e-7
    )
    assert (repeated["reward"] > 0).all()
    torch.testing.assert_close(time_repeated, time_single)
    torch.testing.assert_close(time_repeated, torch.full((2,), 0.02, dtype=torch.float64))
    assert episode_repeated.tolist() == [1, 1] and episode_single.tolist() == [4, 4]


def test_reward_terms_on_hand_built_states(env):
    """World 0: box on the target. World 1: box 0.2 m short of the target in x, turned 90 deg from it, joint 2 at
    1.5 rad/s. World 2: joint 1 1.0 rad from home, joint 5 at 2.5 rad/s (beyond 0.9 x 2.61). World 3: box 0.5 mm
    from the target (the gripper aims at the box itself)."""
    qpos, qvel, mocap_pos, mocap_quat = home_state(env)
    mocap_pos[1, 0, 0] = 0.8
    mocap_quat[1, 0] = double(yaw(math.pi / 2))
    mocap_pos[3, 0, 0] = 0.6005
    qpos[2, 0] += 1.0
    qvel[1, 1], qvel[2, 4] = 1.5, 2.5
    last = double([[0.0] * 7, [0.5] * 7, [0.0] * 7, [1.0] + [0.0] * 6])
    env.reset_to(qpos, qvel, None, mocap_pos, mocap_quat, task_state={"last_action": last})
    action = double([[0.0] * 7, [0.5] * 7, [1.0] * 7, [0.0] * 7])
    terms = env.task.reward_terms(env.physics, action, env.task_state)
    model = env.physics.mj_model
    expected = {name: [] for name in SHAPED}
    for world in range(4):
        data = kinematics(model, qpos[world], mocap_pos[world], mocap_quat[world])
        box, target = data.body("box").xpos, mocap_pos[world, 0].numpy()
        away = box - target
        aim = box + (0.1 * away / np.linalg.norm(away) if np.linalg.norm(away) > 1e-3 else 0.0)
        expected["gripper_box"].append(linear(float(np.linalg.norm(aim - data.site("gripper").xpos)), 0.1, 1.0))
    expected["box_target"] = [1.0, reciprocal(0.2, 0.005, 0.4), 1.0, 1.0]
    expected["box_orientation"] = [1.0, reciprocal(math.pi / 2, 0.2, math.pi), 1.0, 1.0]
    expected["gripper_collision_side"] = [0.0] * 4  # no gripper-box contact
    expected["robot_target_qpos"] = [1.0, 1.0, linear(1.0, 0.5, 4.5), 1.0]
    expected["joint_vel"] = [1.0, reciprocal(1.5, 0.5, 2.0), reciprocal(2.5, 0.5, 2.0), 1.0]
    expected["joint_vel_limit"] = [1.0, 1.0, 0.0, 1.0]
    expected["total_command"] = [0.0, 0.5 * math.sqrt(7), math.sqrt(7), 0.0]
    expected["action_rate"] = [0.0, 0.0, math.sqrt(7), 1.0]
    for name in SHAPED:
        torch.testing.assert_close(terms[name], double(expected[name]), atol=1e-6, rtol=0, msg=name)
    terms.update(termination=double([0, 1, 0, 0]), success_wait=double([1, 0, 0, 1]), success=double([1, 0, 0, 0]))
    reward, shares = env.task.total_reward(terms)
    mean = sum(w * double(expected[name]) for w, name in zip(WEIGHTS, SHAPED, strict=True)) / 21.55
    events = -50 * terms["termination"] + 3 * terms["success_wait"] + 500 * terms["success"]
    torch.testing.assert_close(reward, 0.005 * (mean + events), atol=1e-8, rtol=0)
    torch.testing.assert_close(sum(shares.values()), reward)
    assert shares["success"][0].item() == pytest.approx(2.5)


def test_gripper_collision_side_reads_the_mean_contact_normal(env):
    """Two gripper-box contact normals, one horizontal and one vertical: their mean points 45 deg up, |z x n| =
    sin 45 deg; a vertical normal alone gives 0, a horizontal one 1."""
    reset_home(env)
    columns = [
        env.physics.mj_model.sensor(f"{geom}_box_normal").adr[0]
        for geom in ("left_coupler_col_1", "right_follower_pad2")
    ]
    normals = double([[[1, 0, 0], [0, 0, 1]], [[0, 0, 1], [0, 0, 0]], [[0, 1, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, 0]]])
    for index, column in enumerate(columns):
        env.physics.sensordata[:, column : column + 3] = normals[:, index]
    side = env.task.reward_terms(env.physics, torch.zeros(4, 7, dtype=torch.float64), env.task_state)
    torch.testing.assert_close(side["gripper_collision_side"], double([math.sqrt(0.5), 0.0, 1.0, 0.0]))


def test_success_after_thirty_steps_at_the_target_moves_the_target(env):
    """Box on the target; success counts 29 (world 0), 30 (world 1, curriculum level 0), 30 (world 2, level 4),
    none with the box 10 cm off (world 3). After one step: world 0 counts 30, worlds 1 and 2 succeed (+500 dt,
    count back to 0, next curriculum level, a new target), world 3 stays at 0 with its target."""
    qpos, qvel, mocap_pos, mocap_quat = home_state(env, box_yaw=0.3, target_yaw=0.3)
    mocap_pos[3, 0, 1] = 0.1
    state = {"success_step_count": torch.tensor([29, 30, 30, 0]), "curriculum_id": torch.tensor([0, 0, 4, 0])}
    env.reset_to(qpos, qvel, None, mocap_pos, mocap_quat, task_state=state)
    td = env.step(torch.zeros(4, 7))
    assert env.task_state["success_step_count"].tolist() == [30, 0, 0, 0]
    assert env.task_state["curriculum_id"].tolist() == [0, 1, 5, 0]
    names = env.task.reward_term_names
    events = td["episode_reward_terms"][:, [names.index("success_wait"), names.index("success")]]
    torch.testing.assert_close(events, torch.tensor([[0.015, 0.0], [0.015, 2.5], [0.015, 2.5], [0.0, 0.0]]))
    target = env.physics.mocap_pos[:, 0]
    moved = (target - mocap_pos[:, 0]).norm(dim=-1) > 0
    assert moved.tolist() == [False, True, True, False]
    # The next target: within the sampling box, its turn from the box within the level's limit (45 deg at level 1).
    assert (target[1:3, 0] >= 0.4).all() and (target[1:3, 0] <= 0.65).all() and (target[1:3, 1].abs() <= 0.2).all()
    assert (
        abs(target[1, 0].item() - BOX_HOME[0]) <= 0.02 + 1e-9 and abs(target[1, 1].item() - BOX_HOME[1]) <= 0.05 + 1e-9
    )
    assert 0 <= turn_from_box(env)[1].item() <= math.radians(45) + 1e-9
    # The observed target is the new one (noise-free frames, target entries first).
    torch.testing.assert_close(env.task_state["obs_history"][:, 0, :3].double(), target, atol=1e-6, rtol=0)


def test_in_episode_target_draws_follow_the_curriculum():
    """4000 draws at levels 0 and 4: target y spread 0.05 / 0.2 m about the box's home (x 0.4 times it, clipped
    to the sampling box), turned from the box by up to 45 / 180 deg."""
    env = make_task_env(TASK, num_envs=4000, action_repeat=1, obs_noise_level=0.0, reset_pool_size=4)
    generator = torch.Generator().manual_seed(0)
    for level, spread, max_turn in ((0, 0.05, 45.0), (4, 0.2, 180.0)):
        state = {"curriculum_id": torch.full((4000,), level - 1)}
        env.task.move_target(env.physics, state, torch.ones(4000, dtype=torch.bool), generator)
        offset = env.physics.mocap_pos[:, 0] - double(BOX_HOME)
        low = double([max(-0.4 * spread, 0.4 - BOX_HOME[0]), max(-spread, -0.2 - BOX_HOME[1]), -0.005])
        high = double([0.4 * spread, min(spread, 0.2 - BOX_HOME[1]), 0.005])
        assert (offset >= low - 1e-9).all() and (offset <= high + 1e-9).all()
        assert ((offset.min(0).values - low) < 0.01).all() and ((high - offset.max(0).values) < 0.01).all()
        angle = torch.rad2deg(turn_from_box(env))
        assert angle.min() >= -1e-6 and angle.max() <= max_turn + 1e-6 and angle.max() > max_turn - 1
        assert angle.mean().item() == pytest.approx(max_turn / 2, abs=2.0)


def test_reset_distribution():
    env = make_task_env(TASK, num_envs=2)
    starts = env.task.sample_start(torch.Generator().manual_seed(0), 4000, env.physics)
    model = env.physics.mj_model
    home = torch.as_tensor(model.keyframe("home").qpos)
    spread = double([0.2] * 4 + [0.3] * 3)
    low, high = double(model.jnt_range[:7, 0]) * spread * 0.3, double(model.jnt_range[:7, 1]) * spread * 0.3
    arm = starts.qpos[:, :7] - home[:7]
    assert (arm >= low).all() and (arm <= high).all()
    torch.testing.assert_close(arm.mean(0), (low + high) / 2, atol=0.01, rtol=0)
    torch.testing.assert_close(starts.qpos[:, 7:13], home[7:13].repeat(4000, 1))  # the gripper as in the keyframe
    box = starts.qpos[:, 13:16] - double(BOX_HOME)
    assert (box[:, 2] == 0).all() and (box[:, 0].abs() <= 0.06).all() and (box[:, 1].abs() <= 0.15).all()
    assert box[:, 0].abs().max() > 0.059 and box[:, 1].abs().max() > 0.149
    box_yaw = torch.remainder(2 * torch.atan2(starts.qpos[:, 19], starts.qpos[:, 16]), 2 * math.pi)
    assert (starts.qpos[:, 17:19] == 0).all() and box_yaw.mean().item() == pytest.approx(math.pi, abs=0.1)
    target = starts.mocap_pos[:, 0] - double(BOX_HOME)
    assert (target.abs() <= double([0.02, 0.05, 0.005])).all() and (
        target.abs().max(0).values > double([0.019, 0.049, 0.0049])
    ).all()
    target_yaw = 2 * torch.atan2(starts.mocap_quat[:, 0, 3], starts.mocap_quat[:, 0, 0])
    turn = torch.remainder(target_yaw - box_yaw, 2 * math.pi)
    assert turn.max() <= math.radians(45) + 1e-9 and turn.mean().item() == pytest.approx(math.radians(22.5), abs=0.01)
    assert (starts.qvel == 0).all()
    td = env.reset()
    torch.testing.assert_close(env.physics.ctrl, double([0.0] * 7 + [0.82]).repeat(2, 1))
    torch.testing.assert_close(td["obs"][:, :3].double(), env.physics.mocap_pos[:, 0], atol=1e-6, rtol=0)
    assert (td["obs"][:, LAST_ACTION] == 0).all()


def test_first_frame_layout_at_a_known_state(env):
    """The reset observation (the first frame) at a hand-built state, noise off, against MuJoCo's kinematics."""
    qpos, qvel, mocap_pos, mocap_quat = home_state(
        env, box_xy=(0.55, 0.05), box_yaw=0.7, target_xy=(0.6, -0.1), target_yaw=0.2
    )
    qpos[:, 1] += 0.1
    qvel[:, 2], qvel[:, 14] = -0.4, 0.3
    obs = env.reset_to(qpos, qvel, None, mocap_pos, mocap_quat)["obs"][0].double()
    data = kinematics(env.physics.mj_model, qpos[0], mocap_pos[0], mocap_quat[0])
    target_matrix = np.zeros(9)
    mujoco.mju_quat2Mat(target_matrix, mocap_quat[0, 0].numpy())
    expected = np.concatenate(
        [
            mocap_pos[0, 0].numpy(),
            target_matrix[3:],
            np.zeros(7),
            qpos[0, :7].numpy(),
            qvel[0, :7].numpy(),
            data.site("gripper").xpos,
            data.site("gripper").xmat[3:],
            data.body("box").xmat[3:],
            data.body("box").xpos,
        ]
    )
    torch.testing.assert_close(obs, torch.as_tensor(expected), atol=1e-6, rtol=0)


def test_frame_noise_has_playgrounds_ranges():
    """64 worlds in one state, noise on: the joint angles share one offset U(0, 0.1), the velocities one U(0, 0.1),
    the gripper position one U(0, 0.02); the box moves by U(-0.015, 0.015) per axis; the box turns by at most
    7.5 deg, the gripper by at most 5 deg, by the fraction of 5 deg the joint angles' offset is of 0.1."""
    clean = make_task_env(TASK, num_envs=64, obs_noise_level=0.0)
    noisy = make_task_env(TASK, num_envs=64)
    frames = []
    for env in (clean, noisy):
        reset_home(env)
        frames.append(env.task.frame(env.physics, env.task_state, env.generator))
    difference = frames[1] - frames[0]
    arm, speed, gripper, box = difference[:, 16:23], difference[:, 23:30], difference[:, 30:33], difference[:, 45:48]
    for values, high in ((arm, 0.1), (speed, 0.1), (gripper, 0.02)):
        torch.testing.assert_close(values, values[:, :1].expand_as(values), atol=1e-12, rtol=0)
        assert (values >= 0).all() and (values <= high).all() and values.std() > high / 5
    assert (box.abs() <= 0.015).all() and box.abs().max() > 0.012
    assert (difference[:, :16] == 0).all()  # the target and the last action carry no noise

    def turn_angle(rows_noisy, rows_clean):
        def full(rows):
            second, third = rows[:, :3], rows[:, 3:]
            return torch.stack([torch.linalg.cross(second, third), second, third], dim=1)

        relative = full(rows_noisy) @ full(rows_clean).transpose(1, 2)
        return torch.rad2deg(torch.acos(((relative.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)))

    box_turn = turn_angle(frames[1][:, 39:45].double(), frames[0][:, 39:45].double())
    gripper_turn = turn_angle(frames[1][:, 33:39].double(), frames[0][:, 33:39].double())
    assert box_turn.max() <= 7.5 + 1e-4 and gripper_turn.max() <= 5.0 + 1e-4
    torch.testing.assert_close(gripper_turn / 5.0, arm[:, 0].double() / 0.1, atol=1e-3, rtol=0)


def test_terminations(env):
    """Box beyond x = 0.75 (world 1), joint 1 beyond 0.9 of its limit (world 2), the fingers in the floor (joint 2
    leaning forward, world 3); world 0 at home goes on. The gripper high and far out (joint 4 at -1.5) also ends."""
    qpos, qvel, mocap_pos, mocap_quat = home_state(env)
    qpos[1, 13] = 0.8
    qpos[2, 0] = 0.92 * 2.8973
    qpos[3, 1] = 0.4
    env.reset_to(qpos, qvel, None, mocap_pos, mocap_quat)
    assert env.task.failed(env.physics).tolist() == [False, True, True, True]
    floor = env.physics.mj_model.sensor("floor_left_finger_pad_found").adr[0]
    assert env.physics.sensordata[3, floor] > 0 and env.physics.sensordata[0, floor] == 0
    qpos[:, 1], qpos[:, 0], qpos[:, 13] = qpos[0, 1], qpos[0, 0], qpos[0, 13]
    qpos[1, 3] = -1.5
    env.reset_to(qpos, qvel, None, mocap_pos, mocap_quat)
    assert env.task.failed(env.physics).tolist() == [False, True, False, False]
    qpos[1, 3] = qpos[0, 3]
    qpos[2, 13] = 0.8
    env.reset_to(qpos, qvel, None, mocap_pos, mocap_quat)
    td = env.step(torch.zeros(4, 7))
    assert td["terminated"].tolist() == [False, False, True, False]
    assert td["episode_reward_terms"][2, env.task.reward_term_names.index("termination")].item() == pytest.approx(-0.25)


def test_a_reset_world_starts_with_fresh_task_state(env):
    """A world that terminates restarts with an empty action history, curriculum level 0 and its history filled
    with its first frame; the others keep theirs."""
    qpos, qvel, mocap_pos, mocap_quat = home_state(env, target_xy=(0.5, 0.1))
    qpos[1, 13] = 0.8
    state = {"curriculum_id": torch.tensor([2, 2, 2, 2]), "success_step_count": torch.tensor([5, 5, 0, 0])}
    env.reset_to(qpos, qvel, None, mocap_pos, mocap_quat, task_state=state)
    td = env.step(torch.full((4, 7), 0.5))
    assert td["done"].tolist() == [False, True, False, False]
    assert env.task_state["curriculum_id"].tolist() == [2, 0, 2, 2]
    assert env.task_state["success_step_count"].tolist() == [0, 0, 0, 0]  # the box is not at the target
    assert (env.task_state["action_history"][1] == 0).all() and (env.task_state["action_history"][0, 0] == 0.5).all()
    assert (env.task_state["obs_history"][1].float() == td["obs"][1]).all()


def test_seeded_run_across_autoresets_does_not_depend_on_host_shortcuts():
    """The CUDA code path (masked autoreset, no host checks) gives the CPU path's results bit for bit and makes no
    host sync, across episode ends (3-step episodes) and a success that moves a target."""

    def run(shortcuts):
        env = make_task_env(TASK, num_envs=3, episode_length=3, seed=5)
        env.host_shortcuts = shortcuts
        qpos, qvel, mocap_pos, mocap_quat = home_state(env)
        state = {"success_step_count": torch.tensor([30, 0, 0])}
        results = []
        checked = forbid_host_syncs if not shortcuts else contextlib.nullcontext
        with checked():
            env.reset()
        env.reset_to(qpos, qvel, None, mocap_pos, mocap_quat, task_state=state)
        with checked():
            for action in random_actions(env, 8):
                results.append(env.step(action))
                results[-1]["target"] = env.physics.mocap_pos[:, 0].clone()
                results[-1]["history"] = env.task_state["obs_history"].clone()
        return torch.stack(results)

    fast, masked = run(True), run(False)
    assert fast["done"].sum() == 6 and fast["episode_reward_terms"][0, 0, -1] == 2.5  # world 0 succeeds at once
    for key in ("obs", "reward", "terminated", "truncated", "final_obs", "target", "history"):
        assert torch.equal(fast[key], masked[key]), key


@pytest.mark.slow
@pytest.mark.warp
def test_warp_matches_native_for_one_agent_step():
    """MuJoCo Warp (float32, CPU) vs native MuJoCo (float64): one agent step (4 control steps) from the same state
    with the action history full of the action (the drawn delays do not matter), noise off.

    Measured: rewards (about 0.013) within 1e-9, observations within 7e-7 relative (float32 precision).
    """
    options = {"num_envs": 2, "seed": 3, "obs_noise_level": 0.0}
    native = make_task_env(TASK, **options)
    warp = make_task_env(TASK, backend="warp", **options)
    qpos, qvel, mocap_pos, mocap_quat = home_state(native, target_xy=(0.5, 0.1))
    qpos[1, 1] += 0.2
    action = (torch.rand(2, 7, generator=torch.Generator().manual_seed(0)) * 2 - 1) * 0.5
    state = {"action_history": action.double().unsqueeze(1).expand(2, 5, 7), "last_action": action.double()}
    before = [env.reset_to(qpos, qvel, None, mocap_pos, mocap_quat, task_state=state)["obs"] for env in (native, warp)]
    torch.testing.assert_close(before[1], before[0], atol=1e-5, rtol=1e-5)
    after = [env.step(action) for env in (native, warp)]
    reward_gap = (after[1]["reward"] - after[0]["reward"]).abs().max().item()
    relative = (after[1]["obs"] - after[0]["obs"]).abs() / (1 + after[0]["obs"].abs())
    assert reward_gap < 1e-5 and relative.max() < 1e-4, (reward_gap, relative.max())


def test_training_smoke_run(tmp_path):
    check_training_smoke_run(TASK, tmp_path)

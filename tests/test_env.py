"""The batched env core on the native MuJoCo backend with CheetahRun: API, autoreset, seeding, bad input."""

import mujoco
import numpy as np
import pytest
import torch

from pqn_torch.envs import list_tasks, make_env

NUM_ENVS = 4


def make_cheetah(**kwargs):
    options = {"backend": "mujoco", "device": "cpu", "reset_pool_size": 8, "num_threads": 2}
    options.update(kwargs)
    return make_env("CheetahRun", NUM_ENVS, **options)


def random_actions(env, steps, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(env.num_envs, env.action_dim, generator=generator) * 2 - 1 for _ in range(steps)]


@pytest.fixture(scope="module")
def env():
    return make_cheetah()


def test_properties(env):
    assert (env.obs_dim, env.critic_obs_dim, env.action_dim) == (17, 17, 6)
    assert env.episode_length == 1000 and env.ctrl_dt == pytest.approx(0.01)
    assert env.num_envs == NUM_ENVS and env.device == torch.device("cpu")
    torch.testing.assert_close(env.action_low, -torch.ones(6))
    torch.testing.assert_close(env.action_high, torch.ones(6))
    assert "CheetahRun" in list_tasks()


def test_shapes_dtypes_and_reward_bounds(env):
    td = env.reset()
    assert td["obs"].shape == (NUM_ENVS, 17) and td["obs"].dtype == torch.float32
    assert td["critic_obs"].shape == (NUM_ENVS, 17)
    for action in random_actions(env, 30):
        td = env.step(action)
        assert td["reward"].shape == (NUM_ENVS,) and td["reward"].dtype == torch.float32
        assert td["terminated"].dtype == torch.bool and td["truncated"].dtype == torch.bool
        assert torch.equal(td["done"], td["terminated"] | td["truncated"])
        assert ((td["reward"] >= 0) & (td["reward"] <= 1)).all()
        assert torch.isfinite(td["obs"]).all()


def test_observation_and_reward_follow_the_physics(env):
    """obs = qpos[1:] ++ qvel; reward = clip(v/10, 0, 1) of the torso subtree x-velocity before the step."""
    env.reset(seed=3)
    model = env.physics.mj_model
    data = mujoco.MjData(model)
    torso = model.body("torso").id
    for action in random_actions(env, 5, seed=4):
        before_qpos = env.physics.qpos.clone().numpy()
        before_qvel = env.physics.qvel.clone().numpy()
        td = env.step(action)
        expected_obs = torch.cat([env.physics.qpos[:, 1:], env.physics.qvel], -1).float()
        torch.testing.assert_close(td["obs"], expected_obs)
        for world in range(NUM_ENVS):
            data.qpos[:], data.qvel[:] = before_qpos[world], before_qvel[world]
            mujoco.mj_forward(model, data)
            speed = data.subtree_linvel[torso][0]
            assert td["reward"][world].item() == pytest.approx(np.clip(speed / 10.0, 0.0, 1.0), abs=1e-6)


def test_start_pool_respects_joint_ranges_and_time():
    env = make_cheetah(reset_pool_size=8)
    pool = env.start_states
    ranges = torch.as_tensor(env.physics.mj_model.jnt_range[3:])
    joints = pool["qpos"][:, 3:]
    # Settling for 200 steps lets joints sit on their (soft) limits, never far past them.
    assert (joints >= ranges[:, 0] - 0.05).all() and (joints <= ranges[:, 1] + 0.05).all()
    assert (pool["time"] == 0).all()
    assert pool["qvel"].abs().max() < 1.0  # settled: nearly at rest


def test_truncation_at_episode_length_and_final_obs():
    env = make_cheetah(episode_length=5)
    env.reset()
    for step, action in enumerate(random_actions(env, 5), start=1):
        td = env.step(action)
        if step < 5:
            assert not td["done"].any()
            assert torch.equal(td["final_obs"], td["obs"])
    assert td["truncated"].all() and not td["terminated"].any()
    assert (td["episode_length"] == 5).all()
    assert not torch.equal(td["final_obs"], td["obs"])  # obs is already the next episode's first
    assert not torch.allclose(td["final_obs"], td["obs"])
    assert (env.episode_step == 0).all()


def truncation_steps(env, num_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[num_steps, N] truncation flags and reported episode lengths of ``num_steps`` zero-action steps."""
    zeros = torch.zeros(env.num_envs, env.action_dim)
    results = [env.step(zeros) for _ in range(num_steps)]
    return torch.stack([r["truncated"] for r in results]), torch.stack([r["episode_length"] for r in results])


def test_staggered_reset_spreads_the_first_time_limits_then_runs_full_episodes():
    """Worlds reset together truncate together forever; a staggered reset cuts each first episode at a
    uniform step of 1..L so later time limits fall in different steps (CartpoleBalance never terminates)."""
    length, worlds = 10, 500
    env = make_env(
        "CartpoleBalance", worlds, device="cpu", backend="mujoco", seed=0, num_threads=1, episode_length=length
    )
    env.reset()
    truncated, _ = truncation_steps(env, 2 * length)
    assert truncated[length - 1].all() and truncated[2 * length - 1].all() and truncated.sum() == 2 * worlds

    env.reset(staggered=True)
    truncated, lengths = truncation_steps(env, 2 * length)
    first = truncated.int().argmax(dim=0) + 1  # the step of each world's first truncation
    assert (truncated[:length].sum(dim=0) == 1).all()  # one first episode per world, within L steps
    assert torch.equal(lengths[first - 1, torch.arange(worlds)], first)  # it reports the steps it ran
    assert truncated[first - 1 + length, torch.arange(worlds)].all()  # then a full-length episode
    assert truncated.sum() == 2 * worlds
    counts = torch.bincount(first, minlength=length + 1)[1:]
    # Uniform over 1..L: 50 expected per value, binomial std 6.7; all within 4.5 std.
    assert counts.min() >= 20 and counts.max() <= 80, counts

    for restart in (env.reset, lambda: env.reset_to(env.physics.qpos.clone(), env.physics.qvel.clone())):
        env.reset(staggered=True)
        restart()  # a plain reset (evaluation's) or a reset_to is in lockstep again
        truncated, _ = truncation_steps(env, length)
        assert truncated[length - 1].all() and truncated.sum() == worlds


def test_episode_return_is_sum_of_rewards():
    env = make_cheetah(episode_length=6)
    env.reset()
    total = torch.zeros(NUM_ENVS)
    for action in random_actions(env, 6):
        td = env.step(action)
        total += td["reward"]
    torch.testing.assert_close(td["episode_return"], total)


def test_same_seed_same_trajectory():
    def rollout(seed):
        env = make_cheetah(seed=seed, episode_length=7)
        obs = [env.reset()["obs"]]
        obs += [env.step(a)["obs"] for a in random_actions(env, 15)]
        return torch.stack(obs)

    first, second, other = rollout(5), rollout(5), rollout(6)
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_reset_to_then_same_actions_same_trajectory(env):
    env.reset(seed=11)
    for action in random_actions(env, 3, seed=2):
        env.step(action)
    qpos, qvel = env.physics.qpos.clone().float(), env.physics.qvel.clone().float()
    actions = random_actions(env, 10, seed=9)

    def replay():
        out = [env.reset_to(qpos, qvel)["obs"]]
        out += [env.step(a)["obs"] for a in actions]
        return torch.stack(out)

    first = replay()
    torch.testing.assert_close(first[0], torch.cat([qpos[:, 1:], qvel], -1))
    assert torch.equal(first, replay())


def test_nonfinite_state_resets_only_that_world():
    actions = random_actions(make_cheetah(), 4, seed=3)
    healthy, poisoned = make_cheetah(seed=2), make_cheetah(seed=2)
    healthy.reset(), poisoned.reset()
    healthy.step(actions[0]), poisoned.step(actions[0])
    poisoned.physics.qvel[1, 0] = float("nan")
    td_ok, td_bad = healthy.step(actions[1]), poisoned.step(actions[1])
    assert td_bad["terminated"].tolist() == [False, True, False, False]
    assert td_bad["nonfinite"].tolist() == [False, True, False, False]
    assert td_bad["reward"][1] == 0 and torch.isfinite(td_bad["final_obs"]).all()
    assert torch.isfinite(td_bad["obs"]).all() and torch.isfinite(poisoned.physics.qvel).all()
    assert int(poisoned.stats["nonfinite_states"]) == 1 and int(healthy.stats["nonfinite_states"]) == 0
    others = [0, 2, 3]
    torch.testing.assert_close(td_bad["obs"][others], td_ok["obs"][others])
    for action in actions[2:]:
        td_ok, td_bad = healthy.step(action), poisoned.step(action)
        torch.testing.assert_close(td_bad["obs"][others], td_ok["obs"][others])


@pytest.mark.parametrize("shortcuts", [True, False])
def test_huge_but_finite_state_beyond_mujocos_limit_is_reset_like_nan(shortcuts):
    """|qvel| 1e12 is finite but past MuJoCo's 1e10 limit: reset, counted, zeroed final obs, reward 0."""
    actions = random_actions(make_cheetah(), 3, seed=5)
    healthy, blown = make_cheetah(seed=6), make_cheetah(seed=6)
    blown.host_shortcuts = shortcuts
    healthy.reset(), blown.reset()
    healthy.step(actions[0]), blown.step(actions[0])
    blown.physics.qvel[2, 3] = 1e12
    for env in (healthy, blown):
        env.physics.qpos[0, 0] = 1e9  # the torso 1e9 m down the track: large, but within the limit (and unobserved)
    td_ok, td_bad = healthy.step(actions[1]), blown.step(actions[1])
    assert td_bad["nonfinite"].tolist() == [False, False, True, False]
    assert td_bad["terminated"].tolist() == [False, False, True, False] and td_bad["reward"][2] == 0
    assert torch.count_nonzero(td_bad["final_obs"][2]) == 0 and torch.count_nonzero(td_bad["final_critic_obs"][2]) == 0
    assert td_bad["obs"].abs().max() < 1e10 and blown.physics.qvel[2].abs().max() < 1e3  # restarted from the pool
    assert int(blown.stats["nonfinite_states"]) == 1 and int(blown.stats["nonfinite_rewards"]) == 1
    torch.testing.assert_close(td_bad["obs"][[0, 1, 3]], td_ok["obs"][[0, 1, 3]])


@pytest.mark.parametrize("shortcuts", [True, False])
def test_observations_beyond_the_tasks_limit_reset_the_world_long_before_mujocos(shortcuts):
    """|qvel| 1e5 is far inside MuJoCo's 1e10 but 1e5 times a healthy cheetah's: reset and counted like a NaN."""
    actions = random_actions(make_cheetah(), 3, seed=5)
    healthy, blown = make_cheetah(seed=6), make_cheetah(seed=6)
    blown.host_shortcuts = shortcuts
    # The cheetah's settled start observations are all below 1 (heights, angles, zero velocities): limit 1000.
    assert blown.obs_limit == blown.critic_obs_limit == 1000.0
    healthy.reset(), blown.reset()
    healthy.step(actions[0]), blown.step(actions[0])
    blown.physics.qvel[1, 4] = 1e5
    td_ok, td_bad = healthy.step(actions[1]), blown.step(actions[1])
    assert td_bad["nonfinite"].tolist() == [False, True, False, False]
    assert torch.count_nonzero(td_bad["final_obs"][1]) == 0 and td_bad["obs"].abs().max() < 1000
    assert int(blown.stats["nonfinite_states"]) == 1
    torch.testing.assert_close(td_bad["obs"][[0, 2, 3]], td_ok["obs"][[0, 2, 3]])


def test_reset_to_takes_numpy_arrays_and_names_what_it_wants(env):
    qpos = np.random.default_rng(0).normal(scale=0.1, size=(NUM_ENVS, 9))
    qvel = np.zeros((NUM_ENVS, 9))
    from_numpy = env.reset_to(qpos, qvel)["obs"]
    from_torch = env.reset_to(torch.from_numpy(qpos), torch.from_numpy(qvel))["obs"]
    torch.testing.assert_close(from_numpy, from_torch)
    torch.testing.assert_close(from_numpy[:, :8], torch.from_numpy(qpos[:, 1:]).float())
    with pytest.raises(TypeError, match=r"reset_to: qvel must be a tensor or array of shape \(4, 9\), got str"):
        env.reset_to(qpos, "zeros")


def test_nonfinite_actions_are_zeroed_and_counted():
    clean, dirty = make_cheetah(seed=4), make_cheetah(seed=4)
    clean.reset(), dirty.reset()
    action = torch.full((NUM_ENVS, 6), 0.3)
    bad = action.clone()
    bad[2, 1] = float("nan")
    bad[3, 0] = float("inf")
    zeroed = action.clone()
    zeroed[2, 1] = 0.0
    zeroed[3, 0] = 0.0
    torch.testing.assert_close(dirty.step(bad)["obs"], clean.step(zeroed)["obs"])
    assert int(dirty.stats["nonfinite_actions"]) == 2


def test_actions_are_clipped_to_the_control_range():
    a, b = make_cheetah(seed=4), make_cheetah(seed=4)
    a.reset(), b.reset()
    torch.testing.assert_close(a.step(torch.full((NUM_ENVS, 6), 5.0))["obs"], b.step(torch.ones(NUM_ENVS, 6))["obs"])


def test_bad_input_errors(env):
    with pytest.raises(ValueError, match="unknown task 'Nope'; valid tasks: .*CheetahRun"):
        make_env("Nope", 2)
    with pytest.raises(ValueError, match="unknown backend"):
        make_env("CheetahRun", 2, backend="jax")
    with pytest.raises(ValueError, match="unsupported device|unknown device"):
        make_env("CheetahRun", 2, device="tpu")
    with pytest.raises(ValueError, match="num_envs"):
        make_env("CheetahRun", 0)
    with pytest.raises(ValueError, match="unknown option"):
        make_env("CheetahRun", 2, episode_lenght=10)
    for option, value, message in [
        ("episode_length", "abc", "episode_length must be a positive integer"),
        ("episode_length", 0, "episode_length must be a positive integer"),
        ("sim_dt", 0, "sim_dt must be a positive number of seconds, got 0"),
        ("ctrl_dt", float("nan"), "ctrl_dt must be a positive number of seconds, got nan"),
    ]:
        with pytest.raises(ValueError, match=message):
            make_env("CheetahRun", 2, **{option: value})
    with pytest.raises(ValueError, match="shape"):
        env.step(torch.zeros(NUM_ENVS, 5))
    with pytest.raises(TypeError, match="floating-point"):
        env.step(torch.zeros(NUM_ENVS, 6, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        env.step(np.zeros((NUM_ENVS, 6)))
    with pytest.raises(ValueError, match="reset_to: qpos"):
        env.reset_to(torch.zeros(NUM_ENVS, 3), torch.zeros(NUM_ENVS, 9))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="no usable CUDA"):
        make_env("CheetahRun", 2, device="cuda")


def test_action_repeat_sums_the_rewards_of_repeated_task_steps():
    """action_repeat=3: one agent step = three task steps with the same action, rewards summed."""
    single, repeated = make_cheetah(), make_cheetah(action_repeat=3)
    qpos, qvel = single.start_states["qpos"][:NUM_ENVS], single.start_states["qvel"][:NUM_ENVS]
    single.reset_to(qpos, qvel)
    repeated.reset_to(qpos, qvel)
    action = random_actions(single, 1)[0]
    singles = [single.step(action) for _ in range(3)]
    td = repeated.step(action)
    torch.testing.assert_close(td["reward"], sum(result["reward"] for result in singles))
    torch.testing.assert_close(td["obs"], singles[-1]["obs"])
    torch.testing.assert_close(repeated.physics.time, torch.full((NUM_ENVS,), 0.03, dtype=torch.float64))
    assert td["episode_length"].tolist() == [1] * NUM_ENVS
    with pytest.raises(ValueError, match="action_repeat must be a positive integer, got 0"):
        make_cheetah(action_repeat=0)
    with pytest.raises(ValueError, match="action_repeat must be a positive integer, got 2.5"):
        make_cheetah(action_repeat=2.5)

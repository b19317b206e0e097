"""Helpers shared by the task test modules: a small native-backend env and reproducible random actions."""

import torch

from pqn_torch.envs import BatchedEnv, make_env


def make_task_env(name: str, num_envs: int = 8, backend: str = "mujoco", **kwargs) -> BatchedEnv:
    """``num_envs`` worlds of task ``name`` on the CPU with a small start-state pool (fast to build)."""
    options = {"device": "cpu", "reset_pool_size": 16, "num_threads": 2}
    options.update(kwargs)
    return make_env(name, num_envs, backend=backend, **options)


def random_actions(env: BatchedEnv, steps: int, seed: int = 0) -> list[torch.Tensor]:
    """``steps`` batches of uniform actions in [-1, 1] from a seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(env.num_envs, env.action_dim, generator=generator) * 2 - 1 for _ in range(steps)]


def check_truncation_at_episode_length(name: str) -> None:
    """With 3-step episodes, random actions truncate every world exactly at step 3, then restart it."""
    env = make_task_env(name, num_envs=2, episode_length=3)
    env.reset()
    for step, action in enumerate(random_actions(env, 4), start=1):
        td = env.step(action)
        assert td["truncated"].all() == (step == 3) and not td["terminated"].any()
        assert td["done"].any() == (step == 3)
    assert td["episode_length"].tolist() == [1, 1]


def check_spaces_and_random_rollout(
    env: BatchedEnv, obs_dim: int, action_dim: int, ctrl_dt: float, substeps: int, steps: int = 25
) -> None:
    """Dims, timing, action range; ``steps`` random steps: finite float32 obs, rewards in [0, 1], no episode end."""
    assert (env.obs_dim, env.critic_obs_dim, env.action_dim) == (obs_dim, obs_dim, action_dim)
    assert abs(env.ctrl_dt - ctrl_dt) < 1e-12 and env.task.substeps == substeps
    assert env.episode_length == 1000
    torch.testing.assert_close(env.action_low, -torch.ones(action_dim))
    torch.testing.assert_close(env.action_high, torch.ones(action_dim))
    td = env.reset()
    assert td["obs"].shape == (env.num_envs, obs_dim) and td["obs"].dtype == torch.float32
    rewards = []
    for action in random_actions(env, steps):
        td = env.step(action)
        assert td["obs"].dtype == torch.float32 and td["reward"].dtype == torch.float32
        assert torch.isfinite(td["obs"]).all() and torch.isfinite(td["critic_obs"]).all()
        assert not td["done"].any()
        rewards.append(td["reward"])
    rewards = torch.stack(rewards)
    assert ((rewards >= 0) & (rewards <= 1)).all()
    assert all(int(count) == 0 for key, count in env.stats.items() if key.startswith("nonfinite"))

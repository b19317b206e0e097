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

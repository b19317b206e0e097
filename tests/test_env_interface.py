"""The env interface (:class:`pqn_torch.envs.VecEnv`): the MuJoCo env implements it, and a user's own env
written against it, in pure torch, trains with the agent and evaluates."""

import pytest
import torch

from pqn_torch.algo import PQN, PQNConfig
from pqn_torch.envs import BatchedEnv, VecEnv, make_env
from pqn_torch.training.evaluation import evaluate


class PointToOrigin:
    """A user's env, no MuJoCo: a point on a line moves by ``0.2 * action`` per step and is rewarded
    ``-|position|``; it starts uniformly in [-2, 2] and the best policy heads for 0 at full speed."""

    def __init__(self, num_envs: int, episode_length: int = 20, seed: int = 0) -> None:
        self.num_envs, self.episode_length = num_envs, episode_length
        self.obs_dim = self.critic_obs_dim = self.action_dim = 1
        self.action_low, self.action_high = -torch.ones(1), torch.ones(1)
        self.device = torch.device("cpu")
        self.generator = torch.Generator().manual_seed(seed)
        self.host_shortcuts = True
        self.position = torch.zeros(num_envs)
        self.steps = torch.zeros(num_envs, dtype=torch.int64)
        self.time_limit = torch.full((num_envs,), episode_length)
        self.returns = torch.zeros(num_envs)
        self.finished_returns: list[torch.Tensor] = []  # the returns and lengths of every finished episode, which
        self.finished_lengths: list[torch.Tensor] = []  # a test compares with the agent's episode metrics

    def _observe(self) -> dict[str, torch.Tensor]:
        return {"obs": self.position[:, None].clone(), "critic_obs": self.position[:, None].clone()}

    def _restart(self, worlds: torch.Tensor) -> None:
        start = torch.rand(self.num_envs, generator=self.generator) * 4 - 2
        self.position = torch.where(worlds, start, self.position)
        self.steps.masked_fill_(worlds, 0)
        self.returns.masked_fill_(worlds, 0.0)
        self.time_limit.masked_fill_(worlds, self.episode_length)

    def reset(self, *, staggered: bool = False) -> dict[str, torch.Tensor]:
        self._restart(torch.ones(self.num_envs, dtype=torch.bool))
        if staggered:
            self.time_limit = torch.randint(1, self.episode_length + 1, (self.num_envs,), generator=self.generator)
        return self._observe()

    def step(self, action: torch.Tensor) -> dict[str, torch.Tensor]:
        self.position = self.position + 0.2 * action[:, 0].clamp(-1.0, 1.0)
        reward = -self.position.abs()
        self.steps += 1
        self.returns += reward
        truncated = self.steps >= self.time_limit
        final = self._observe()
        self.finished_returns.append(self.returns[truncated])
        self.finished_lengths.append(self.steps[truncated])
        result = {
            "final_obs": final["obs"],
            "final_critic_obs": final["critic_obs"],
            "reward": reward,
            "terminated": torch.zeros_like(truncated),
            "truncated": truncated,
            "done": truncated,
            "episode_return": self.returns.clone(),
            "episode_length": self.steps.clone(),
        }
        self._restart(truncated)
        return {**result, **self._observe()}


def test_the_mujoco_env_and_a_user_env_satisfy_the_interface():
    env = make_env("CartpoleBalance", 2, device="cpu", backend="mujoco", reset_pool_size=2, num_threads=1)
    assert isinstance(env, BatchedEnv) and isinstance(env, VecEnv)
    assert isinstance(PointToOrigin(2), VecEnv)
    assert not isinstance(object(), VecEnv)


def test_a_user_env_trains_with_the_agent_and_evaluates():
    torch.manual_seed(0)
    env = PointToOrigin(8)
    config = PQNConfig(
        num_envs=8, num_steps=16, num_epochs=2, num_minibatches=4, actor_hidden_sizes=(16,), critic_hidden_sizes=(16,)
    )
    agent = PQN.for_env(env, config, total_timesteps=8 * 16 * 3)
    initial = [parameter.detach().clone() for parameter in agent.parameters()]
    agent.reset(env)
    for _ in range(agent.num_updates):
        agent.train_iteration(env)
    metrics = agent.pop_metrics()

    # the agent's episode metrics are the env's own account of the episodes that ended (staggered first ones)
    returns, lengths = torch.cat(env.finished_returns), torch.cat(env.finished_lengths)
    assert metrics["episodes"] == len(returns) >= 8
    assert metrics["episode_return"] == pytest.approx(returns.mean().item())
    assert metrics["episode_length"] == pytest.approx(lengths.float().mean().item())
    assert all(
        not torch.equal(start, now) and torch.isfinite(now).all()
        for start, now in zip(initial, agent.parameters(), strict=True)
    )
    result = evaluate(agent.act, env)
    assert result.episodes == 8 and (result.lengths == 20).all() and (result.returns < 0).all()

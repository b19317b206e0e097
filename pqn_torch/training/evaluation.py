"""Deterministic evaluation: every env plays one episode with the noise-free actor."""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

import torch

from pqn_torch.algo.pqn import PQN


@dataclass
class EvalResult:
    """Undiscounted returns and lengths of the episodes that finished within the step budget."""

    returns: torch.Tensor
    lengths: torch.Tensor

    @property
    def episodes(self) -> int:
        return int(self.returns.numel())

    @property
    def mean_return(self) -> float:
        return float(self.returns.mean()) if self.episodes else float("nan")

    @property
    def std_return(self) -> float:
        return float(self.returns.std(correction=0)) if self.episodes else float("nan")

    @property
    def mean_length(self) -> float:
        return float(self.lengths.float().mean()) if self.episodes else float("nan")


@torch.no_grad()
def evaluate(agent: PQN, env: Any, num_steps: int | None = None,
             on_step: Callable[[Any], None] | None = None) -> EvalResult:
    """Reset ``env`` and run ``num_steps`` (default: one episode length) deterministic steps.

    Each env contributes its first finished episode; the raw (un-normalized) reward is summed, and
    the agent's observation statistics are used frozen. One host copy, at the end. ``on_step``
    is called with each step's result (e.g. to record a video).
    """
    steps = env.episode_length if num_steps is None else num_steps
    observation = env.reset()["obs"]
    finished = torch.zeros(env.num_envs, dtype=torch.bool, device=env.device)
    returns = torch.zeros(env.num_envs, device=env.device)
    lengths = torch.zeros(env.num_envs, dtype=torch.int64, device=env.device)
    for _ in range(steps):
        result = env.step(agent.act(observation))
        if on_step is not None:
            on_step(result)
        first = result["done"] & ~finished
        returns = torch.where(first, result["episode_return"], returns)
        lengths = torch.where(first, result["episode_length"], lengths)
        finished |= first
        observation = result["obs"]
    finished = finished.cpu()
    return EvalResult(returns=returns.cpu()[finished], lengths=lengths.cpu()[finished])

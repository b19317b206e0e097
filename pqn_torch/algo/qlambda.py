"""Q(lambda) targets: the regression targets of PQN's critic, computed backward over one rollout.

Specification and how it differs from purejaxql: ``docs/algorithm.md#qlambda-targets``.
"""

from __future__ import annotations

import torch


def q_lambda_targets(
    rewards: torch.Tensor,
    values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    last_value: torch.Tensor,
    gamma: float,
    q_lambda: float,
    bootstrap_truncation: bool = True,
    truncation_values: torch.Tensor | None = None,
) -> torch.Tensor:
    """Lambda-returns G [T, N] of a rollout of T steps in N envs.

    Step t's value ``values[t]`` is the ensemble-mean Q of the state and (noisy) action of step t,
    recorded during the rollout (PQN has no target network); ``last_value`` [N] is the value of the
    state after the last step. With ``B_t = values[t+1] + q_lambda * (G_{t+1} - values[t+1])``
    (and ``B_{T-1} = last_value``), the recursion is

    - step t went on:            ``G_t = r_t + gamma * B_t``
    - step t ended the episode:  ``G_t = r_t``

    ``bootstrap_truncation=False`` treats time limits as purejaxql does: a truncation ends the episode
    like a termination (purejaxql's recursion differs at step T-2 only: ``docs/algorithm.md#deviations``).
    ``bootstrap_truncation=True`` keeps the two apart: a truncated step bootstraps from the value of
    the state it really reached, ``G_t = r_t + gamma * truncation_values[t]`` (the next stored state
    belongs to a new episode, so the lambda-return cannot run through it).

    Args:
        rewards, values: [T, N] float.
        terminated, truncated: [T, N] bool; a step is never both (the env guarantees it).
        last_value: [N] float.
        gamma: discount; q_lambda: the lambda of the lambda-return (0 = one-step TD, 1 = Monte Carlo).
        bootstrap_truncation: see above.
        truncation_values: [T, N] value of the pre-reset state reached by each step; read only where
            ``truncated`` (required when ``bootstrap_truncation``).
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [T, N], got shape {tuple(rewards.shape)}")
    for name, tensor in (("values", values), ("terminated", terminated), ("truncated", truncated)):
        if tensor.shape != rewards.shape:
            raise ValueError(f"{name} must have the shape of rewards {tuple(rewards.shape)}, got {tuple(tensor.shape)}")
    if last_value.shape != rewards.shape[1:]:
        raise ValueError(f"last_value must have shape {tuple(rewards.shape[1:])}, got {tuple(last_value.shape)}")
    if bootstrap_truncation and (truncation_values is None or truncation_values.shape != rewards.shape):
        raise ValueError(f"bootstrap_truncation needs truncation_values of shape {tuple(rewards.shape)}")

    targets = torch.empty_like(rewards)
    next_value = last_value
    next_return = last_value
    for step in reversed(range(rewards.shape[0])):
        bootstrap = next_value + q_lambda * (next_return - next_value)
        if bootstrap_truncation:
            assert truncation_values is not None  # checked above
            bootstrap = torch.where(truncated[step], truncation_values[step], bootstrap)
            ended = terminated[step]
        else:
            ended = terminated[step] | truncated[step]
        targets[step] = rewards[step] + gamma * torch.where(ended, 0.0, bootstrap)
        next_value = values[step]
        next_return = targets[step]
    return targets

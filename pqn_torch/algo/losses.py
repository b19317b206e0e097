"""PQN's losses: Huber critic regression over the ensemble, and the actor's -Q plus a gated penalty.

Where they sit in a gradient step: ``docs/algorithm.md#update``.
"""

from __future__ import annotations

import torch


def huber(prediction: torch.Tensor, target: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """Elementwise Huber loss (smooth L1): quadratic ``0.5 x^2 / delta`` inside ``|x| < delta``, linear outside."""
    error = (prediction - target).abs()
    return torch.where(error < delta, 0.5 * error.square() / delta, error - 0.5 * delta)


def critic_loss(q_values: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over the K critics of each one's mean Huber loss; ``q_values`` [K, B], ``targets`` [B]."""
    return huber(q_values, targets.unsqueeze(0)).mean(dim=-1).sum()


def actor_loss(
    q_values: torch.Tensor,
    action: torch.Tensor,
    rollout_action: torch.Tensor,
    action_scale: torch.Tensor,
    action_bias: torch.Tensor,
    threshold: float,
    penalty_coeff: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``mean(-Q + penalty)`` and the fraction of samples whose penalty is active.

    ``action`` is the actor's current output, ``rollout_action`` the deterministic action it gave
    during the rollout, ``q_values`` [B] the ensemble mean at ``action``. The penalty,
    ``penalty_coeff * mean_dims Huber(action, rollout_action)``, applies only to samples that moved
    at least ``threshold`` (mean absolute change in units of the action range), keeping the policy
    near the data the critic was trained on. As in purejaxql, ``action_bias`` is subtracted from
    the change before scaling (a no-op for symmetric action ranges).
    """
    change = ((action - rollout_action - action_bias) / action_scale).abs().mean(dim=-1)
    penalty = huber(action, rollout_action).mean(dim=-1)
    active = change >= threshold
    loss = (-q_values + torch.where(active, penalty_coeff * penalty, 0.0)).mean()
    return loss, active.float().mean()

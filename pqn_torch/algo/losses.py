"""PQN's losses: Huber critic regression over the ensemble, the actor's -Q plus a gated penalty, and an optional
penalty on the actor's pre-tanh outputs.

Where they sit in a gradient step: ``docs/algorithm.md#update``. Each loss has its derivative written out
next to it for the CPU update's hand-written backward pass (``cpu_gradients.py``); ``tests/test_algo.py``
checks them against autograd.
"""

from __future__ import annotations

import torch


def huber(prediction: torch.Tensor, target: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """Elementwise Huber loss (smooth L1): quadratic ``0.5 x^2 / delta`` inside ``|x| < delta``, linear outside."""
    error = (prediction - target).abs()
    return torch.where(error < delta, 0.5 * error.square() / delta, error - 0.5 * delta)


def huber_derivative(prediction: torch.Tensor, target: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """d huber / d prediction: ``x / delta`` inside ``|x| < delta``, else ``sign(x)``; ``x = prediction - target``."""
    return ((prediction - target) / delta).clamp(-1.0, 1.0)


def critic_loss(q_values: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over the K critics of each one's mean Huber loss; ``q_values`` [K, B], ``targets`` [B]."""
    return huber(q_values, targets.unsqueeze(0)).mean(dim=-1).sum()


def critic_loss_gradient(q_values: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """d :func:`critic_loss` / d ``q_values`` [K, B]."""
    return huber_derivative(q_values, targets.unsqueeze(0)) / q_values.shape[-1]


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
    penalty = huber(action, rollout_action).mean(dim=-1)
    active = penalty_active(action, rollout_action, action_scale, action_bias, threshold)
    loss = (-q_values + torch.where(active, penalty_coeff * penalty, 0.0)).mean()
    return loss, active.float().mean()


def actor_loss_gradients(
    action: torch.Tensor, rollout_action: torch.Tensor, active: torch.Tensor, penalty_coeff: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The partial derivatives of :func:`actor_loss`'s loss: (d loss / d ``q_values`` [B], d loss / d ``action``).

    ``action`` enters the loss through the critic's ``q_values`` and through the penalty; the second term is the
    penalty's part only, on the samples where it is ``active`` (:func:`penalty_active`; the gate is a comparison,
    without a gradient).
    """
    batch, action_dim = action.shape
    scale = torch.where(active, penalty_coeff / (batch * action_dim), 0.0).unsqueeze(-1)
    grad_q = torch.full((batch,), -1.0 / batch, dtype=action.dtype, device=action.device)
    return grad_q, huber_derivative(action, rollout_action) * scale


def penalty_active(
    action: torch.Tensor,
    rollout_action: torch.Tensor,
    action_scale: torch.Tensor,
    action_bias: torch.Tensor,
    threshold: float,
) -> torch.Tensor:
    """Which samples' actions moved at least ``threshold`` from the rollout's (see :func:`actor_loss`) [B]."""
    change = ((action - rollout_action - action_bias) / action_scale).abs().mean(dim=-1)
    return change >= threshold


def preactivation_penalty(pre_activation: torch.Tensor, coeff: float) -> torch.Tensor:
    """``coeff * mean(h^2)`` over the actor's pre-tanh outputs ``h`` [B, A] (``actor_preactivation_coeff``).

    Not in purejaxql. A deterministic actor trained through a critic that has seen only actions near its own
    (small exploration noise) follows the critic's extrapolated slope to the corners of the action range, where
    ``tanh`` saturates, its gradient vanishes and the policy stays (docs/algorithm.md, "Deviations"). This keeps
    ``h`` where ``tanh`` still has a slope.
    """
    return coeff * pre_activation.square().mean()


def preactivation_penalty_gradient(pre_activation: torch.Tensor, coeff: float) -> torch.Tensor:
    """d :func:`preactivation_penalty` / d ``pre_activation``: ``2 coeff h / (B A)``."""
    return pre_activation * (2.0 * coeff / pre_activation.numel())

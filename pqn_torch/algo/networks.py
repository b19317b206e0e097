"""Actor and critic-ensemble networks of actor-critic PQN.

Both use purejaxql's hidden block, Linear -> LayerNorm(eps 1e-6) -> ReLU, with orthogonal weights
(gain ``init_scale``) and zero biases (``docs/algorithm.md#networks``). The critic ensemble keeps the
weights of all ``num_critics`` critics in stacked tensors [K, in, out], so one batched matmul per
layer evaluates every critic: no Python loop per critic in the rollout or the update, and a fixed
kernel count for CUDA graphs.
Inside :func:`pqn_torch.algo.cpu_fast_path.enabled` (the agent's phases on the CPU) both networks
take the CPU fast path instead: oneDNN matmuls, and one critic at a time (see ``cpu_fast_path.py``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pqn_torch.algo import cpu_fast_path
from pqn_torch.algo.flat_params import member_leaves

LAYER_NORM_EPS = 1e-6


class Actor(nn.Module):
    """Deterministic policy: MLP -> tanh, scaled and shifted onto the action range [low, high]."""

    action_scale: torch.Tensor
    action_bias: torch.Tensor

    def __init__(
        self,
        obs_dim: int,
        action_low: torch.Tensor,
        action_high: torch.Tensor,
        hidden_sizes: Sequence[int],
        init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = obs_dim
        for hidden in hidden_sizes:
            layers += [
                _orthogonal_linear(width, hidden, init_scale),
                nn.LayerNorm(hidden, eps=LAYER_NORM_EPS),
                nn.ReLU(),
            ]
            width = hidden
        layers.append(_orthogonal_linear(width, action_low.numel(), init_scale))
        self.body = nn.Sequential(*layers)
        low = action_low.detach().float().flatten()
        high = action_high.detach().float().flatten()
        self.register_buffer("action_scale", (high - low) / 2)
        self.register_buffer("action_bias", (high + low) / 2)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Actions [B, action_dim] for observations [B, obs_dim]."""
        if cpu_fast_path.is_enabled():
            hidden = obs
            for layer in self.body:
                hidden = (
                    cpu_fast_path.linear(hidden, layer.weight, layer.bias)
                    if isinstance(layer, nn.Linear)
                    else layer(hidden)
                )
        else:
            hidden = self.body(obs)
        return torch.tanh(hidden) * self.action_scale + self.action_bias


class CriticEnsemble(nn.Module):
    """``num_critics`` independent Q(s, a) MLPs evaluated in one batched call.

    Parameters per layer: ``weights[i]`` [K, in, out], ``biases[i]`` [K, out] and, for hidden layers,
    the LayerNorm affine ``norm_scales[i]``/``norm_shifts[i]`` [K, out].
    """

    def __init__(
        self, obs_dim: int, action_dim: int, hidden_sizes: Sequence[int], num_critics: int, init_scale: float = 1.0
    ) -> None:
        super().__init__()
        self.num_critics = num_critics
        widths = [obs_dim + action_dim, *hidden_sizes, 1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise(widths):
            weight = torch.empty(num_critics, fan_in, fan_out)
            for member in weight:
                nn.init.orthogonal_(member, gain=init_scale)
            self.weights.append(nn.Parameter(weight))
            self.biases.append(nn.Parameter(torch.zeros(num_critics, fan_out)))
        self.norm_scales = nn.ParameterList([nn.Parameter(torch.ones(num_critics, h)) for h in hidden_sizes])
        self.norm_shifts = nn.ParameterList([nn.Parameter(torch.zeros(num_critics, h)) for h in hidden_sizes])
        self._members: tuple[list[Sequence[torch.Tensor]], ...] | None = None
        """Per-critic leaves for the CPU fast path once split: like :meth:`_stacked`, each parameter as its K leaves."""

    def _stacked(self) -> tuple[nn.ParameterList, ...]:
        """The stacked parameters by kind, each per layer: (weights, biases, norm_scales, norm_shifts)."""
        return self.weights, self.biases, self.norm_scales, self.norm_shifts

    def split_members(self) -> None:
        """Give the CPU fast path per-critic leaves that add their gradients in place (``member_leaves``).

        Call once the parameters are flattened (``flatten_parameters``). The CPU fast path then computes on
        these leaves, and the backward pass needs them as its ``inputs``: see :meth:`gradient_inputs`.
        """
        self._members = tuple([member_leaves(parameter) for parameter in kind] for kind in self._stacked())

    def gradient_inputs(self) -> list[torch.Tensor]:
        """The leaves a critic loss's ``backward(inputs=...)`` must name for the way :meth:`forward` computes now."""
        if self._members is not None and cpu_fast_path.is_enabled():
            return [leaf for kind in self._members for leaves in kind for leaf in leaves]
        return list(self.parameters())

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Q-values [K, B] of every critic for observations [B, obs_dim] and actions [B, action_dim]."""
        hidden = torch.cat([obs, action], dim=-1)
        if cpu_fast_path.is_enabled():
            return self._one_critic_at_a_time(hidden)
        for layer, (scale, shift) in enumerate(zip(self.norm_scales, self.norm_shifts, strict=True)):
            hidden = torch.matmul(hidden, self.weights[layer]) + self.biases[layer].unsqueeze(1)
            hidden = F.layer_norm(hidden, hidden.shape[-1:], eps=LAYER_NORM_EPS)
            hidden = torch.relu(hidden * scale.unsqueeze(1) + shift.unsqueeze(1))
        output = torch.matmul(hidden, self.weights[-1]) + self.biases[-1].unsqueeze(1)
        return output.squeeze(-1)

    def _one_critic_at_a_time(self, inputs: torch.Tensor) -> torch.Tensor:
        """The CPU fast path of :meth:`forward`: each critic's layers separately (see ``cpu_fast_path.py``).

        On the per-critic leaves of :meth:`split_members` when split; otherwise ``unbind`` splits each
        stacked parameter into per-critic views once, so the backward pass stacks each parameter's
        gradient once instead of filling a zero tensor per critic.
        """
        members = self._members or tuple([parameter.unbind(0) for parameter in kind] for kind in self._stacked())
        weights, biases, scales, shifts = members
        values = []
        for member in range(self.num_critics):
            hidden = inputs
            for layer in range(len(self.norm_scales)):
                hidden = cpu_fast_path.matmul(hidden, weights[layer][member], biases[layer][member])
                hidden = torch.relu(
                    F.layer_norm(
                        hidden, hidden.shape[-1:], scales[layer][member], shifts[layer][member], eps=LAYER_NORM_EPS
                    )
                )
            values.append(cpu_fast_path.matmul(hidden, weights[-1][member], biases[-1][member]).squeeze(-1))
        return torch.stack(values)

    def mean_q(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Ensemble mean Q [B]: the value PQN acts on and bootstraps from."""
        return self(obs, action).mean(dim=0)


def _orthogonal_linear(fan_in: int, fan_out: int, gain: float) -> nn.Linear:
    layer = nn.Linear(fan_in, fan_out)
    nn.init.orthogonal_(layer.weight, gain=gain)
    nn.init.zeros_(layer.bias)
    return layer

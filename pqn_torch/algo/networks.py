"""Actor and critic-ensemble networks of actor-critic PQN.

Both use purejaxql's hidden block, Linear -> LayerNorm(eps 1e-6) -> ReLU, with orthogonal weights
(gain ``init_scale``) and zero biases (``docs/algorithm.md#networks``). The critic ensemble keeps the
weights of all ``num_critics`` critics in stacked tensors [K, in, out], so one batched matmul per
layer evaluates every critic: no Python loop per critic in the rollout or the update, and a fixed
kernel count for CUDA graphs.
Inside :func:`pqn_torch.algo.cpu_fast_path.enabled` (the agent's phases on the CPU) both networks
take the CPU fast path instead (:func:`fast_forward`): oneDNN matmuls, and one critic at a time (see
``cpu_fast_path.py``).
"""

import itertools
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from pqn_torch.algo import cpu_fast_path

LAYER_NORM_EPS = 1e-6


class Dense(NamedTuple):
    """One layer's tensors, as the CPU update's hand-written backward pass reads and returns them.

    Linear, then (hidden layers) LayerNorm with affine ``norm_weight``/``norm_bias`` and ReLU. ``weight`` is
    [out, in], possibly a transposed view. The parameters (:meth:`Actor.layers`,
    :meth:`CriticEnsemble.member_layers`), or their gradients in the same layout (``cpu_gradients.py``).
    """

    weight: torch.Tensor
    bias: torch.Tensor
    norm_weight: torch.Tensor | None = None
    norm_bias: torch.Tensor | None = None


class Saved(NamedTuple):
    """What one hidden layer's backward pass needs from its forward pass (``cpu_gradients.py``)."""

    inputs: torch.Tensor
    pre_norm: torch.Tensor
    mean: torch.Tensor
    rstd: torch.Tensor
    outputs: torch.Tensor  # after the ReLU


def fast_forward(
    x: torch.Tensor,
    layers: list[Dense],
    eps: float = LAYER_NORM_EPS,  # a parameter: TorchScript reads no globals
) -> tuple[torch.Tensor, list[Saved], torch.Tensor]:
    """The CPU fast path through ``layers`` for ``x`` [B, in]: (output, each hidden layer's :class:`Saved`, last input).

    The networks' fast path and the update's hand-written backward pass both run it, so that both compute the
    same forward pass; matmuls through :func:`cpu_fast_path.linear`. TorchScript compiles it with
    the update's halves (``cpu_gradients.py``).
    """
    saved: list[Saved] = []
    hidden = x
    for layer in layers[:-1]:
        pre_norm = cpu_fast_path.linear(hidden, layer.weight, layer.bias)
        normed, mean, rstd = torch.native_layer_norm(
            pre_norm, pre_norm.shape[-1:], layer.norm_weight, layer.norm_bias, eps
        )
        outputs = torch.relu(normed)
        saved.append(Saved(hidden, pre_norm, mean, rstd, outputs))
        hidden = outputs
    return cpu_fast_path.linear(hidden, layers[-1].weight, layers[-1].bias), saved, hidden


def critic_passes(
    x: torch.Tensor, members: list[list[Dense]]
) -> tuple[torch.Tensor, list[tuple[list[Saved], torch.Tensor]]]:
    """Each critic's :func:`fast_forward` on ``x``: (Q-values [K, B], each pass's saved tensors and last input)."""
    q_values: list[torch.Tensor] = []
    passes: list[tuple[list[Saved], torch.Tensor]] = []
    for layers in members:
        output, saved, last_inputs = fast_forward(x, layers)
        q_values.append(output.squeeze(-1))
        passes.append((saved, last_inputs))
    return torch.stack(q_values), passes


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
        output_init_scale: float | None = None,
    ) -> None:
        """``output_init_scale`` (default: ``init_scale``) is the last layer's gain: a small one starts the policy
        near the middle of the action range (for the robots, their standing pose) instead of a random pose."""
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
        last_scale = init_scale if output_init_scale is None else output_init_scale
        layers.append(_orthogonal_linear(width, action_low.numel(), last_scale))
        self.body = nn.Sequential(*layers)
        self._layer_names = [  # static, so that torch.compile never reads the parameters through them
            tuple(f"body.{index + offset}.{kind}" for offset in (0, 1) for kind in ("weight", "bias"))
            for index in range(0, len(layers) - 1, 3)
        ] + [(f"body.{len(layers) - 1}.weight", f"body.{len(layers) - 1}.bias")]
        low = action_low.detach().float().flatten()
        high = action_high.detach().float().flatten()
        self.register_buffer("action_scale", (high - low) / 2)
        self.register_buffer("action_bias", (high + low) / 2)

    def forward(self, obs: torch.Tensor, layers: list[Dense] | None = None) -> torch.Tensor:
        """Actions [B, action_dim] for observations [B, obs_dim].

        On the CPU fast path ``layers`` may give :meth:`layers` built beforehand (the agent keeps them: speed).
        """
        return self.squash(self.pre_activation(obs, layers))

    def pre_activation(self, obs: torch.Tensor, layers: list[Dense] | None = None) -> torch.Tensor:
        """The last layer's outputs [B, action_dim] before the tanh (``actor_preactivation_coeff`` keeps them small)."""
        if cpu_fast_path.is_enabled():
            return fast_forward(obs, self.layers() if layers is None else layers)[0]
        return self.body(obs)

    def squash(self, pre_activation: torch.Tensor) -> torch.Tensor:
        """tanh onto [-1, 1], then scaled and shifted onto the action range."""
        return torch.tanh(pre_activation) * self.action_scale + self.action_bias

    def layers(self, tensors: Mapping[str, torch.Tensor] | None = None) -> list[Dense]:
        """The layers before the tanh: the parameters, or the same-named ``tensors`` (e.g. views of the gradient)."""
        tensors = dict(self.named_parameters()) if tensors is None else tensors
        return [Dense(*(tensors[name] for name in names)) for names in self._layer_names]


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
        self._layer_names = [  # static, so that torch.compile never reads the parameters through them
            (f"weights.{layer}", f"biases.{layer}", f"norm_scales.{layer}", f"norm_shifts.{layer}")
            for layer in range(len(hidden_sizes))
        ] + [(f"weights.{len(hidden_sizes)}", f"biases.{len(hidden_sizes)}")]

    def member_layers(self, member: int, tensors: Mapping[str, torch.Tensor] | None = None) -> list[Dense]:
        """Critic ``member``'s layers as views of the stacked parameters, or of the same-named ``tensors``."""
        tensors = dict(self.named_parameters()) if tensors is None else tensors
        layers = []
        for names in self._layer_names:
            weight, bias, *norm = (tensors[name][member] for name in names)
            layers.append(Dense(weight.T, bias, *norm))
        return layers

    def forward(
        self, obs: torch.Tensor, action: torch.Tensor, members: list[list[Dense]] | None = None
    ) -> torch.Tensor:
        """Q-values [K, B] of every critic for observations [B, obs_dim] and actions [B, action_dim].

        On the CPU fast path ``members`` may give each critic's :meth:`member_layers` built beforehand (speed).
        """
        hidden = torch.cat([obs, action], dim=-1)
        if cpu_fast_path.is_enabled():
            if members is None:
                parameters = dict(self.named_parameters())
                members = [self.member_layers(member, parameters) for member in range(self.num_critics)]
            return critic_passes(hidden, members)[0]
        for layer, (scale, shift) in enumerate(zip(self.norm_scales, self.norm_shifts, strict=True)):
            hidden = torch.matmul(hidden, self.weights[layer]) + self.biases[layer].unsqueeze(1)
            hidden = F.layer_norm(hidden, hidden.shape[-1:], eps=LAYER_NORM_EPS)
            hidden = torch.relu(hidden * scale.unsqueeze(1) + shift.unsqueeze(1))
        output = torch.matmul(hidden, self.weights[-1]) + self.biases[-1].unsqueeze(1)
        return output.squeeze(-1)

    def mean_q(self, obs: torch.Tensor, action: torch.Tensor, members: list[list[Dense]] | None = None) -> torch.Tensor:
        """Ensemble mean Q [B]: the value PQN acts on and bootstraps from (``members``: as :meth:`forward`)."""
        return self(obs, action, members).mean(dim=0)


def _orthogonal_linear(fan_in: int, fan_out: int, gain: float) -> nn.Linear:
    layer = nn.Linear(fan_in, fan_out)
    nn.init.orthogonal_(layer.weight, gain=gain)
    nn.init.zeros_(layer.bias)
    return layer

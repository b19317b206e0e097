"""The CPU update's gradients by a hand-written backward pass instead of autograd.

Speed trick (CPU): a gradient step of the CPU preset runs hundreds of small ops, and on the CPU each
costs a few microseconds of dispatch besides its arithmetic; autograd adds a graph node, saved
tensors and a gradient accumulation for most of them. Here each layer's backward pass is written out
with the aten kernels autograd would call (``native_layer_norm_backward``, ``threshold_backward``,
``tanh_backward``; matmuls through :func:`cpu_fast_path.linear`), everything runs under ``no_grad``,
and gradients nobody reads are never computed: the critic's parameter gradients on the actor's
path (autograd computed and dropped them, 2 of a gradient step's 15 large matmuls), a network's
gradient with respect to its own input. The actor's half (its loss through the critic) and the
critic's half (its loss on the rollout actions) write disjoint gradients and only read the
parameters, so ``second_thread`` can run the actor's half next to the critic's (``split_update``);
each half runs the same ops either way. The function is pure (parameters in, gradients out), which
is what lets ``compile=true`` compile it on the CPU (:func:`flat_minibatch_gradients`, without the
second thread).

Tried and not kept: one pass per critic over the rollout actions and the actor's actions together
(2B rows, parameter gradients from the first B): ~7 % faster on one thread at the CPU preset's sizes,
but a second thread could then only take a critic, leaving the actor's passes serial, and at the DM
preset's sizes the split step was ~15 % slower than these two halves.

Same math as autograd on :mod:`pqn_torch.algo.losses` and :mod:`pqn_torch.algo.networks`, up to the
order of roundings; ``tests/test_algo.py`` compares the gradients with autograd's. The agent uses it
for its CPU update (:class:`pqn_torch.algo.pqn.PQN`); on CUDA it uses autograd.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from typing import NamedTuple

import torch

from pqn_torch.algo import cpu_fast_path
from pqn_torch.algo.flat_params import Layout, named_views
from pqn_torch.algo.losses import (
    actor_loss,
    actor_loss_gradients,
    critic_loss,
    critic_loss_gradient,
    penalty_active,
)
from pqn_torch.algo.networks import Actor, CriticEnsemble, Dense, Saved, fast_forward

_aten = torch.ops.aten


class Batch(NamedTuple):
    """A minibatch of the rollout, as a gradient step reads it."""

    obs: torch.Tensor
    critic_obs: torch.Tensor
    action: torch.Tensor  # the explored action the rollout took
    rollout_action: torch.Tensor  # the actor's deterministic action during the rollout
    target: torch.Tensor


class Losses(NamedTuple):
    """A gradient step's losses and what its metrics need."""

    critic_loss: torch.Tensor
    q_values: torch.Tensor  # [K, B], of the rollout actions
    actor_loss: torch.Tensor
    penalty_fraction: torch.Tensor


class Networks(NamedTuple):
    """Both networks' layers (:class:`Dense`): the parameters a gradient step reads, or the gradients it returns.

    Speed (CPU): built once as views of each network's flat parameters and flat gradient
    (:func:`network_views`), they spare each gradient step slicing its inputs out of the flat tensors and
    concatenating its gradients into them; one ``_foreach_copy_`` writes a step's gradients (:func:`tensors`).
    """

    actor: list[Dense]  # the layers before the tanh
    critics: list[list[Dense]]  # each critic's layers


def network_views(
    actor: Actor,
    critic: CriticEnsemble,
    actor_flat: torch.Tensor,
    critic_flat: torch.Tensor,
    layouts: tuple[Layout, Layout],
) -> Networks:
    """The layers as views of ``actor_flat``/``critic_flat``: flat parameters or gradients, laid out as ``layouts``."""
    critic_tensors = named_views(critic_flat, layouts[1])
    members = [critic.member_layers(member, critic_tensors) for member in range(critic.num_critics)]
    return Networks(actor.layers(named_views(actor_flat, layouts[0])), members)


def tensors(networks: Networks) -> list[torch.Tensor]:
    """Every tensor of ``networks``, in one fixed order (two :class:`Networks` of the same shapes pair up)."""
    layers = [*networks.actor, *(layer for member in networks.critics for layer in member)]
    return [tensor for layer in layers for tensor in layer if tensor is not None]


@torch.no_grad()
def minibatch_gradients(
    actor: Actor,
    critic: CriticEnsemble,
    parameters: Networks,
    batch: Batch,
    penalty_threshold: float,
    penalty_coeff: float,
    second_thread: Executor | None = None,
) -> tuple[Losses, Networks]:
    """A gradient step's losses and their gradients, laid out as ``parameters`` (:func:`network_views`).

    The actor's loss is differentiated through the critic's current parameters and gives the critic no
    gradient; the critic's gradient is of its loss on the rollout actions. ``actor``/``critic`` give the
    action range and the ensemble size. ``second_thread`` (an executor with one torch thread) runs the
    actor's half.
    """
    members = parameters.critics
    num_critics = len(members)

    def critic_half() -> tuple[torch.Tensor, torch.Tensor, list[list[Dense]]]:
        """The critic's loss on the rollout actions: (loss, Q-values [K, B], each critic's gradients)."""
        inputs = torch.cat([batch.critic_obs, batch.action], -1)
        passes = [fast_forward(inputs, layers) for layers in members]
        q_values = torch.stack([output.squeeze(-1) for output, _, _ in passes])
        grad_q = critic_loss_gradient(q_values, batch.target)
        gradients = [
            _backward(grad.unsqueeze(-1), layers, saved, last_inputs, input_gradient=False)[0]
            for layers, (_, saved, last_inputs), grad in zip(members, passes, grad_q, strict=True)
        ]
        return critic_loss(q_values, batch.target), q_values, gradients

    def actor_half() -> tuple[torch.Tensor, torch.Tensor, list[Dense]]:
        """The actor's loss through the critic: (loss, penalty fraction, its gradients); no critic gradient."""
        with torch.no_grad():  # grad mode is per thread, and this may run on the second one
            scale, bias = actor.action_scale, actor.action_bias
            layers = parameters.actor
            pre_tanh, saved, last_inputs = fast_forward(batch.obs, layers)
            squashed = torch.tanh(pre_tanh)
            action = squashed * scale + bias
            inputs = torch.cat([batch.critic_obs, action], -1)
            passes = [fast_forward(inputs, member) for member in members]
            q_mean = torch.stack([output.squeeze(-1) for output, _, _ in passes]).mean(0)
            loss, penalty_fraction = actor_loss(
                q_mean, action, batch.rollout_action, scale, bias, penalty_threshold, penalty_coeff
            )
            active = penalty_active(action, batch.rollout_action, scale, bias, penalty_threshold)
            grad_mean_q, grad_action = actor_loss_gradients(action, batch.rollout_action, active, penalty_coeff)
            grad_q = (grad_mean_q / num_critics).unsqueeze(-1)  # d mean / d member = 1/K
            obs_width = batch.critic_obs.shape[-1]
            for member, (_, member_saved, member_inputs) in zip(members, passes, strict=True):
                grad_inputs = _backward(grad_q, member, member_saved, member_inputs, parameters=False)[1]
                assert grad_inputs is not None  # input_gradient=True
                grad_action = grad_action + grad_inputs[:, obs_width:]
            grad_pre_tanh = _aten.tanh_backward(grad_action * scale, squashed)
            gradients = _backward(grad_pre_tanh, layers, saved, last_inputs, input_gradient=False)[0]
            return loss, penalty_fraction, gradients

    if second_thread is None:
        policy_loss, penalty_fraction, actor_gradients = actor_half()
        value_loss, q_values, critic_gradients = critic_half()
    else:  # speed (CPU): the halves write disjoint gradients and only read the parameters; the actor's there
        actor_future = second_thread.submit(actor_half)
        value_loss, q_values, critic_gradients = critic_half()
        policy_loss, penalty_fraction, actor_gradients = actor_future.result()
    losses = Losses(value_loss, q_values, policy_loss, penalty_fraction)
    return losses, Networks(actor_gradients, critic_gradients)


def flat_minibatch_gradients(
    actor: Actor,
    critic: CriticEnsemble,
    actor_flat: torch.Tensor,
    critic_flat: torch.Tensor,
    layouts: tuple[Layout, Layout],
    batch: Batch,
    penalty_threshold: float,
    penalty_coeff: float,
) -> tuple[Losses, Networks]:
    """:func:`minibatch_gradients` of the flat parameters: what ``compile=true`` compiles, a pure function.

    Its only tensor inputs are the flat tensors and the batch (dynamo guards views of views badly).
    """
    parameters = network_views(actor, critic, actor_flat, critic_flat, layouts)
    return minibatch_gradients(actor, critic, parameters, batch, penalty_threshold, penalty_coeff)


def _backward(
    grad_output: torch.Tensor,
    layers: Sequence[Dense],
    saved: Sequence[Saved],
    last_inputs: torch.Tensor,
    parameters: bool = True,
    input_gradient: bool = True,
) -> tuple[list[Dense], torch.Tensor | None]:
    """Backpropagate ``grad_output`` (d loss / d output [B, out]) through the layers of :func:`networks.fast_forward`.

    Returns the parameters' gradients (if ``parameters``; else none are computed and the list is empty),
    each in its parameter's memory layout, and d loss / d ``x`` if ``input_gradient`` (else ``None``: the
    first layer's input gradient is not computed).
    """
    grad = grad_output
    inputs = last_inputs
    gradients: list[Dense] = []
    for index in reversed(range(len(layers))):
        layer = layers[index]
        norm_gradients: list[torch.Tensor] = []
        if index < len(layers) - 1:  # a hidden layer: back through the ReLU and the LayerNorm
            record = saved[index]
            inputs = record.inputs
            grad_normed = _aten.threshold_backward(grad, record.outputs, 0)
            grad, *norm_gradients = _aten.native_layer_norm_backward(
                grad_normed,
                record.pre_norm,
                record.pre_norm.shape[-1:],
                record.mean,
                record.rstd,
                layer.norm_weight,
                layer.norm_bias,
                [True, parameters, parameters],
            )
        if parameters:
            weight = _weight_gradient(layer.weight, grad, inputs)
            gradients.insert(0, Dense(weight, grad.sum(0), *norm_gradients))
        if index > 0 or input_gradient:
            grad = cpu_fast_path.linear(grad, layer.weight.T)
    return gradients, grad if input_gradient else None


def _weight_gradient(weight: torch.Tensor, grad: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """d loss / d ``weight`` [out, in] = ``grad.T @ inputs``, computed in ``weight``'s memory layout."""
    if weight.is_contiguous():
        return cpu_fast_path.linear(grad.T, inputs.T)
    return cpu_fast_path.linear(inputs.T, grad.T).T  # a transposed view, as the critics' [in, out] weights give

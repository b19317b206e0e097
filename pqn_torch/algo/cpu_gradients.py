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
each half runs the same ops either way. The eager agent runs both halves compiled by TorchScript
(:func:`scripted_halves`): C++ without the GIL, so that the two threads stop waiting on each other's
dispatch. The function is pure (parameters in, gradients out), which is what lets ``compile=true``
compile it on the CPU (:func:`flat_minibatch_gradients`, the Python halves, without the second thread).

Tried and not kept: one pass per critic over the rollout actions and the actor's actions together
(2B rows, parameter gradients from the first B): ~7 % faster on one thread at the CPU preset's sizes,
but a second thread could then only take a critic, leaving the actor's passes serial, and at the DM
preset's sizes the split step was ~15 % slower than these two halves.

Same math as autograd on :mod:`pqn_torch.algo.losses` and :mod:`pqn_torch.algo.networks`, up to the
order of roundings; ``tests/test_algo.py`` compares the gradients with autograd's. The agent uses it
for its CPU update (:class:`pqn_torch.algo.pqn.PQN`); on CUDA it uses autograd.
"""

import warnings
from collections.abc import Callable
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
    preactivation_penalty,
    preactivation_penalty_gradient,
)
from pqn_torch.algo.networks import Actor, CriticEnsemble, Dense, Saved, critic_passes, fast_forward


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
    """Both networks' layers (:class:`Dense`): the parameters a gradient step reads, or views of the gradients.

    Speed (CPU): built once as views of each network's flat parameters and flat gradient
    (:func:`network_views`), they spare each gradient step slicing its inputs out of the flat tensors and
    concatenating its gradients into them; one ``_foreach_copy_`` writes a step's gradients, which it
    returns as one list of tensors in the order of :func:`tensors`.
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
    """Every tensor of ``networks``, in one fixed order: the actor's layers, then each critic's."""
    return layer_tensors(networks.actor) + [tensor for member in networks.critics for tensor in layer_tensors(member)]


def layer_tensors(layers: list[Dense]) -> list[torch.Tensor]:
    """The tensors of ``layers`` in order, each layer's weight, bias and (hidden layers) LayerNorm affine."""
    flat: list[torch.Tensor] = []
    for layer in layers:
        flat += [layer.weight, layer.bias]
        norm_weight, norm_bias = layer.norm_weight, layer.norm_bias  # locals: TorchScript refines their Optional
        if norm_weight is not None and norm_bias is not None:
            flat += [norm_weight, norm_bias]
    return flat


class Halves(NamedTuple):
    """The two halves of a gradient step: :func:`critic_half` and :func:`actor_half`, or their TorchScript."""

    critic: Callable[..., tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]]
    actor: Callable[..., tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]]


def critic_half(members: list[list[Dense]], batch: Batch) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """The critic's loss on the rollout actions: (loss, Q-values [K, B], each critic's gradients in turn).

    The gradients come as one list (:func:`layer_tensors` of each critic): from TorchScript, a list of
    tensors returns to Python in ~1 us, a list of NamedTuples in ~10 us per tuple.
    """
    stacked, passes = critic_passes(torch.cat([batch.critic_obs, batch.action], -1), members)
    grad_q = critic_loss_gradient(stacked, batch.target)
    gradients: list[torch.Tensor] = []
    for member, layers in enumerate(members):
        saved, last_inputs = passes[member]
        gradients += layer_tensors(_backward(grad_q[member].unsqueeze(-1), layers, saved, last_inputs, True, False)[0])
    return critic_loss(stacked, batch.target), stacked, gradients


def actor_half(
    layers: list[Dense],
    members: list[list[Dense]],
    batch: Batch,
    action_scale: torch.Tensor,
    action_bias: torch.Tensor,
    penalty_threshold: float,
    penalty_coeff: float,
    preactivation_coeff: float,
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """The actor's loss through the critic, plus :func:`preactivation_penalty`: (loss, penalty fraction, its
    gradients as :func:`layer_tensors`).

    The critic gets no gradient.
    """
    with torch.no_grad():  # grad mode is per thread, and this may run on the second one
        pre_tanh, saved, last_inputs = fast_forward(batch.obs, layers)
        squashed = torch.tanh(pre_tanh)
        action = squashed * action_scale + action_bias
        q_values, passes = critic_passes(torch.cat([batch.critic_obs, action], -1), members)
        q_mean = q_values.mean(0)
        loss, penalty_fraction = actor_loss(
            q_mean, action, batch.rollout_action, action_scale, action_bias, penalty_threshold, penalty_coeff
        )
        active = penalty_active(action, batch.rollout_action, action_scale, action_bias, penalty_threshold)
        grad_mean_q, grad_action = actor_loss_gradients(action, batch.rollout_action, active, penalty_coeff)
        grad_q = (grad_mean_q / len(members)).unsqueeze(-1)  # d mean / d member = 1/K
        obs_width = batch.critic_obs.shape[-1]
        for index, member in enumerate(members):
            member_saved, member_inputs = passes[index]
            grad_inputs = _backward(grad_q, member, member_saved, member_inputs, False, True)[1]
            assert grad_inputs is not None  # input_gradient=True
            grad_action = grad_action + grad_inputs[:, obs_width:]
        grad_pre_tanh = torch.ops.aten.tanh_backward(grad_action * action_scale, squashed)
        if preactivation_coeff > 0:
            loss = loss + preactivation_penalty(pre_tanh, preactivation_coeff)
            grad_pre_tanh = grad_pre_tanh + preactivation_penalty_gradient(pre_tanh, preactivation_coeff)
        gradients = _backward(grad_pre_tanh, layers, saved, last_inputs, True, False)[0]
        return loss, penalty_fraction, layer_tensors(gradients)


@torch.no_grad()
def minibatch_gradients(
    actor: Actor,
    critic: CriticEnsemble,
    parameters: Networks,
    batch: Batch,
    penalty_threshold: float,
    penalty_coeff: float,
    preactivation_coeff: float = 0.0,
    second_thread: Executor | None = None,
    halves: Halves | None = None,
) -> tuple[Losses, list[torch.Tensor]]:
    """A gradient step's losses and their gradients, as the tensors of ``parameters`` (:func:`tensors`).

    The actor's loss is differentiated through the critic's current parameters and gives the critic no
    gradient; the critic's gradient is of its loss on the rollout actions. ``actor``/``critic`` give the
    action range and the ensemble size. ``second_thread`` (an executor with one torch thread) runs the
    actor's half. ``halves`` are :func:`critic_half` and :func:`actor_half` as given (:func:`scripted_halves`);
    by default these Python functions.
    """
    critic_step, actor_step = halves if halves is not None else Halves(critic_half, actor_half)
    actor_arguments = (
        parameters.actor,
        parameters.critics,
        batch,
        actor.action_scale,
        actor.action_bias,
        penalty_threshold,
        penalty_coeff,
        preactivation_coeff,
    )
    if second_thread is None:
        policy_loss, penalty_fraction, actor_gradients = actor_step(*actor_arguments)
        value_loss, q_values, critic_gradients = critic_step(parameters.critics, batch)
    else:  # speed (CPU): the halves write disjoint gradients and only read the parameters; the actor's there
        actor_future = second_thread.submit(actor_step, *actor_arguments)
        value_loss, q_values, critic_gradients = critic_step(parameters.critics, batch)
        policy_loss, penalty_fraction, actor_gradients = actor_future.result()
    losses = Losses(value_loss, q_values, policy_loss, penalty_fraction)
    return losses, actor_gradients + critic_gradients


def scripted_halves() -> Halves | None:
    """:func:`critic_half` and :func:`actor_half` compiled by TorchScript; ``None`` without oneDNN or if that fails.

    Speed trick (CPU): besides its 10 large matmuls a gradient step is ~100 small ops, and from Python
    each op holds the GIL while it is dispatched: with the actor's half on the second thread the two
    halves kept waiting for each other, and the split step took ~1.5 ms where each half alone took
    ~0.9 ms (CPU preset, 2-core dev VM). TorchScript runs a half in C++ with the GIL released, the same
    aten kernels in the same order (the same bits; ``tests/test_algo.py`` compares them): each half
    ~10 % faster alone, and the split step ~1.0 ms. TorchScript is deprecated in favour of
    ``torch.compile``, whose generated CPU kernels are called with the GIL held, so nothing replaces it
    yet; where scripting fails (a future torch) the Python halves run, with one warning.
    """
    if not cpu_fast_path.AVAILABLE:  # linear's TorchScript branch calls the oneDNN op unconditionally
        return None
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.script.*deprecated", category=DeprecationWarning)
            return Halves(torch.jit.script(critic_half), torch.jit.script(actor_half))
    except Exception as error:  # noqa: BLE001 - any failure leaves the Python functions, which compute the same
        reason = f"{type(error).__name__}: {str(error).strip().splitlines()[0]}"
        warnings.warn(
            f"TorchScript could not compile the CPU update's halves, they run in Python ({reason})", stacklevel=2
        )
        return None


def flat_minibatch_gradients(
    actor: Actor,
    critic: CriticEnsemble,
    actor_flat: torch.Tensor,
    critic_flat: torch.Tensor,
    layouts: tuple[Layout, Layout],
    batch: Batch,
    penalty_threshold: float,
    penalty_coeff: float,
    preactivation_coeff: float,
) -> tuple[Losses, list[torch.Tensor]]:
    """:func:`minibatch_gradients` of the flat parameters: what ``compile=true`` compiles, a pure function.

    Its only tensor inputs are the flat tensors and the batch (dynamo guards views of views badly).
    """
    parameters = network_views(actor, critic, actor_flat, critic_flat, layouts)
    return minibatch_gradients(actor, critic, parameters, batch, penalty_threshold, penalty_coeff, preactivation_coeff)


def _backward(
    grad_output: torch.Tensor,
    layers: list[Dense],
    saved: list[Saved],
    last_inputs: torch.Tensor,
    parameters: bool,
    input_gradient: bool,
) -> tuple[list[Dense], torch.Tensor | None]:
    """Backpropagate ``grad_output`` (d loss / d output [B, out]) through the layers of :func:`networks.fast_forward`.

    Returns the parameters' gradients (if ``parameters``; else none are computed and the list is empty),
    each in its parameter's memory layout, and d loss / d ``x`` if ``input_gradient`` (else ``None``: the
    first layer's input gradient is not computed).
    """
    grad = grad_output
    inputs = last_inputs
    gradients: list[Dense] = []
    for index in range(len(layers) - 1, -1, -1):
        layer = layers[index]
        norm_weight: torch.Tensor | None = None
        norm_bias: torch.Tensor | None = None
        if index < len(layers) - 1:  # a hidden layer: back through the ReLU and the LayerNorm
            record = saved[index]
            inputs = record.inputs
            grad_normed = torch.ops.aten.threshold_backward(grad, record.outputs, 0)
            grad, norm_weight, norm_bias = torch.ops.aten.native_layer_norm_backward(
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
            gradients.insert(0, Dense(weight, grad.sum(0), norm_weight, norm_bias))
        if index > 0 or input_gradient:
            grad = cpu_fast_path.linear(grad, layer.weight.T)
    return gradients, grad if input_gradient else None


def _weight_gradient(weight: torch.Tensor, grad: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """d loss / d ``weight`` [out, in] = ``grad.T @ inputs``, computed in ``weight``'s memory layout."""
    if weight.is_contiguous():
        return cpu_fast_path.linear(grad.T, inputs.T)
    return cpu_fast_path.linear(inputs.T, grad.T).T  # a transposed view, as the critics' [in, out] weights give

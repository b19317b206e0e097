"""Data-parallel training with ``torch.distributed``: one agent trained by several processes (ranks).

Launched by ``torchrun`` (which sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``), every rank steps
its own ``alg.num_envs`` worlds on its own device (``cuda:<LOCAL_RANK>`` with CUDA, the CPU otherwise)
and holds a full copy of the agent. The copies stay identical because every rank starts from rank 0's
weights (:func:`broadcast_module`), applies the same averaged gradients (:func:`average_gradients`) and
normalizes with the same statistics (:func:`merge_moments`). Collectives run over NCCL on CUDA and
Gloo on the CPU.

A rank that dies (killed, out of memory, its machine gone) makes the others' next collective fail;
:func:`lost_peer` recognises that error, so the trainer can save what the survivors have and say so in
one line (:class:`RanksLost`) instead of a backend traceback.

Without ``torchrun`` (``WORLD_SIZE`` unset or 1) :func:`init_from_env` initialises nothing and every
helper here is the identity: the single-process path does exactly what it did before.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")
LOST_PEER_SIGNS = ("closed by peer", "reset by peer", "broken pipe")
"""Lower-case fragments of the errors Gloo raises (plain ``RuntimeError``s) when another rank is gone."""


class RanksLost(RuntimeError):
    """Another rank stopped mid-run (its collective failed); the message says what was saved and how to resume."""


def lost_peer(error: BaseException) -> bool:
    """Whether ``error``, raised while several ranks train, is a collective failing because another rank is gone."""
    message = str(error).lower()
    gloo_lost = "gloo" in message and any(sign in message for sign in LOST_PEER_SIGNS)
    return isinstance(error, dist.DistError) or gloo_lost


@dataclass(frozen=True)
class Context:
    """Where this process stands: ``rank`` of ``world_size`` ranks, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone evaluates, logs, shows progress and writes the run dir."""
        return self.rank == 0


def launched_world_size() -> int:
    """How many ranks ``torchrun`` started (1 without it); readable before the process group exists."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_as_main() -> bool:
    """Whether this process is rank 0 (or alone); readable before the process group exists."""
    return int(os.environ.get("RANK", "0")) == 0


def init_from_env(device: torch.device) -> Context:
    """Join the process group ``torchrun`` describes in the environment; without it a single-rank context.

    ``device`` is the run's device type: with CUDA each rank takes ``cuda:<LOCAL_RANK>`` and NCCL,
    on the CPU Gloo. Returns the context; :func:`rank_device` gives the rank's device.
    """
    world_size = launched_world_size()
    if world_size <= 1:
        return Context()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Context(rank=rank, world_size=world_size, local_rank=local_rank)


def rank_device(device: torch.device, context: Context) -> torch.device:
    """The device of this rank: ``cuda:<local_rank>`` when ``device`` is CUDA and several ranks run."""
    if device.type == "cuda" and context.world_size > 1:
        return torch.device("cuda", context.local_rank)
    return device


def active() -> bool:
    """Whether this process trains together with others."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def shut_down() -> None:
    """Leave the process group (a no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def average_gradients(parameters: Iterable[nn.Parameter] | Sequence[torch.Tensor]) -> None:
    """Replace each gradient by its mean over the ranks, with ONE ``all_reduce`` per call.

    Gradients that live in one flat buffer (pass that buffer as the only tensor) are reduced in place;
    separate ones are packed into one buffer, reduced and copied back. A no-op on a single rank.
    """
    if not active():
        return
    maybe_grads = [p.grad if isinstance(p, nn.Parameter) else p for p in parameters]
    grads = [g for g in maybe_grads if g is not None]
    world_size = dist.get_world_size()
    if len(grads) == 1:
        dist.all_reduce(grads[0])
        grads[0].div_(world_size)
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat.div_(world_size)
    for grad, part in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
        grad.copy_(part.view_as(grad))


def merge_moments(
    count: int, mean: torch.Tensor, var: torch.Tensor
) -> tuple[torch.Tensor | int, torch.Tensor, torch.Tensor]:
    """The (count, mean, population variance) of all ranks' batches together, identical on every rank.

    Each rank writes its own float64 moments into its row of a ``[world_size, 1 + 2 D]`` table, one
    ``all_reduce`` (a sum: the other rows are zeros) gives every rank the whole table, and the rows
    are merged in rank order with the exact parallel-variance formula (Chan et al.), so the result
    equals the moments of the concatenated batches. A single rank gets its arguments back.
    """
    if not active():
        return count, mean, var
    world_size, rank = dist.get_world_size(), dist.get_rank()
    flat_mean, flat_var = mean.reshape(-1), var.reshape(-1)
    table = torch.zeros(world_size, 1 + 2 * flat_mean.numel(), dtype=torch.float64, device=mean.device)
    own_count = torch.full((1,), count, dtype=torch.float64, device=mean.device)  # not a host-built tensor
    table[rank].copy_(torch.cat([own_count, flat_mean.to(torch.float64), flat_var.to(torch.float64)]))
    dist.all_reduce(table)
    counts, means, variances = table[:, :1], table[:, 1 : 1 + flat_mean.numel()], table[:, 1 + flat_mean.numel() :]
    total = counts.sum()
    merged_mean = (counts * means).sum(dim=0) / total
    merged_var = (counts * (variances + (means - merged_mean).square())).sum(dim=0) / total
    return total, merged_mean.view_as(mean), merged_var.view_as(var)


def broadcast_module(module: nn.Module) -> None:
    """Give every rank rank 0's parameters and buffers (called once, before training)."""
    if not active():
        return
    for tensor in (*module.parameters(), *module.buffers()):
        dist.broadcast(tensor.data, src=0)


def sum_across_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over the ranks, in place (the identity on a single rank)."""
    if active():
        dist.all_reduce(tensor)
    return tensor


def broadcast_object(value: T) -> T:
    """Rank 0's ``value`` on every rank (``value`` itself on a single rank)."""
    if not active():
        return value
    values = [value]
    dist.broadcast_object_list(values, src=0)
    return values[0]


def gather_objects(value: T) -> list[T]:
    """Every rank's ``value``, in rank order, on every rank (``[value]`` on a single rank)."""
    if not active():
        return [value]
    values: list[T] = [value] * dist.get_world_size()  # placeholders, overwritten by the gather
    dist.all_gather_object(values, value)
    return values

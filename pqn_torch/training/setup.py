"""The one set-up of a training agent, shared by ``train.py``'s runs and ``benchmark.py train``.

So that a benchmark times what training runs: the same ranks and device, physics backend, fast-path
switches (``compile``, ``cuda_graphs``, ``split_update``), torch threads, per-rank env and seed, and agent.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pqn_torch import distributed
from pqn_torch.algo.pqn import PQN
from pqn_torch.envs import BatchedEnv, make_env, resolve_device
from pqn_torch.envs.physics import resolve_backend
from pqn_torch.training.settings import RunSettings, resolve_graphs_switch, resolve_switch


@dataclass
class AgentSetup:
    """What :func:`set_up_agent` resolved and built: this rank's env (``alg.num_envs`` worlds) and the agent."""

    backend: str
    compile: bool
    cuda_graphs: bool
    env: BatchedEnv
    agent: PQN


def start_ranks(settings: RunSettings) -> tuple[distributed.Context, torch.device]:
    """This process's place among the ranks (torchrun; one rank without it) and its device."""
    device = resolve_device(settings.device)
    ranks = distributed.init_from_env(device)
    return ranks, distributed.rank_device(device, ranks)


def set_up_agent(settings: RunSettings, ranks: distributed.Context, device: torch.device, timesteps: int) -> AgentSetup:
    """This rank's env and a fresh agent whose schedules span ``timesteps`` env steps of this rank.

    The caller restores a checkpoint if any, then ``distributed.broadcast_module(agent)`` (rank 0's weights
    for all) and ``agent.reset(env)``.
    """
    backend = resolve_backend(settings.backend, device)
    use_compile = resolve_switch(settings.compile, device)
    use_graphs = resolve_graphs_switch(settings.cuda_graphs, device, ranks.world_size)
    if device.type == "cpu":
        torch.set_num_threads(settings.torch_threads)
    # Each rank explores its own worlds with its own noise (seed + rank); rank 0's weights are broadcast.
    env = make_env(
        settings.task,
        settings.alg.num_envs,
        device,
        backend,
        settings.seed + ranks.rank,
        num_threads=settings.num_threads,
        **settings.task_overrides,
    )
    torch.manual_seed(settings.seed + ranks.rank)
    agent = PQN.for_env(
        env, settings.alg, timesteps, compile=use_compile, cuda_graphs=use_graphs, split_update=settings.split_update
    )
    return AgentSetup(backend, use_compile, use_graphs, env, agent)

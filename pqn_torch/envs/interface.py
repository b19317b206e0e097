"""What the agent and the evaluation need of an env: :class:`VecEnv`, which :class:`~pqn_torch.envs.BatchedEnv`
implements and any user env can implement too (pure torch is enough; no MuJoCo needed)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class VecEnv(Protocol):
    """``num_envs`` parallel episodes stepped together as torch tensors, with autoreset.

    :meth:`PQN.for_env <pqn_torch.algo.PQN.for_env>`, :meth:`PQN.reset`, :meth:`PQN.collect` and
    :func:`~pqn_torch.training.evaluation.evaluate` use exactly these members. ``isinstance(env, VecEnv)``
    checks that they exist (not their types).

    :meth:`step` returns a mapping (a ``TensorDict`` or a plain ``dict``) of tensors on :attr:`device`,
    ``N = num_envs``:

    ============================  =============================  ==================================================
    key                           shape, dtype                   meaning
    ============================  =============================  ==================================================
    ``obs``                       [N, obs_dim] float32           actor observation after the step; for a world whose
                                                                 episode ended, the first of its next episode
    ``critic_obs``                [N, critic_obs_dim] float32    the critic's (privileged) observation, likewise
    ``final_obs``                 [N, obs_dim] float32           the observation the step reached, before any reset
                                                                 (read when ``alg.bootstrap_truncation``)
    ``final_critic_obs``          [N, critic_obs_dim] float32    likewise for the critic
    ``reward``                    [N] float32                    reward of the step
    ``terminated``                [N] bool                       the episode ended in a terminal state (no bootstrap)
    ``truncated``                 [N] bool                       the episode hit its time limit (not terminated)
    ``done``                      [N] bool                       ``terminated | truncated``; those worlds were reset
    ``episode_return``            [N] float32                    undiscounted return of the episode up to this step
    ``episode_length``            [N] int64                      steps of the episode up to this step
    ``episode_reward_terms``      [N, K] float32                 optional: each reward term summed over the episode
                                                                 up to this step, K = ``len(env.reward_term_names)``
    ============================  =============================  ==================================================

    :meth:`reset` returns ``obs`` and ``critic_obs`` as above. An env with no privileged observation
    returns its ``obs`` as ``critic_obs`` too (``critic_obs_dim == obs_dim``).

    With ``cuda_graphs`` the agent captures the rollout, env steps included, in a CUDA graph: :meth:`step`
    must then make no host sync, never rebind the tensors it keeps, and draw its random numbers from
    :attr:`generator`; with ``host_shortcuts`` off the agent keeps to that contract too.
    """

    num_envs: int
    """Number of parallel worlds N."""
    obs_dim: int
    """Size of the actor's observation."""
    critic_obs_dim: int
    """Size of the critic's observation."""
    action_dim: int
    """Size of an action."""
    action_low: torch.Tensor
    """[action_dim] float32 lower bound of each action entry; the actor's outputs span ``[low, high]``."""
    action_high: torch.Tensor
    """[action_dim] float32 upper bound of each action entry."""
    episode_length: int
    """Steps after which an episode is truncated; an evaluation runs this many steps by default."""
    device: torch.device
    """Where every tensor of the env lives; the agent is built on it."""
    generator: torch.Generator
    """The env's source of randomness (resets, noise): a CUDA graph of the rollout advances it at each
    replay, and training checkpoints save and restore it."""
    host_shortcuts: bool
    """Whether steps may branch on a host check (free on the CPU). Off: no host sync in :meth:`step`, nor in
    the agent's rollout, which follows this switch; that is the CUDA-graph-safe path."""

    def reset(self, *, staggered: bool = False) -> Mapping[str, torch.Tensor]:
        """Start a new episode in every world; returns ``obs`` and ``critic_obs``.

        ``staggered=True`` (training starts so by default) cuts each world's first episode at a random
        step, so the worlds' time limits fall in different steps; an env may ignore it.
        """

    def step(self, action: torch.Tensor) -> Mapping[str, torch.Tensor]:
        """Apply ``action`` [N, action_dim] float32 in every world and reset the worlds that are done;
        returns the keys in the class docstring."""

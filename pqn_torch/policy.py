"""The deployable policy: observation normalization and the actor, nothing else.

A checkpoint holds the whole training agent (critics, optimizers, schedules, rollout buffers are
rebuilt from its config). A robot, an evaluation or a video needs only the map from a raw observation
to an action, so :class:`Policy` is built straight from the checkpoint's actor and observation
statistics: no env, no critic, no training agent. It computes exactly what ``PQN.act`` computes, and
``scripts/export.py`` turns it into one ONNX graph with the normalization and the action scaling inside.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pqn_torch.algo.networks import Actor
from pqn_torch.algo.normalizers import RunningMeanStd
from pqn_torch.envs.tasks import get_task_class
from pqn_torch.training.checkpoint import listed, load_checkpoint, nonfinite_weights

_ACTOR_LINEAR = re.compile(r"^actor\.body\.(\d+)\.weight$")


class Policy(nn.Module):
    """Raw observation [..., obs_dim] -> deterministic action [..., action_dim] in the env's action range.

    ``policy(obs)`` takes a torch tensor (returns one, on the policy's device) or a numpy array
    (returns one); any float dtype is converted to float32. The observation statistics are frozen.

    Attributes describing the task the policy was trained on: ``task``, ``task_overrides``,
    ``ctrl_dt`` (seconds between actions), ``obs_dim``, ``action_dim``, ``action_low``,
    ``action_high``, and where it came from: ``checkpoint`` (path) and ``env_steps``.
    """

    def __init__(
        self,
        actor: Actor,
        obs_normalizer: RunningMeanStd | None,
        task: str,
        task_overrides: dict[str, Any] | None = None,
        checkpoint: str | None = None,
        env_steps: int | None = None,
    ) -> None:
        super().__init__()
        self.actor = actor
        self.obs_normalizer = obs_normalizer
        self.task = task
        self.task_overrides = dict(task_overrides or {})
        self.ctrl_dt = get_task_class(task)(**self.task_overrides).config.ctrl_dt
        self.checkpoint = checkpoint
        self.env_steps = env_steps
        self.skipped: list[tuple[str, str]] = []
        first_layer = actor.body[0]
        assert isinstance(first_layer, nn.Linear)  # Actor's body starts with its input layer
        self.obs_dim = first_layer.in_features
        self.action_dim = actor.action_scale.numel()
        self.requires_grad_(False)  # inference only: no autograd graph at any call
        self.eval()

    @classmethod
    def from_checkpoint(cls, location: str | Path, device: str | torch.device = "cpu") -> Policy:
        """The policy of a checkpoint file or of a run dir's latest readable checkpoint, on ``device``.

        Unreadable newer checkpoints of a run dir are listed in ``policy.skipped`` as ``(path, reason)``;
        non-finite weights (a diverged run) are a ``ValueError``.
        """
        payload = load_checkpoint(location, map_location="cpu")
        task = payload["config"]["task"]
        policy = cls.from_agent_state(
            payload["agent"]["modules"],
            task["name"],
            task.get("overrides"),
            checkpoint=payload["path"],
            env_steps=payload["env_steps"],
        )
        bad = nonfinite_weights(policy)
        if bad:
            raise ValueError(
                f"{payload['path']} holds non-finite weights ({listed(bad)}): it comes from a diverged "
                "run and cannot be evaluated; use an earlier checkpoint"
            )
        policy.skipped = payload.get("skipped", [])
        return policy.to(device)

    @classmethod
    def from_agent_state(
        cls,
        state: dict[str, torch.Tensor],
        task: str,
        task_overrides: dict[str, Any] | None = None,
        checkpoint: str | None = None,
        env_steps: int | None = None,
    ) -> Policy:
        """The policy inside a PQN ``state_dict()``; the network sizes are read from the tensors' shapes."""
        linear = sorted(
            (int(match.group(1)), state[key])
            for key in state
            if (match := _ACTOR_LINEAR.match(key)) and state[key].dim() == 2
        )  # not LayerNorm's
        if not linear:
            raise ValueError("no actor weights (actor.body.*) in this state; is it a pqn-torch agent's state?")
        weights = [weight for _, weight in linear]
        scale, bias = state["actor.action_scale"], state["actor.action_bias"]
        with torch.random.fork_rng(devices=[]):  # the actor's random init is overwritten: leave the user's RNG alone
            actor = Actor(weights[0].shape[1], bias - scale, bias + scale, [w.shape[0] for w in weights[:-1]])
        actor.load_state_dict({key[len("actor.") :]: value for key, value in state.items() if key.startswith("actor.")})
        normalizer = None
        if "obs_normalizer.mean" in state:
            normalizer = RunningMeanStd(tuple(state["obs_normalizer.mean"].shape))
            normalizer.load_state_dict(
                {
                    key[len("obs_normalizer.") :]: value
                    for key, value in state.items()
                    if key.startswith("obs_normalizer.")
                }
            )
        return cls(actor, normalizer, task, task_overrides, checkpoint=checkpoint, env_steps=env_steps)

    @property
    def action_low(self) -> torch.Tensor:
        return self.actor.action_bias - self.actor.action_scale

    @property
    def action_high(self) -> torch.Tensor:
        return self.actor.action_bias + self.actor.action_scale

    @property
    def device(self) -> torch.device:
        return self.actor.action_scale.device

    def forward(self, obs: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """Deterministic actions for raw observations (see the class docstring)."""
        if isinstance(obs, np.ndarray):
            return self(torch.from_numpy(obs)).cpu().numpy()
        if obs.shape[-1:] != (self.obs_dim,):
            raise ValueError(
                f"{self.task} policy: observations must have shape [..., {self.obs_dim}], got {list(obs.shape)}"
            )
        obs = obs.to(self.device, torch.float32)
        if self.obs_normalizer is not None:
            obs = self.obs_normalizer.normalize(obs)
        return self.actor(obs)

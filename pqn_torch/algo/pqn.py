"""Actor-critic PQN: rollout with decaying Gaussian exploration, Q(lambda) targets, minibatch updates.

One training iteration (``PQN.train_iteration``) = a rollout of ``num_steps`` steps in every env,
then ``num_epochs`` passes over ``num_minibatches`` shuffled minibatches of the rollout. What each step
computes, the presets and the deviations from purejaxql: ``docs/algorithm.md``.

GPU speed: both phases are plain loops over tensor ops on long-lived tensors (the rollout storage,
the current observations, parameters, optimizer and normalizer state, schedule counters, the
metric sums), so that on CUDA each phase is captured once as a CUDA graph and replayed
(:class:`pqn_torch.cuda_graph.CapturedCall`): a rollout, env physics included, is one graph launch;
an update of ``num_epochs x num_minibatches`` gradient steps is another. Schedules are evaluated on
device from counters in buffers, minibatches are shuffled on device, the optimizers are RAdam with a
tensor learning rate and ``capturable=True`` on CUDA, and metrics are summed into a device tensor
that only :meth:`PQN.pop_metrics` copies to the host. ``compile`` additionally wraps the policy
and minibatch steps in ``torch.compile``. A phase whose capture or compilation fails runs eagerly
instead, with one warning (:attr:`PQN.fallbacks` lists them). The one host check in the loop
(skipping the truncation bootstrap when no episode was truncated) follows the env's ``host_shortcuts``
(on for the CPU, where it is free); it draws the same random numbers either way.

CPU speed (see docs/benchmarks.md, "CPU speed"): (1) each network's parameters and gradients are views of
one flat tensor, making the optimizer step, the clipping and the zeroing a few ops per network
(``flat_params.py``); on the CPU the clipping is folded into the RAdam step, whose rectified steps run
as one fused Adam kernel (``flat_radam.py``); (2) inside the agent's phases the networks take their CPU
fast path (``cpu_fast_path.py``: oneDNN matmuls, one critic at a time with fused LayerNorm affines),
reading layer views built once; (3) the update's gradients come from a hand-written backward pass
(``cpu_gradients.py``: no autograd, no gradient computed only to be dropped), its two halves compiled
by TorchScript (C++ without the GIL), or by ``compile=true``; (4) in each gradient step the actor's
half (its loss through the critic) can run on a second thread next to the critic's (``split_update``),
where that is faster (``faster_of_two.py``).
None changes the math beyond the order of roundings: the critic steps after the actor's loss is
differentiated through it, and the random draws are the same (``tests/test_algo.py`` checks the
gradients against autograd and the weights against a plain update). torch's intra-op threads stay at
one (``torch_threads``): on the 2-core machine two intra-op threads made the CPU preset's update slower,
the DM preset's matmuls and LayerNorms too, and any update 2-5x slower while other processes were running.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

import torch
from tensordict import TensorDict
from torch import nn

from pqn_torch.algo import cpu_fast_path, cpu_gradients, flat_params, metrics
from pqn_torch.algo.faster_of_two import FasterOfTwo
from pqn_torch.algo.flat_params import flatten_parameters
from pqn_torch.algo.flat_radam import ClippedRAdam
from pqn_torch.algo.losses import actor_loss, critic_loss, preactivation_penalty
from pqn_torch.algo.networks import Actor, CriticEnsemble
from pqn_torch.algo.normalizers import RewardNormalizer, RunningMeanStd
from pqn_torch.algo.qlambda import q_lambda_targets
from pqn_torch.algo.schedules import LinearSchedule
from pqn_torch.cuda_graph import CapturedCall, CompiledCall
from pqn_torch.distributed import average_gradients
from pqn_torch.envs.interface import VecEnv

FLOAT32_MAX = float(torch.finfo(torch.float32).max)
"""The largest number an option may hold: the schedules and losses turn the options into float32 tensors."""
UPDATE_METRICS = metrics.names_over("minibatch")
"""What :meth:`PQN._minibatch_step` returns, by name (see :mod:`pqn_torch.algo.metrics`)."""
_UPDATE_SLOTS = metrics.slots_over("minibatch")


@dataclass
class PQNConfig:
    """Hyperparameters of actor-critic PQN; the defaults are the DM-suite preset (``configs/alg/dm_suite.yaml``).

    They are purejaxql's DM-suite settings except ``bootstrap_truncation`` and ``stagger_episodes``, both on
    here (docs/algorithm.md, "Deviations").

    The module docstring and :meth:`PQN._rollout` / :meth:`PQN._minibatch_step` say what each one does
    (names follow purejaxql's ``pqn_mujoco_playground.py`` config, lower-cased). ``q_lambda`` is the
    lambda of Q(lambda); ``penalty_threshold`` purejaxql's ``threshold``; ``linspace_noise``
    spreads the exploration std over envs as ``linspace(0, sigma, num_envs)``;
    ``bootstrap_truncation`` see :func:`pqn_torch.algo.qlambda.q_lambda_targets`;
    ``stagger_episodes`` starts training with each env's first episode cut at a random step (see
    :meth:`PQN.reset`).
    """

    num_envs: int = 1024
    num_steps: int = 32
    num_epochs: int = 4
    num_minibatches: int = 32
    actor_hidden_sizes: tuple[int, ...] = (512, 256, 128)  # a tuple, not Sequence: omegaconf types the schema
    critic_hidden_sizes: tuple[int, ...] = (1024, 512, 256)
    num_critics: int = 2
    actor_init_scale: float = 1.0
    actor_output_init_scale: float = 1.0
    critic_init_scale: float = 1.0
    normalize_obs: bool = True
    normalize_reward: bool = False
    anneal_lr: bool = True
    lr_start: float = 1e-4
    lr_end: float = 5e-7
    lr_decay: float = 1.0
    gamma: float = 0.995
    q_lambda: float = 0.7
    noise_start: float = 1.0
    noise_finish: float = 0.15
    noise_decay: float = 1.0
    linspace_noise: bool = False
    penalty_threshold: float = 0.15
    penalty_coeff: float = 10.0
    actor_preactivation_coeff: float = 0.0
    max_grad_norm: float = 1.0
    bootstrap_truncation: bool = True
    stagger_episodes: bool = True

    def __post_init__(self) -> None:
        for name in ("num_envs", "num_steps", "num_epochs", "num_minibatches", "num_critics"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"alg.{name} must be a positive integer, got {value!r}")
        for name in ("actor_hidden_sizes", "critic_hidden_sizes"):
            sizes = getattr(self, name)
            if (
                isinstance(sizes, (str, bytes))
                or not isinstance(sizes, Sequence)
                or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes)
            ):
                raise ValueError(f"alg.{name} must be a list of positive integers, got {sizes!r}")
            setattr(self, name, tuple(sizes))
        for name in (
            "normalize_obs",
            "normalize_reward",
            "anneal_lr",
            "linspace_noise",
            "bootstrap_truncation",
            "stagger_episodes",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"alg.{name} must be true or false, got {getattr(self, name)!r}")
        ranges = {"gamma": (0.0, 1.0), "q_lambda": (0.0, 1.0), "lr_decay": (0.0, 1.0), "noise_decay": (0.0, 1.0)}
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if not _is_number(value) or not low <= value <= high:
                raise ValueError(f"alg.{name} must be a finite number in [{low}, {high}], got {value!r}")
        for name in (
            "lr_start",
            "lr_end",
            "noise_start",
            "noise_finish",
            "penalty_threshold",
            "penalty_coeff",
            "actor_preactivation_coeff",
            "actor_init_scale",
            "actor_output_init_scale",
            "critic_init_scale",
        ):
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                raise ValueError(f"alg.{name} must be a finite number >= 0, got {value!r}")
        if not _is_number(self.max_grad_norm) or self.max_grad_norm <= 0:
            raise ValueError(f"alg.max_grad_norm must be a finite number > 0, got {self.max_grad_norm!r}")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if _is_number(value) and abs(value) > FLOAT32_MAX:
                raise ValueError(
                    f"alg.{field.name} must be at most {FLOAT32_MAX:.4g} (the largest float32, the precision "
                    f"training computes in), got {value!r}"
                )
        batch = self.num_envs * self.num_steps
        if batch % self.num_minibatches:
            raise ValueError(f"alg.num_minibatches ({self.num_minibatches}) must divide num_envs * num_steps ({batch})")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PQNConfig:
        """Build from a plain mapping (e.g. the hydra ``alg`` node); unknown keys are one clear error."""
        valid = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise ValueError(f"unknown alg option(s) {unknown}; valid: {valid}")
        return cls(**values)

    @property
    def minibatch_size(self) -> int:
        return self.num_envs * self.num_steps // self.num_minibatches


class PQN(nn.Module):
    """The PQN agent: networks, optimizers, normalizers, schedules and the rollout buffer.

    ``cuda_graphs`` (CUDA only) captures the rollout and the update as CUDA graphs after two eager
    warm-up iterations; ``compile`` wraps the policy and minibatch steps in ``torch.compile`` (on the CPU,
    the policy step and the update's hand-written gradients). ``split_update`` (CPU without ``compile``
    only) runs the actor's half of each gradient step (its loss through the critic) on a second thread:
    ``True`` always, ``False`` never, ``"auto"`` whenever the last timing of both ways (every 100
    updates) found it faster; the results are the same bits either way.

    Typical use (see the README for a complete example)::

        agent = PQN.for_env(env, PQNConfig(...), total_timesteps=1_000_000)
        agent.reset(env)
        for _ in range(agent.num_updates):
            agent.train_iteration(env)
        metrics = agent.pop_metrics()

    ``state_dict()`` holds the networks, the normalizer statistics and the schedule counters;
    :meth:`checkpoint_state` adds the optimizers.
    """

    noise_profile: torch.Tensor
    updates_done: torch.Tensor
    grad_steps: torch.Tensor
    metric_sums: torch.Tensor
    obs_normalizer: RunningMeanStd | None
    critic_obs_normalizer: RunningMeanStd | None
    reward_normalizer: RewardNormalizer | None
    _second_thread: ThreadPoolExecutor | None
    _rollout_env: VecEnv | None
    _rollout_call: CapturedCall | None
    _learn_call: CapturedCall

    def __init__(
        self,
        obs_dim: int,
        critic_obs_dim: int,
        action_low: torch.Tensor,
        action_high: torch.Tensor,
        config: PQNConfig,
        total_timesteps: int,
        device: str | torch.device = "cpu",
        compile: bool = False,
        cuda_graphs: bool = False,
        split_update: bool | str = "auto",
    ) -> None:
        super().__init__()
        if not (isinstance(split_update, bool) or split_update == "auto"):
            raise ValueError(f"split_update must be true, false or auto, got {split_update!r}")
        self.config = config
        self.device = torch.device(device)
        if cuda_graphs and self.device.type != "cuda":
            raise ValueError(f"cuda_graphs=true needs a CUDA device, got {self.device}; use cuda_graphs=false or auto")
        self.cuda_graphs = cuda_graphs
        steps_per_update = config.num_envs * config.num_steps
        if (
            isinstance(total_timesteps, bool)
            or not isinstance(total_timesteps, int)
            or total_timesteps < steps_per_update
        ):
            raise ValueError(
                f"total_timesteps must be an integer >= num_envs * num_steps ({steps_per_update}), "
                f"got {total_timesteps!r}"
            )
        self.num_updates = total_timesteps // steps_per_update
        self.steps_per_update = steps_per_update
        updates_per_grad = config.num_epochs * config.num_minibatches

        self.actor = Actor(
            obs_dim,
            action_low,
            action_high,
            config.actor_hidden_sizes,
            config.actor_init_scale,
            config.actor_output_init_scale,
        )
        self.critic = CriticEnsemble(
            critic_obs_dim, action_low.numel(), config.critic_hidden_sizes, config.num_critics, config.critic_init_scale
        )
        self.obs_normalizer = RunningMeanStd((obs_dim,)) if config.normalize_obs else None
        self.critic_obs_normalizer = RunningMeanStd((critic_obs_dim,)) if config.normalize_obs else None
        self.reward_normalizer = RewardNormalizer(config.num_envs, config.gamma) if config.normalize_reward else None
        profile = torch.linspace(0.0, 1.0, config.num_envs) if config.linspace_noise else torch.ones(config.num_envs)
        self.register_buffer("noise_profile", profile)
        self.register_buffer("updates_done", torch.zeros((), dtype=torch.int64))
        self.register_buffer("grad_steps", torch.zeros((), dtype=torch.int64))
        self.register_buffer("metric_sums", torch.zeros(len(metrics.SLOTS), dtype=torch.float64))
        self.to(self.device)

        lr_steps = self.num_updates * config.lr_decay * updates_per_grad if config.anneal_lr else 0
        self.lr_schedule = LinearSchedule(config.lr_start, config.lr_end, lr_steps)
        self.noise_schedule = LinearSchedule(
            config.noise_start, config.noise_finish, config.noise_decay * self.num_updates
        )
        # Speed: each network's parameters and gradients live in one flat tensor (see flat_params.py), so
        # every optimizer step, gradient zeroing and clipping is a few ops on one tensor, not a few per tensor.
        self._actor_flat = flatten_parameters(self.actor)
        self._critic_flat = flatten_parameters(self.critic)
        # RAdam (flat_radam.py: torch's, plus the CPU update's fused clip-and-step). capturable: the step counters
        # stay on the GPU and no step reads one back to the host. foreach (torch's default on CUDA; on the CPU its
        # default is the per-tensor loop): the step updates its moments and parameters in place with one scratch
        # tensor, where the loop allocates ~6 temporaries of the parameters' size per step.
        capturable = self.device.type == "cuda"
        lr = torch.tensor(config.lr_start, device=self.device)
        self.actor_optimizer = ClippedRAdam(self._actor_flat, lr.clone(), capturable)
        self.critic_optimizer = ClippedRAdam(self._critic_flat, lr.clone(), capturable)
        self._sigma = torch.zeros(config.num_envs, device=self.device)
        self._storage = self._allocate_storage(obs_dim, critic_obs_dim, action_low.numel())
        self._batch = self._storage.reshape(-1)
        self._obs = torch.zeros(config.num_envs, obs_dim, device=self.device)
        self._critic_obs = torch.zeros(config.num_envs, critic_obs_dim, device=self.device)
        self._started = False
        self.updates_issued = 0
        """Updates run so far, counted on the host (``updates_done`` is the same count on device)."""
        self._minibatches_since_pop = 0
        self._updates_since_pop = 0
        # Speed (CPU): the networks' CPU fast path (oneDNN matmuls, one critic at a time with fused LayerNorms;
        # cpu_fast_path.py) in the rollout, the update and act(), and the update's hand-written backward pass
        # (cpu_gradients.py), which is what compile=true compiles on the CPU.
        self._cpu_fast_path = self.device.type == "cpu"
        self.policy_step = CompiledCall(self._policy_step, "rollout") if compile else self._policy_step
        compile_step = compile and not self._cpu_fast_path
        self.minibatch_step = CompiledCall(self._minibatch_step, "update") if compile_step else self._minibatch_step
        layouts = (flat_params.layout(self.actor), flat_params.layout(self.critic))
        self._compiled_gradients: CompiledCall | None = None
        if compile and self._cpu_fast_path:
            self._compiled_gradients = CompiledCall(cpu_gradients.flat_minibatch_gradients, "update")
        self._layouts = layouts
        # the networks' layers as views of the flat parameters and of the flat gradients, for the eager CPU update
        flats = (self._actor_flat.detach(), self._critic_flat.detach())
        self._parameter_views = cpu_gradients.network_views(self.actor, self.critic, *flats, layouts)
        gradient_flats = (cast(torch.Tensor, self._actor_flat.grad), cast(torch.Tensor, self._critic_flat.grad))
        self._gradient_views = cpu_gradients.tensors(
            cpu_gradients.network_views(self.actor, self.critic, *gradient_flats, layouts)
        )
        # Speed (CPU): in each gradient step the actor's half on a second thread while this one runs the critic's
        # (cpu_gradients.py); "auto" times both ways now and then and keeps the faster, since which wins depends on
        # the machine's load.
        eager_cpu = self._cpu_fast_path and not compile
        if split_update is True and not eager_cpu:
            raise ValueError(
                f"split_update=true needs the CPU and compile=false (device {self.device}, compile "
                f"{compile}); use split_update=auto or false"
            )
        # speed (CPU): the eager update's two halves compiled by TorchScript (cpu_gradients.scripted_halves)
        self._scripted_halves = cpu_gradients.scripted_halves() if eager_cpu else None
        self._second_thread = None
        if eager_cpu and split_update is not False:  # the thread keeps this thread's torch thread count
            self._second_thread = ThreadPoolExecutor(
                1,
                thread_name_prefix="pqn-actor-step",
                initializer=torch.set_num_threads,
                initargs=(torch.get_num_threads(),),
            )
        self._split_chooser = FasterOfTwo() if self._second_thread is not None and split_update == "auto" else None
        self._split = self._second_thread is not None
        self.split_updates = 0
        """Updates run so far with the actor's half of each gradient step on the second thread."""
        self._drop_graphs()

    @classmethod
    def for_env(
        cls,
        env: VecEnv,
        config: PQNConfig,
        total_timesteps: int,
        compile: bool = False,
        cuda_graphs: bool = False,
        split_update: bool | str = "auto",
    ) -> PQN:
        """An agent sized for ``env`` (a :class:`pqn_torch.envs.BatchedEnv` or any other
        :class:`~pqn_torch.envs.VecEnv`) on the env's device."""
        if env.num_envs != config.num_envs:
            raise ValueError(f"env has {env.num_envs} worlds but config.num_envs is {config.num_envs}; make them equal")
        return cls(
            env.obs_dim,
            env.critic_obs_dim,
            env.action_low,
            env.action_high,
            config,
            total_timesteps,
            device=env.device,
            compile=compile,
            cuda_graphs=cuda_graphs,
            split_update=split_update,
        )

    # ----------------------------------------------------------------- acting
    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic actions for raw observations [B, obs_dim] (evaluation; statistics frozen)."""
        with cpu_fast_path.enabled(self._cpu_fast_path):
            return self.actor(self._normalize(self.obs_normalizer, obs))

    @torch.no_grad()
    def _policy_step(
        self, obs: torch.Tensor, critic_obs: torch.Tensor, sigma: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(deterministic action, explored action, ensemble value at the explored action) for normalized obs."""
        # speed (CPU): the fast path takes the layers built once in __init__ instead of rebuilding them per call
        views = self._parameter_views if cpu_fast_path.is_enabled() else None
        deterministic = self.actor(obs, None if views is None else views.actor)
        scale = self.actor.action_scale
        noisy = deterministic + torch.randn_like(deterministic) * sigma.unsqueeze(-1) * scale
        action = torch.minimum(torch.maximum(noisy, self.actor.action_bias - scale), self.actor.action_bias + scale)
        return deterministic, action, self.critic.mean_q(critic_obs, action, None if views is None else views.critics)

    # ----------------------------------------------------------------- rollout
    def reset(self, env: VecEnv, update_statistics: bool = True) -> None:
        """Start fresh episodes in ``env`` and take its first observations.

        With ``stagger_episodes`` (the default) each env's first episode ends at a uniformly random
        step of the time limit (``env.reset(staggered=True)``), so the envs' time limits fall in
        different steps from then on. Started together they would stay in lockstep: every rollout
        would sample one phase of the episode only (in CartpoleBalance, hundreds of updates of
        near-upright states and then hundreds of the fallen pole), and every ``episode_length`` steps
        all envs would truncate in one step. That made the learner collapse late in training (see
        docs/benchmarks.md, "Learning parity").

        ``update_statistics=False`` leaves the normalizers as they are: a run resumed from a
        checkpoint must not count the restart's observations, which an uninterrupted run never saw.
        """
        observed = env.reset(staggered=self.config.stagger_episodes)
        self._observe(observed["obs"], observed["critic_obs"], update_statistics)
        self._started = True

    def collect(self, env: VecEnv) -> TensorDict:
        """Run one rollout of ``num_steps`` steps in ``env`` with the current exploration noise.

        Returns the [num_steps, num_envs] buffer (reused by the next rollout) with the Q(lambda)
        ``target`` filled in. With ``cuda_graphs`` the rollout is replayed from a CUDA graph of
        ``env`` (captured at the third call; a different env object is captured anew).
        """
        if not self._started:
            raise RuntimeError("call agent.reset(env) before the first rollout")
        if self._rollout_call is None or self._rollout_env is not env:
            generators = (env.generator,) if self.cuda_graphs else ()
            self._rollout_env = env
            self._rollout_call = CapturedCall(
                lambda: self._rollout(env), self.device, self.cuda_graphs, generators=generators, phase="rollout"
            )
        with cpu_fast_path.enabled(self._cpu_fast_path):
            self._rollout_call()
        return self._storage

    def _rollout(self, env: VecEnv) -> None:
        """The body of :meth:`collect`: tensor ops on long-lived tensors only (graph-capturable)."""
        config = self.config
        storage = self._storage
        torch.mul(self.noise_profile, self.noise_schedule(self.updates_done), out=self._sigma)
        sums = self.metric_sums
        for step in range(config.num_steps):
            deterministic, action, value = self.policy_step(self._obs, self._critic_obs, self._sigma)
            result = env.step(action)
            done = result["done"]
            reward = result["reward"]
            if self.reward_normalizer is not None:
                reward = self.reward_normalizer(reward, done)
            record = storage[step]
            record["obs"].copy_(self._obs)
            record["critic_obs"].copy_(self._critic_obs)
            record["original_action"].copy_(deterministic)
            record["action"].copy_(action)
            record["value"].copy_(value)
            record["reward"].copy_(reward)
            record["terminated"].copy_(result["terminated"])
            record["truncated"].copy_(result["truncated"])
            self._observe(result["obs"], result["critic_obs"])
            if config.bootstrap_truncation:
                truncated = result["truncated"]
                if not env.host_shortcuts or bool(truncated.any()):
                    final_obs = self._normalize(self.obs_normalizer, result["final_obs"])
                    final_critic_obs = self._normalize(self.critic_obs_normalizer, result["final_critic_obs"])
                    final_value = self.policy_step(final_obs, final_critic_obs, self._sigma)[2]
                    record["truncation_value"].copy_(torch.where(truncated, final_value, 0.0))
                else:  # no episode was truncated; the policy step's exploration noise is drawn all the same
                    torch.randn_like(action)
                    record["truncation_value"].zero_()
            sums[metrics.SLOTS["episode_return"]] += torch.where(done, result["episode_return"], 0.0).sum()
            sums[metrics.SLOTS["episode_length"]] += torch.where(done, result["episode_length"], 0).sum()
            sums[metrics.SLOTS["episodes"]] += done.sum()

        last_value = self.policy_step(self._obs, self._critic_obs, self._sigma)[2]
        storage["target"].copy_(
            q_lambda_targets(
                storage["reward"],
                storage["value"],
                storage["terminated"],
                storage["truncated"],
                last_value,
                config.gamma,
                config.q_lambda,
                config.bootstrap_truncation,
                storage["truncation_value"] if config.bootstrap_truncation else None,
            )
        )
        sums[metrics.SLOTS["reward_mean"]] += storage["reward"].mean()
        sums[metrics.SLOTS["value_mean"]] += storage["value"].mean()
        sums[metrics.SLOTS["target_mean"]] += storage["target"].mean()

    # ----------------------------------------------------------------- update
    def learn(self) -> None:
        """``num_epochs`` passes of shuffled minibatch updates over the last rollout (no host sync)."""
        with cpu_fast_path.enabled(self._cpu_fast_path):
            if self._split_chooser is not None:
                self._split_chooser(self._learn_split)
            else:
                self._learn_call()
        self.split_updates += self._split
        self.updates_issued += 1
        self._minibatches_since_pop += self.config.num_epochs * self.config.num_minibatches
        self._updates_since_pop += 1

    def _learn_split(self, split: bool) -> None:
        """The update with (``split``) or without the actor's halves on the second thread."""
        self._split = split
        self._learn_call()

    def _learn(self) -> None:
        """The body of :meth:`learn` (graph-capturable); shuffles with an argsort of uniform keys on device."""
        size = self.config.minibatch_size
        for _ in range(self.config.num_epochs):
            permutation = torch.rand(self.steps_per_update, device=self.device).argsort()
            for start in range(0, self.steps_per_update, size):
                values = self.minibatch_step(permutation[start : start + size])
                # in place (a captured update writes into metric_sums), one add for the step's metrics in slot order
                self.metric_sums[_UPDATE_SLOTS] += torch.stack([values[name] for name in UPDATE_METRICS])
        self.updates_done += 1

    def _minibatch_step(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """One actor and one critic gradient step on the rollout samples at ``indices``.

        The actor's loss is differentiated through the critic before the critic steps, so it sees the
        critic as it was before this minibatch, as in purejaxql (docs/algorithm.md, "Update"). Returns the
        minibatch metrics (``metrics.names_over("minibatch")``) by name, as detached scalars.
        """
        lr = self.lr_schedule(self.grad_steps)
        self.actor_optimizer.param_groups[0]["lr"].copy_(lr)
        self.critic_optimizer.param_groups[0]["lr"].copy_(lr)
        if self._cpu_fast_path:  # speed (CPU): the hand-written backward pass (cpu_gradients.py)
            batch, config = self._minibatch(indices), self.config
            if self._compiled_gradients is not None:
                flats = (self._actor_flat.detach(), self._critic_flat.detach())
                penalty = (config.penalty_threshold, config.penalty_coeff, config.actor_preactivation_coeff)
                losses, gradients = self._compiled_gradients(
                    self.actor, self.critic, *flats, self._layouts, batch, *penalty
                )
            else:
                losses, gradients = cpu_gradients.minibatch_gradients(
                    self.actor,
                    self.critic,
                    self._parameter_views,
                    batch,
                    config.penalty_threshold,
                    config.penalty_coeff,
                    config.actor_preactivation_coeff,
                    self._second_thread if self._split else None,
                    self._scripted_halves,
                )
            torch._foreach_copy_(self._gradient_views, gradients)
        else:
            losses = self._autograd_gradients(indices)
        # On this thread and in this order: the ranks of a data-parallel run must issue their collectives alike.
        average_gradients([cast(torch.Tensor, self._actor_flat.grad)])  # flat tensors always have a .grad
        average_gradients([cast(torch.Tensor, self._critic_flat.grad)])
        max_norm = self.config.max_grad_norm
        if self._cpu_fast_path:  # speed (CPU): clipping folded into a fused RAdam step (flat_radam.py)
            actor_norm = self.actor_optimizer.clip_and_step(max_norm)
            critic_norm = self.critic_optimizer.clip_and_step(max_norm)  # after the actor's pass through the critic
        else:
            actor_norm = _clip_gradients(self.actor, self._actor_flat, max_norm)
            critic_norm = _clip_gradients(self.critic, self._critic_flat, max_norm)
            self.actor_optimizer.step()
            self.critic_optimizer.step()  # only after the actor's backward pass through the critic's old parameters
        self.grad_steps += 1
        values = {
            "critic_loss": losses.critic_loss,
            "actor_loss": losses.actor_loss,
            "q_mean": losses.q_values.mean(),
            "critic_grad_norm": critic_norm,
            "actor_grad_norm": actor_norm,
            "penalty_fraction": losses.penalty_fraction,
        }
        return {name: value.detach() for name, value in values.items()}

    def _minibatch(self, indices: torch.Tensor) -> cpu_gradients.Batch:
        batch = self._batch
        return cpu_gradients.Batch(
            batch["obs"][indices],
            batch["critic_obs"][indices],
            batch["action"][indices],
            batch["original_action"][indices],
            batch["target"][indices],
        )

    def _autograd_gradients(self, indices: torch.Tensor) -> cpu_gradients.Losses:
        """The gradients of :func:`cpu_gradients.minibatch_gradients` by autograd (CUDA, or outside the fast path).

        The actor's loss is differentiated first, through the critic's current parameters; then the critic's.
        """
        config = self.config
        batch = self._minibatch(indices)
        self.actor_optimizer.zero_grad(set_to_none=False)  # in place: the parameters' gradients are views of it
        self.critic_optimizer.zero_grad(set_to_none=False)
        pre_activation = self.actor.pre_activation(batch.obs)
        new_action = self.actor.squash(pre_activation)
        policy_loss, penalty_fraction = actor_loss(
            self.critic.mean_q(batch.critic_obs, new_action),
            new_action,
            batch.rollout_action,
            self.actor.action_scale,
            self.actor.action_bias,
            config.penalty_threshold,
            config.penalty_coeff,
        )
        if config.actor_preactivation_coeff > 0:
            policy_loss = policy_loss + preactivation_penalty(pre_activation, config.actor_preactivation_coeff)
        policy_loss.backward(inputs=list(self.actor.parameters()))
        q_values = self.critic(batch.critic_obs, batch.action)
        value_loss = critic_loss(q_values, batch.target)
        value_loss.backward(inputs=list(self.critic.parameters()))
        return cpu_gradients.Losses(value_loss, q_values, policy_loss, penalty_fraction)

    def train_iteration(self, env: VecEnv) -> None:
        """One rollout in ``env`` followed by its update."""
        self.collect(env)
        self.learn()

    # ----------------------------------------------------------------- bookkeeping
    @property
    def storage(self) -> TensorDict:
        """The rollout buffer [num_steps, num_envs] that :meth:`collect` fills and :meth:`learn` reads, to inspect.

        The same tensors at every rollout (a captured graph writes them): copy what must outlive the next one.
        """
        return self._storage

    @property
    def captured(self) -> dict[str, bool]:
        """Which phases replay a captured CUDA graph now (``{"rollout": ..., "update": ...}``); a user's check
        that ``cuda_graphs`` took effect, next to :attr:`fallbacks`."""
        return {
            "rollout": self._rollout_call is not None and self._rollout_call.captured,
            "update": self._learn_call.captured,
        }

    @property
    def sigma(self) -> float:
        """Exploration std (in units of the action half-range) of the next rollout."""
        return float(self.noise_schedule(int(self.updates_done)))

    @property
    def learning_rate(self) -> float:
        """Learning rate of the next gradient step."""
        return float(self.lr_schedule(int(self.grad_steps)))

    def pop_metrics(self, counters: Mapping[str, torch.Tensor] | None = None) -> dict[str, float]:
        """Means of the metrics since the last call, then reset them; one device-to-host copy in all.

        Update metrics are averaged over minibatches, rollout metrics over rollouts, episode
        metrics over the training episodes that finished (absent when none did). ``sigma`` and
        ``learning_rate`` are the schedules' next values; ``counters`` (scalar device tensors such
        as ``env.stats``) ride along in the same copy under their own names.
        """
        popped = {
            "sigma": torch.as_tensor(self.noise_schedule(self.updates_done)),
            "learning_rate": torch.as_tensor(self.lr_schedule(self.grad_steps)),
            **(counters or {}),
        }
        copied = [self.metric_sums, *(value.reshape(1).to(torch.float64) for value in popped.values())]
        values = torch.cat(copied).tolist()
        self.metric_sums.zero_()
        sums = dict(zip(metrics.SLOTS, values, strict=False))  # the popped values follow the sums
        divisors = {
            "minibatch": self._minibatches_since_pop,
            "rollout": self._updates_since_pop,
            "episode": sums["episodes"],
            "count": 1,
        }
        result = dict(zip(popped, values[len(sums) :], strict=True))
        result.update(
            {
                metric.name: sums[metric.name] / divisors[metric.over]
                for metric in metrics.SUMMED
                if divisors[metric.over]
            }
        )
        self._minibatches_since_pop = 0
        self._updates_since_pop = 0
        return result

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything needed to continue training: modules, normalizers, counters and optimizers."""
        return {
            "modules": self.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
        }

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`checkpoint_state`; call :meth:`reset` before training again.

        Loading replaces the optimizer state tensors, so any captured graph is dropped and recaptured.
        """
        self.load_state_dict(state["modules"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self._started = False
        self.updates_issued = int(self.updates_done)
        self._drop_graphs()

    # ----------------------------------------------------------------- helpers
    def _drop_graphs(self) -> None:
        """Start over with fresh (not yet captured) phases; the rollout's is made at the next ``collect``."""
        self._rollout_env = None
        self._rollout_call = None
        self._learn_call = CapturedCall(self._learn, self.device, self.cuda_graphs, phase="update")

    @property
    def fallbacks(self) -> dict[str, str]:
        """GPU speed paths that failed and now run eagerly, e.g. ``{"update graph": "RuntimeError: ..."}``."""
        calls = {
            "rollout graph": self._rollout_call,
            "update graph": self._learn_call,
            "rollout compile": self.policy_step,
            "update compile": self._compiled_gradients if self._cpu_fast_path else self.minibatch_step,
        }
        errors = {name: getattr(call, "fallback_error", None) for name, call in calls.items()}
        return {name: error for name, error in errors.items() if error is not None}

    def _observe(self, obs: torch.Tensor, critic_obs: torch.Tensor, update_statistics: bool = True) -> None:
        """Fold raw observations into the running statistics; store them normalized as the current ones.

        The current observations are written in place: a captured rollout reads them at a fixed address.
        """
        if update_statistics and self.obs_normalizer is not None and self.critic_obs_normalizer is not None:
            self.obs_normalizer.update(obs)
            self.critic_obs_normalizer.update(critic_obs)
        self._obs.copy_(self._normalize(self.obs_normalizer, obs))
        self._critic_obs.copy_(self._normalize(self.critic_obs_normalizer, critic_obs))

    @staticmethod
    def _normalize(normalizer: RunningMeanStd | None, x: torch.Tensor) -> torch.Tensor:
        return x if normalizer is None else normalizer.normalize(x)

    def _allocate_storage(self, obs_dim: int, critic_obs_dim: int, action_dim: int) -> TensorDict:
        shape = (self.config.num_steps, self.config.num_envs)
        floats = {
            "obs": (obs_dim,),
            "critic_obs": (critic_obs_dim,),
            "original_action": (action_dim,),
            "action": (action_dim,),
            "value": (),
            "reward": (),
            "truncation_value": (),
            "target": (),
        }
        storage = {name: torch.zeros(*shape, *tail, device=self.device) for name, tail in floats.items()}
        for name in ("terminated", "truncated"):
            storage[name] = torch.zeros(shape, dtype=torch.bool, device=self.device)
        return TensorDict(storage, batch_size=shape, device=self.device)


def _clip_gradients(module: nn.Module, flat: torch.Tensor, max_norm: float) -> torch.Tensor:
    """``clip_grad_norm_`` of ``module``'s gradients, scaled as one flat tensor; returns the total norm.

    The norm is taken over the parameters' gradients as ``clip_grad_norm_`` takes it (the same
    floating-point sums); the scaling, an elementwise multiply, is one op on ``flat.grad``.
    """
    total_norm = nn.utils.get_total_norm(
        [parameter.grad for parameter in module.parameters() if parameter.grad is not None]
    )  # all of them: views of flat.grad
    nn.utils.clip_grads_with_norm_([flat], max_norm, total_norm)
    return total_norm


def _is_number(value: Any) -> bool:
    """A finite int or float (inf and nan in a config are errors, not settings)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

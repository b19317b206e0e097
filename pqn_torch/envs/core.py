"""The batched env: N worlds of one task, stepped together, reset per world on device.

Data path of one ``step``: validate action -> sanitize -> task ``control`` (``ctrl``, perturbations) ->
physics -> task ``transition`` (reward and its terms, observation, termination, task-state update), repeated
``action_repeat`` times with rewards summed -> episode bookkeeping (returns, reward-term sums) -> autoreset
of finished worlds from the start-state pool, then fresh task state and the task's ``after_reset``.
Every operation after validation is a tensor op with no host sync on CUDA, so a step can be
captured in a CUDA graph. On the CPU, where a host check is free, ``host_shortcuts`` skips the
per-world masked work (non-finite handling, autoreset) in the common case that no world needs it. The
env owns that switch (the agent's rollout follows ``env.host_shortcuts``), and both paths draw the same
random numbers, so a seed gives the same trajectories with it on or off.

Start states: a task's reset may be expensive (CheetahRun settles for 200 physics steps), so the env
draws ``reset_pool_size`` start states once, at construction, runs the task's settle steps (with the
task's start ``ctrl``) and a ``forward`` on them, and stores the complete physics view (qpos, qvel, act,
ctrl, mocap, sensordata, time). Resetting a world copies a uniformly drawn pool entry into it, zeroes its
applied forces, then draws fresh task state (commands, timers, ...; ``initial_state`` sees the copied state)
and runs the task's ``after_reset`` for the reset worlds (histories seeded with the first frame): no physics
call at reset, identical observations to a fresh reset, and the same code path on every backend.

Reward terms: a task that reports the parts of its reward (``Task.reward_term_names``) has them summed per
episode on the device; ``reward_term_totals`` adds up the finished episodes' sums (cumulative, like
``stats``), which the trainer copies with its other counters once per log interval.

Buffer overflows (MuJoCo Warp's fixed contact and constraint buffers, see ``physics.base``): after every
step the env adds the worlds that overflowed, per kind, to ``stats["overflow_<kind>"]`` (solver iteration
limits, expected with Playground's settings, to ``stats["solver_iteration_limit"]``), a tensor op like the
other counters. A world whose step overflowed goes on: the step lost the contacts or constraint rows that
did not fit, which is an inaccuracy, not an instability (one that blows up is caught as unstable and reset);
resetting would cut episodes short without telling anyone more, and a shared contact buffer overflows for
every world at once. The counts reach tensorboard and the run summary, with the override that fixes them.
Start states are checked too: a task whose start states do not fit its buffers does not build.

Domain randomization (task option ``randomize``): before the pool is built, every world draws its model
parameters (``pqn_torch.envs.randomization``); with ``randomize_every_reset`` a resetting world draws anew.
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDict

from pqn_torch.envs.physics.base import BUFFER_KINDS, OVERFLOW_KINDS, Physics
from pqn_torch.envs.randomization import DomainRandomizer
from pqn_torch.envs.tasks.base import Task, TaskState

STATE_FIELDS = ("qpos", "qvel", "act", "ctrl", "mocap_pos", "mocap_quat", "sensordata", "time")
OVERFLOW_COUNTERS = tuple(
    "solver_iteration_limit" if kind == "solver_iterations" else f"overflow_{kind}" for kind in OVERFLOW_KINDS
)
"""``stats`` names of the overflow counts, in the order of ``OVERFLOW_KINDS``."""
COUNTERS = ("nonfinite_states", "nonfinite_rewards", "nonfinite_actions", "episodes", *OVERFLOW_COUNTERS)
MAX_STATE_VALUE = 1e10
"""MuJoCo's own limit (``mjMAXVAL``): a larger ``qpos``/``qvel`` entry makes MuJoCo call the simulation unstable.
The env treats a world with any state entry beyond it (or non-finite) as unstable."""
OBSERVATION_LIMIT_FACTOR = 1000.0
"""An observation entry beyond this many times the task's observation scale marks its world unstable.

The scale is the largest |entry| of the start states' observations (at least 1), measured once at
construction, separately for the actor's and the critic's observations. Healthy worlds stay far inside:
under random actions no task's observations exceed 75, 9 to 70 times its scale. A world blowing up
passes the limit long before MuJoCo's 1e10, so its values never reach the observation normalizers,
which would otherwise keep their inflated variance for the rest of the run."""


class BatchedEnv:
    """``num_envs`` parallel episodes of one task with autoreset (see module docstring)."""

    def __init__(
        self,
        task: Task,
        physics: Physics,
        seed: int = 0,
        reset_pool_size: int | None = None,
        host_shortcuts: bool | None = None,
    ) -> None:
        self.task = task
        self.physics = physics
        self.num_envs = physics.num_worlds
        self.device = physics.device
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

        model = physics.mj_model
        ranges = torch.as_tensor(model.actuator_ctrlrange, dtype=torch.float32)
        limited = torch.as_tensor(model.actuator_ctrllimited, dtype=torch.bool) & (not task.normalized_actions)
        self.action_low = torch.where(limited, ranges[:, 0], -1.0).to(self.device)
        self.action_high = torch.where(limited, ranges[:, 1], 1.0).to(self.device)
        self.action_dim = model.nu
        if task.action_size is not None:  # normalized actions, not one per actuator
            self.action_dim = task.action_size
            self.action_low = torch.full((self.action_dim,), -1.0, device=self.device)
            self.action_high = torch.full((self.action_dim,), 1.0, device=self.device)
        self.episode_length = task.config.episode_length
        self.ctrl_dt = task.config.ctrl_dt
        self.action_repeat = task.config.action_repeat
        self.host_shortcuts = self.device.type == "cpu" if host_shortcuts is None else host_shortcuts
        """Skip masked per-world work after a scalar host check (default: on the CPU); off on CUDA (no sync,
        graph-capturable). Same random draws either way. The agent's rollout follows this switch too."""
        self.randomizer = DomainRandomizer(task.randomization, physics) if task.config.randomize else None
        self._redraw_at_reset = self.randomizer if task.config.randomize_every_reset else None
        if self.randomizer is not None:  # before the start states: settling runs in the worlds as trained
            everyone = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
            self.randomizer.write(self.randomizer.draw(self.generator), everyone)

        self._episode_step = torch.zeros(self.num_envs, dtype=torch.int64, device=self.device)
        self._time_limit = torch.full((self.num_envs,), self.episode_length, dtype=torch.int64, device=self.device)
        """Steps after which each world's current episode is truncated: ``episode_length`` except for the
        first episodes after a staggered :meth:`reset`."""
        self._episode_return = torch.zeros(self.num_envs, dtype=torch.float32, device=self.device)
        self.stats = {name: torch.zeros((), dtype=torch.int64, device=self.device) for name in COUNTERS}
        self.reward_term_names = task.reward_term_names
        """The parts of the task's reward, summed per episode (none for the DM tasks)."""
        self._episode_reward_terms = torch.zeros(
            self.num_envs, len(self.reward_term_names), dtype=torch.float32, device=self.device
        )
        self._reward_term_totals = torch.zeros(len(self.reward_term_names), dtype=torch.float64, device=self.device)
        self._overflow_counts = torch.zeros(len(OVERFLOW_COUNTERS), dtype=torch.int64, device=self.device)
        self.stats.update(zip(OVERFLOW_COUNTERS, self._overflow_counts.unbind(), strict=True))  # views: one add

        # Tasks without a privileged critic observation hand the actor's to the critic: compute it once.
        self._critic_sees_actor_obs = task.critic_sees_actor_obs
        pool_size = reset_pool_size or max(self.num_envs, 1024)
        self._pool = self._build_start_pool(pool_size)
        self.task_state: TaskState = task.initial_state(self.generator, self.num_envs, physics)
        """Per-world task state (commands, timers, last actions, ...): replaced in place, never rebound."""
        obs, critic_obs = self._observations()
        self.obs_dim, self.critic_obs_dim = int(obs.shape[-1]), int(critic_obs.shape[-1])
        self.obs_limit, self.critic_obs_limit = (
            OBSERVATION_LIMIT_FACTOR * max(1.0, float(values.abs().amax())) for values in (obs, critic_obs)
        )
        """Observation entries beyond these (actor, critic) mark a world unstable; see ``OBSERVATION_LIMIT_FACTOR``."""

    # ----------------------------------------------------------------- start states
    def _build_start_pool(self, size: int) -> dict[str, torch.Tensor]:
        """Sample, settle and snapshot ``size`` start states, ``num_envs`` at a time."""
        chunks: dict[str, list[torch.Tensor]] = {name: [] for name in STATE_FIELDS}
        everyone = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        for _ in range(-(-size // self.num_envs)):
            self._write_start_states(everyone)
            if self.task.settle_steps:
                self.physics.step(self.task.settle_steps)
                self.physics.time.zero_()
            for name in STATE_FIELDS:
                chunks[name].append(getattr(self.physics, name).clone())
            self._check_start_buffers()
        pool = {name: torch.cat(parts)[:size] for name, parts in chunks.items()}
        if not bool(_stable_worlds((pool["qpos"], pool["qvel"]), (MAX_STATE_VALUE, MAX_STATE_VALUE)).all()):
            raise ValueError(
                f"task {self.task.name}: unstable start states after settling (non-finite or beyond "
                f"{MAX_STATE_VALUE:g}); the model is unstable with these task options "
                f"({self.task.config})"
            )
        return pool

    def _check_start_buffers(self) -> None:
        """Fail with the fix when the start states just written (and settled) overflow a physics buffer."""
        overflowed = self.physics.take_overflow().any(dim=0).tolist()
        for kind, full in zip(OVERFLOW_KINDS, overflowed, strict=True):
            if full and kind in BUFFER_KINDS:
                raise ValueError(
                    f"task {self.task.name}: its start states overflow the physics' {kind} buffer; "
                    f"{self.physics.overflow_fix(kind)}"
                )

    def _write_start_states(self, mask: torch.Tensor) -> None:
        """Fresh samples from the task's reset distribution into the worlds in ``mask``, then forward."""
        start = self.task.sample_start(self.generator, self.num_envs, self.physics)
        self._write_state(
            mask,
            {
                "qpos": start.qpos,
                "qvel": start.qvel,
                "ctrl": self.task.start_ctrl(start.qpos),
                "mocap_pos": start.mocap_pos,
                "mocap_quat": start.mocap_quat,
            },
        )
        self.physics.forward()

    def _write_state(self, mask: torch.Tensor, values: dict[str, torch.Tensor | None]) -> None:
        """Overwrite state fields of the worlds in ``mask``; fields not given go to their defaults."""
        physics = self.physics
        model = physics.mj_model
        defaults = {
            "act": torch.zeros_like(physics.act),
            "ctrl": torch.zeros_like(physics.ctrl),
            "time": torch.zeros_like(physics.time),
            "mocap_pos": _model_mocap(model.body_pos, model.body_mocapid, physics.mocap_pos),
            "mocap_quat": _model_mocap(model.body_quat, model.body_mocapid, physics.mocap_quat),
        }
        for name in ("qpos", "qvel", "act", "ctrl", "mocap_pos", "mocap_quat", "time"):
            value = values.get(name)
            if value is None:
                value = defaults[name]
            view = getattr(physics, name)
            view.copy_(torch.where(_expand_mask(mask, view), value.to(view.dtype), view))
        physics.xfrc_applied.masked_fill_(_expand_mask(mask, physics.xfrc_applied), 0.0)
        physics.clear_warmstart(mask)

    def _autoreset(self, done: torch.Tensor) -> None:
        """Copy a random pool entry into every finished world, give it fresh task state (drawn after the copy),
        run the task's ``after_reset`` on it and restart its episode counters.

        The pool indices, fresh task state and ``after_reset``'s draws are drawn for every world on every call,
        also when the host shortcut then finds nothing to reset: the generator's stream must not depend on
        ``host_shortcuts``.
        """
        pool_size = self._pool["qpos"].shape[0]
        index = torch.randint(pool_size, (self.num_envs,), generator=self.generator, device=self.device)
        resetting = not self.host_shortcuts or bool(done.any())
        if resetting:
            for name in STATE_FIELDS:
                view = getattr(self.physics, name)
                view.copy_(torch.where(_expand_mask(done, view), self._pool[name][index], view))
            self.physics.xfrc_applied.masked_fill_(_expand_mask(done, self.physics.xfrc_applied), 0.0)
            self.physics.clear_warmstart(done)
        fresh = self._fresh_task_state({})
        redraw = self._redraw_at_reset
        parameters = redraw.draw(self.generator) if redraw is not None else {}
        if resetting:
            if redraw is not None:
                redraw.write(parameters, done)
            self._write_task_state(done, fresh)
            self._episode_step.masked_fill_(done, 0)
            self._episode_return.masked_fill_(done, 0.0)
            self._episode_reward_terms.masked_fill_(done.unsqueeze(-1), 0.0)
            self._time_limit.masked_fill_(done, self.episode_length)
        self.task.after_reset(self.physics, self.task_state, done, self.generator)

    def _fresh_task_state(self, given: TaskState) -> TaskState:
        """Task state drawn from the task's reset distribution for every world, with ``given`` entries instead."""
        if not self.task_state:
            return {}
        fresh = self.task.initial_state(self.generator, self.num_envs, self.physics)
        fresh.update(given)
        return fresh

    def _write_task_state(self, mask: torch.Tensor, fresh: TaskState) -> None:
        """Write the ``fresh`` task state entries into the worlds in ``mask``, in place (captured graphs read these
        tensors)."""
        for name, value in fresh.items():
            view = self.task_state[name]
            view.copy_(torch.where(_expand_mask(mask, view), value.to(view.dtype), view))

    def _record_reward_terms(self, terms: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        """Add a step's reward terms [N, K] to the episode sums (non-finite entries count 0) and the finished
        episodes' sums to ``reward_term_totals``; returns the episode sums up to this step (a copy)."""
        self._episode_reward_terms += torch.where(torch.isfinite(terms), terms, 0.0)
        episode_terms = self._episode_reward_terms.clone()
        self._reward_term_totals += torch.where(done.unsqueeze(-1), episode_terms, 0.0).sum(0, dtype=torch.float64)
        return episode_terms

    # ----------------------------------------------------------------- public API
    @property
    def start_states(self) -> dict[str, torch.Tensor]:
        """The start-state pool that resets copy from (``STATE_FIELDS`` -> [reset_pool_size, ...]); to inspect
        the task's start distribution, or to start worlds from chosen entries with :meth:`reset_to`."""
        return dict(self._pool)

    @property
    def reward_term_totals(self) -> dict[str, torch.Tensor]:
        """Reward term name -> float64 scalar: the term summed over every episode finished so far (views on the
        device, cumulative like ``stats``; divide differences by those of ``stats["episodes"]`` for means)."""
        return dict(zip(self.reward_term_names, self._reward_term_totals.unbind(), strict=True))

    @property
    def episode_step(self) -> torch.Tensor:
        """[N] int64: steps taken so far in each world's current episode (a copy)."""
        return self._episode_step.clone()

    def reset(self, seed: int | None = None, staggered: bool = False) -> TensorDict:
        """Start a new episode in every world from the start-state pool; optionally reseed first.

        ``staggered=True`` gives each world's first episode a time limit drawn uniformly from
        ``1 .. episode_length`` (the env's generator); every later episode has the full length. Worlds
        reset together otherwise hit their time limit in the same step, forever: each training batch
        then holds one phase of the episode only, and every ``episode_length`` steps all worlds
        truncate at once. Training starts staggered (``alg.stagger_episodes``); evaluation does not.
        """
        if seed is not None:
            self.generator.manual_seed(seed)
        everyone = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        self._autoreset(everyone)
        if staggered:
            self._time_limit.copy_(
                torch.randint(
                    1, self.episode_length + 1, (self.num_envs,), generator=self.generator, device=self.device
                )
            )
        return self._observe()

    def reset_to(
        self,
        qpos: torch.Tensor,
        qvel: torch.Tensor,
        ctrl: torch.Tensor | None = None,
        mocap_pos: torch.Tensor | None = None,
        mocap_quat: torch.Tensor | None = None,
        task_state: TaskState | None = None,
    ) -> TensorDict:
        """Start every world from the given joint state (time 0, no settling, no applied forces); tensors or
        numpy arrays.

        ``ctrl`` defaults to the task's start control for ``qpos`` (Go1: the joint angles; DM tasks: 0).
        Task state kept in mocap bodies (targets) is taken from ``mocap_pos``/``mocap_quat`` when
        given, else drawn from the task's reset distribution with the env's seeded generator; likewise
        ``task_state`` (e.g. ``{"command": tensor[N, 3]}`` for a joystick task): the names given are used,
        every other entry of ``env.task_state`` is drawn fresh (then seeded by the task's ``after_reset``).
        """
        physics = self.physics
        given = {"qpos": qpos, "qvel": qvel, "ctrl": ctrl, "mocap_pos": mocap_pos, "mocap_quat": mocap_quat}
        for name, value in given.items():
            if value is not None:
                given[name] = _reset_value(name, value, tuple(getattr(physics, name).shape))
        for name in task_state or {}:
            if name not in self.task_state:
                raise ValueError(
                    f"reset_to: task {self.task.name} has no task state {name!r}; valid: {sorted(self.task_state)}"
                )
        task_state = {
            name: _reset_value(f"task_state[{name!r}]", value, tuple(self.task_state[name].shape))
            for name, value in (task_state or {}).items()
        }
        if ctrl is None:
            start_qpos = given["qpos"]
            assert start_qpos is not None  # a required argument, converted above
            given["ctrl"] = self.task.start_ctrl(start_qpos.to(device=self.device, dtype=physics.dtype))
        if mocap_pos is None or mocap_quat is None:
            sampled = self.task.sample_start(self.generator, self.num_envs, physics)
            given["mocap_pos"] = mocap_pos if mocap_pos is not None else sampled.mocap_pos
            given["mocap_quat"] = mocap_quat if mocap_quat is not None else sampled.mocap_quat
        everyone = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        self._write_state(everyone, {k: (v.to(self.device) if v is not None else None) for k, v in given.items()})
        physics.forward()
        given_state = {name: value.to(self.device) for name, value in task_state.items()}
        self._write_task_state(everyone, self._fresh_task_state(given_state))
        self.task.after_reset(physics, self.task_state, everyone, self.generator)
        self._write_task_state(everyone, given_state)  # the entries given win over what after_reset seeded
        self._episode_step.zero_()
        self._episode_return.zero_()
        self._episode_reward_terms.zero_()
        self._time_limit.fill_(self.episode_length)
        return self._observe()

    def step(self, action: torch.Tensor) -> TensorDict:
        """Apply ``action`` [N, action_dim] for one control period in every world; see module docstring.

        Non-finite action entries are replaced by 0 (and counted in ``stats["nonfinite_actions"]``),
        then actions are clipped to the actuators' control range. An unstable world (``qpos``, ``qvel``
        or observation non-finite, state beyond ``MAX_STATE_VALUE``, observation beyond ``obs_limit`` or
        ``critic_obs_limit``) is terminated, its reward set to 0,
        its final observations zeroed, and it is reset (counted in ``stats["nonfinite_states"]``).

        With ``host_shortcuts`` (the CPU) the rare cases (non-finite action, unstable state) are found by one
        scalar check each and only then take the per-world masked path; otherwise that path always
        runs (no host sync, graph-safe).
        """
        self._check_action(action)
        shortcuts = self.host_shortcuts
        action = action.float()
        if not (shortcuts and bool(torch.isfinite(action).all())):
            finite = torch.isfinite(action)
            self.stats["nonfinite_actions"] += (~finite.all(dim=-1)).sum()
            action = torch.where(finite, action, 0.0)
        action = action.clamp(self.action_low, self.action_high)

        physics = self.physics
        task_action = action.to(physics.dtype)
        reward: float | torch.Tensor = 0.0
        terms: float | torch.Tensor = 0.0
        terminated: bool | torch.Tensor = False
        for _ in range(self.action_repeat):
            self.task.control(physics, task_action, self.task_state, self.generator)
            physics.step()
            result = self.task.transition(physics, task_action, self.task_state, self.generator)
            reward = reward + result.reward.float()
            if self.reward_term_names:
                terms = terms + self._stack_reward_terms(result.reward_terms)
            terminated = terminated | result.terminated
        assert isinstance(reward, torch.Tensor) and isinstance(terminated, torch.Tensor)  # action_repeat >= 1
        overflowed = physics.take_overflow()
        if not (shortcuts and not bool(overflowed.any())):
            self._overflow_counts += overflowed.sum(dim=0)
        obs, critic_obs = self._float_observations(result.obs, result.critic_obs)
        # One scalar test covers the common case: every entry finite and within its limit.
        checked = (physics.qpos, physics.qvel, obs, critic_obs)
        limits = (MAX_STATE_VALUE, MAX_STATE_VALUE, self.obs_limit, self.critic_obs_limit)
        all_stable = shortcuts and bool((_largest_ratio(checked, limits) <= 1.0) & torch.isfinite(reward.sum()))
        if all_stable:
            unstable = torch.zeros_like(terminated)
        else:
            unstable = ~_stable_worlds(checked, limits)
            bad_reward = ~torch.isfinite(reward) | unstable
            self.stats["nonfinite_states"] += unstable.sum()
            self.stats["nonfinite_rewards"] += bad_reward.sum()
            reward = torch.where(bad_reward, 0.0, reward)
            if self.reward_term_names:
                terms = torch.where(bad_reward.unsqueeze(-1), 0.0, terms)
            obs = torch.where(unstable.unsqueeze(-1), 0.0, obs)
            critic_obs = obs if self._critic_sees_actor_obs else torch.where(unstable.unsqueeze(-1), 0.0, critic_obs)
            terminated = terminated | unstable
        self._episode_step += 1
        self._episode_return += reward
        truncated = (self._episode_step >= self._time_limit) & ~terminated
        done = terminated | truncated
        self.stats["episodes"] += done.sum()

        episode_return, episode_length = self._episode_return.clone(), self._episode_step.clone()
        episode_terms = {}
        if self.reward_term_names:
            assert isinstance(terms, torch.Tensor)  # action_repeat >= 1
            episode_terms["episode_reward_terms"] = self._record_reward_terms(terms, done)
        self._autoreset(done)
        next_obs = self._observe(done, obs, critic_obs)
        return TensorDict(
            {
                "obs": next_obs["obs"],
                "critic_obs": next_obs["critic_obs"],
                "final_obs": obs,
                "final_critic_obs": critic_obs,
                "reward": reward,
                "terminated": terminated,
                "truncated": truncated,
                "done": done,
                "nonfinite": unstable,
                "episode_return": episode_return,
                "episode_length": episode_length,
                **episode_terms,
            },
            batch_size=[self.num_envs],
            device=self.device,
        )

    # ----------------------------------------------------------------- helpers
    def _observe(
        self, reset: torch.Tensor | None = None, obs: torch.Tensor | None = None, critic_obs: torch.Tensor | None = None
    ) -> TensorDict:
        """Observations of the current state; only worlds in ``reset`` take the fresh ones when given.

        Computed for every world on every call, with no host shortcut: a task's observation may draw noise
        from the env's generator, and the stream must not depend on ``host_shortcuts``.
        """
        fresh_obs, fresh_critic = self._observations()
        if reset is None or obs is None or critic_obs is None:
            new_obs, new_critic = fresh_obs, fresh_critic
        else:
            column = reset.unsqueeze(-1)
            new_obs = torch.where(column, fresh_obs, obs)
            new_critic = new_obs if self._critic_sees_actor_obs else torch.where(column, fresh_critic, critic_obs)
        return TensorDict({"obs": new_obs, "critic_obs": new_critic}, batch_size=[self.num_envs], device=self.device)

    def _observations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(actor, critic) observations of the current state as float32."""
        return self._float_observations(*self.task.observe(self.physics, self.task_state, self.generator))

    def _float_observations(self, obs: torch.Tensor, critic_obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        obs = obs.float()
        return obs, (obs if self._critic_sees_actor_obs else critic_obs.float())

    def _stack_reward_terms(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """A transition's reward terms as one [N, K] float32 tensor in ``reward_term_names`` order."""
        if tuple(terms) != self.reward_term_names:
            raise ValueError(
                f"task {self.task.name}: transition reported reward terms {list(terms)}, but its "
                f"reward_term_names are {list(self.reward_term_names)}; report the same names in that order"
            )
        return torch.stack(list(terms.values()), dim=-1).float()

    def _check_action(self, action: torch.Tensor) -> None:
        expected = (self.num_envs, self.action_dim)
        if not isinstance(action, torch.Tensor):
            raise TypeError(f"action must be a torch.Tensor of shape {expected}, got {type(action).__name__}")
        if tuple(action.shape) != expected:
            raise ValueError(f"action must have shape {expected} (num_envs, action_dim), got {tuple(action.shape)}")
        if not action.dtype.is_floating_point:
            raise TypeError(f"action must be a floating-point tensor, got dtype {action.dtype}")
        if action.device != self.device:
            raise ValueError(f"action is on {action.device} but the env runs on {self.device}; move it with .to()")


def _reset_value(name: str, value: Any, expected: tuple[int, ...]) -> torch.Tensor:
    """``value`` as a tensor for :meth:`BatchedEnv.reset_to`, or one clear error: not an array, no data (a meta
    tensor), wrong shape, or a NaN or inf (a world started there would count as unstable at its first step)."""
    try:
        tensor = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"reset_to: {name} must be a tensor or array of shape {expected}, got {type(value).__name__}"
        ) from None
    if tensor.device.type == "meta":
        raise ValueError(f"reset_to: {name} is a meta tensor (a shape without values); pass one holding values")
    if tuple(tensor.shape) != expected:
        raise ValueError(f"reset_to: {name} must have shape {expected}, got {tuple(tensor.shape)}")
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"reset_to: {name} holds NaN or inf entries; every entry must be finite")
    return tensor


def _largest_ratio(tensors: tuple[torch.Tensor, ...], limits: tuple[float, ...]) -> torch.Tensor:
    """The largest ``|entry| / limit`` over ``tensors`` (NaN if any entry is NaN), as one float64 scalar."""
    return torch.stack([t.abs().amax().double() / limit for t, limit in zip(tensors, limits, strict=True)]).amax()


def _stable_worlds(tensors: tuple[torch.Tensor, ...], limits: tuple[float, ...]) -> torch.Tensor:
    """[N] bool: the worlds whose entries in every [N, ...] tensor are finite and within that tensor's limit."""
    stable = torch.ones(tensors[0].shape[0], dtype=torch.bool, device=tensors[0].device)
    for tensor, limit in zip(tensors, limits, strict=True):
        stable &= (tensor.abs() <= limit).flatten(1).all(dim=-1)
    return stable


def _expand_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-world [N] mask over the trailing dims of ``like``."""
    return mask.view(mask.shape[0], *([1] * (like.dim() - 1)))


def _model_mocap(body_values, body_mocapid, like: torch.Tensor) -> torch.Tensor:
    """The model's default mocap positions/orientations, broadcast to every world."""
    values = torch.zeros(like.shape[1:], dtype=like.dtype)
    for body, mocap in enumerate(body_mocapid):
        if mocap >= 0:
            values[mocap] = torch.as_tensor(body_values[body], dtype=like.dtype)
    return values.to(like.device).expand_as(like)

"""The training run behind ``scripts/train.py``: envs, agent, evaluation, logging, checkpoints, resume.

``run_training`` is hydra-free (it takes the composed config as a plain dict and an output folder),
so tests and notebooks can drive it directly.

What can go wrong, and what the run then does:

- **Divergence.** At every log point (the loop's one device-to-host copy) the losses and metrics are
  checked, together with a device-side count of non-finite weights; every checkpoint is preceded by a
  log point, and before every evaluation and checkpoint the weights are checked again. Anything
  non-finite stops the run with :class:`TrainingDiverged`, naming the update, and so do finite Q
  estimates out of all proportion to the rewards (:func:`runaway_value`); the diverged state is never
  saved, so the latest checkpoint stays the last good one.
- **Unstable physics.** Worlds the env had to reset are counted; when their rate over a log interval
  crosses ``UNSTABLE_WARNING_RATE`` the console says so (once, until the rate drops again).
- **Physics buffer overflows** (MuJoCo Warp): the worlds whose step overflowed a contact or constraint
  buffer are counted per kind (tensorboard ``physics/overflow_<kind>``); the console says so once per
  kind, with the task override that makes room, and the run ends with the totals. Solver iteration limits
  (``physics/solver_iteration_limit``) are expected with Playground's settings: logged, never warned about.
- **Ctrl-C / SIGTERM.** The first signal finishes the current update (or stops the evaluation),
  saves a checkpoint, flushes tensorboard and raises :class:`TrainingInterrupted` with the command to
  resume; a second one stops at once.
- **Several ranks (torchrun).** Rank 0 alone evaluates, logs, shows progress and writes the run dir;
  the others hold no run dir. Stop signals and divergence are agreed on at the log points (one
  ``all_reduce`` carries the metrics, the counters and a stop flag), so every rank stops at the same
  update and none waits forever in a collective; see :mod:`pqn_torch.distributed`. A rank that dies
  makes the others' next collective fail: rank 0 then saves what it has (the weights as they are, the
  random states of the ranks it can no longer reach drawn afresh on resume) without another
  collective, and every survivor ends with :class:`~pqn_torch.distributed.RanksLost`.
- **A full disk.** A tensorboard or ``eval.csv`` write that fails is one warning, and that file is
  written no more (:class:`~pqn_torch.training.logger.RunLogger`); a checkpoint that cannot be written is
  reported with its file and reason, and the run goes on; only a failed final checkpoint ends the run, in
  one line naming the intact latest checkpoint and the command that resumes from it.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from pqn_torch import distributed
from pqn_torch.algo import metrics
from pqn_torch.algo.metrics import TAGS
from pqn_torch.algo.pqn import PQN
from pqn_torch.cuda_graph import WARMUP_CALLS, synchronize
from pqn_torch.envs import VecEnv, make_env
from pqn_torch.envs.core import OVERFLOW_COUNTERS
from pqn_torch.envs.physics.base import BUFFER_KINDS
from pqn_torch.envs.physics.mujoco_warnings import capture_mujoco_warnings
from pqn_torch.training.checkpoint import (
    CHECKPOINT_DIR,
    CheckpointWriteError,
    SavedCheckpoint,
    best_checkpoint,
    listed,
    load_checkpoint,
    nonfinite_weights,
    prune_checkpoints,
    save_checkpoint,
    weight_tensors,
)
from pqn_torch.training.evaluation import EvalResult, evaluate, format_return
from pqn_torch.training.logger import QuietLogger, RunLogger
from pqn_torch.training.remaining import RemainingTime, duration
from pqn_torch.training.run_dir import check_writable, claim_run_dir, remove_failed_start
from pqn_torch.training.settings import (
    ConfigError,
    interval_updates,
    merge_for_resume,
    resume_location,
    settings_from_config,
)
from pqn_torch.training.setup import set_up_agent, start_ranks

VALUE_SCALE_LIMIT = 1000.0
"""How far past ``reward scale / (1 - gamma)`` (the largest |Q| its rewards allow) a Q estimate may go before
the run counts as diverged; see :func:`runaway_value`."""
UNSTABLE_WARNING_RATE = 1e-3
"""Fraction of world-steps reset as unstable, over one log interval, above which the console warns."""
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
REWARD_TERMS = "reward_terms"
"""Tensorboard section of the per-episode reward-term means (``reward_terms/<name>``)."""


class TrainingDiverged(RuntimeError):
    """Losses, metrics or weights became non-finite; the message names the update and the latest checkpoint."""


class TrainingInterrupted(KeyboardInterrupt):
    """Stopped by a signal; ``signum`` is the signal, the message says what was saved and how to resume."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum


class _StopRequested(Exception):
    """Raised inside an evaluation to cut it short after a stop signal."""


@dataclass
class TrainSummary:
    """What a finished run reports: where it wrote, how far it got, and its evaluation curve."""

    run_dir: Path
    env_steps: int
    updates: int
    checkpoint: Path | None
    eval_curve: list[dict[str, float]] = field(default_factory=list)
    best: SavedCheckpoint | None = None  # the kept checkpoint with the highest evaluation return

    @property
    def final_eval_return(self) -> float:
        return self.eval_curve[-1]["return_mean"] if self.eval_curve else float("nan")


def run_training(
    config: dict[str, Any], run_dir: str | Path, alg_preset: str | None = None, show_progress: bool = True
) -> TrainSummary:
    """Train (or resume) the run described by ``config`` and write everything under ``run_dir``."""
    return TrainingRun(config, run_dir, alg_preset, show_progress).run()


class TrainingRun:
    """One training run: set up at construction (where every config error surfaces), then :meth:`run`.

    ``config`` is the resolved hydra config as a plain dict; ``alg_preset`` the name of the ``alg``
    preset in use (for the hint that points CPU users at its CPU-sized twin in ``config["cpu_presets"]``).
    ``overrides``: the config keys
    the command line set, which a resumed run checks against its checkpoint
    (:func:`~pqn_torch.training.settings.merge_for_resume`). ``rename_if_taken``: ``run_dir`` is a
    default name, replaced by ``<name>_<n>`` when another run holds it. A failed construction removes
    what it created.
    """

    def __init__(
        self,
        config: dict[str, Any],
        run_dir: str | Path,
        alg_preset: str | None = None,
        show_progress: bool = True,
        overrides: Sequence[str] = (),
        rename_if_taken: bool = False,
    ) -> None:
        self.started = time.perf_counter()
        self.alg_preset = alg_preset
        self._claimed_dir: Path | None = None
        try:
            self._set_up(config, Path(run_dir), show_progress, overrides, rename_if_taken)
        except BaseException:
            remove_failed_start(self._claimed_dir, Path(run_dir))
            raise

    def _set_up(
        self,
        config: dict[str, Any],
        requested_dir: Path,
        show_progress: bool,
        overrides: Sequence[str],
        rename_if_taken: bool,
    ) -> None:
        checkpoint = None
        schedule_timesteps = None
        if resume_location(config):
            checkpoint = load_checkpoint(config["resume"])
            config = merge_for_resume(checkpoint["config"], config, overrides)
            schedule_timesteps = checkpoint.get("schedule_timesteps", checkpoint["config"]["total_timesteps"])
        self.config = config
        self.settings = settings = settings_from_config(config, distributed.launched_world_size(), overrides)
        ranks, device = start_ranks(settings)
        self.ranks = ranks
        # alg.num_envs is per rank; total_timesteps counts the env steps of all ranks together.
        steps_per_update = ranks.world_size * settings.alg.num_envs * settings.alg.num_steps
        self.num_updates = settings.total_timesteps // steps_per_update
        if checkpoint is not None and checkpoint.get("world_size", 1) != ranks.world_size:
            raise ConfigError(
                f"resume: {checkpoint['path']} was trained by {checkpoint.get('world_size', 1)} "
                f"rank(s), this run has {ranks.world_size}; resume with the same number of ranks "
                f"(torchrun --nproc_per_node=...)"
            )
        if checkpoint is not None and checkpoint["updates"] >= self.num_updates:
            raise ConfigError(
                f"resume: {checkpoint['path']} is the end of its run ({checkpoint['env_steps']:,} env "
                f"steps); pass a larger total_timesteps to extend it"
            )
        self.schedule_timesteps = int(schedule_timesteps or settings.total_timesteps)
        if ranks.is_main:
            self._claimed_dir = claim_run_dir(requested_dir, rename_if_taken)

        # Schedules (learning rate, noise) span the run as first planned; an extended run's extra steps use
        # their final values.
        setup = set_up_agent(settings, ranks, device, self.schedule_timesteps // ranks.world_size)
        self.env, self.agent, agent = setup.env, setup.agent, setup.agent
        backend, use_compile, use_graphs = setup.backend, setup.compile, setup.cuda_graphs
        self.eval_env = (
            make_env(
                settings.task,
                settings.eval_num_envs,
                device,
                backend,
                settings.seed + 1,
                num_threads=settings.num_threads,
                **settings.task_overrides,
            )
            if ranks.is_main
            else None
        )
        if checkpoint is not None:
            agent.load_checkpoint_state(checkpoint["agent"])
            bad = nonfinite_weights(agent)
            if bad:
                raise ValueError(
                    f"{checkpoint['path']} holds non-finite weights ({listed(bad)}): it comes from a "
                    "diverged run; resume from an earlier checkpoint"
                )
            _restore_rng(checkpoint.get("rank_rng", [checkpoint["rng"]])[ranks.rank], self.env, self.eval_env)
        distributed.broadcast_module(agent)
        if not ranks.is_main:  # hydra made a run dir for this rank too: only rank 0's (named on all ranks) stays
            remove_failed_start(None, requested_dir)
        self.run_dir = Path(distributed.broadcast_object(str(self._claimed_dir)))  # rank 0's, on every rank
        self.checkpoint_dir = self.run_dir / CHECKPOINT_DIR
        agent.reset(self.env, update_statistics=checkpoint is None)

        self.eval_every = interval_updates(settings.eval_interval, self.num_updates)
        # The time estimate leaves out start-up: the first update, and before it the compilation (compile) or
        # the two eager iterations plus the capture (cuda_graphs).
        warmup_updates = WARMUP_CALLS + 1 if use_graphs else 1 if use_compile else 0
        self.remaining = RemainingTime(self.num_updates, self.eval_every, startup_updates=1 + warmup_updates)
        self.checkpoint_every = interval_updates(settings.checkpoint_interval, self.num_updates)
        checkpoints = 1 + (self.num_updates // self.checkpoint_every if self.checkpoint_every else 0)
        if settings.keep_checkpoints is not None:  # the kept ones, the best, and the one being written
            checkpoints = min(checkpoints, settings.keep_checkpoints + 2)
        space_note = check_writable(self.run_dir, _checkpoint_bytes(agent), checkpoints) if ranks.is_main else None
        if ranks.is_main:
            OmegaConf.save(OmegaConf.create(config), self.run_dir / "config.yaml")

        self.eval_curve: list[dict[str, float]] = []
        self.last_checkpoint: Path | None = Path(checkpoint["path"]) if checkpoint is not None else None
        self._saved_update = -1
        self.saved_checkpoints: list[SavedCheckpoint] = []  # those of this run still on disk, oldest first
        self._logged_update = agent.updates_issued
        self._steps_at_log = self.env_steps
        self._train_seconds = 0.0
        self._last_finite_update = agent.updates_issued
        self._reward_scale = 0.0
        self._ranks_lost = False
        self._unstable_at_log = 0.0
        self._unstable_warned = False
        self._reward_terms_at_log: dict[str, float] = {}
        self._episodes_at_log = 0.0
        self._overflows: dict[str, float] = {}
        """Worlds counted per buffer kind whose step overflowed it, as of the last log (only kinds seen)."""
        self._stop_signal: int | None = None
        self._signal_received: int | None = None
        self.mujoco_warnings = capture_mujoco_warnings()
        self.logger = (
            RunLogger(self.run_dir, self.num_updates * steps_per_update, self.env_steps, show_progress)
            if ranks.is_main
            else QuietLogger()
        )
        envs = f"{ranks.world_size} ranks x " if ranks.world_size > 1 else ""
        self.logger.message(
            f"pqn-torch: task {settings.task}, device {device}, backend {backend}, {envs}{settings.alg.num_envs} envs, "
            f"compile {'on' if use_compile else 'off'}, CUDA graphs {'on' if use_graphs else 'off'}, "
            f"{self.num_updates} updates of {steps_per_update} env steps; writing to {self.run_dir}"
        )
        if self.run_dir != requested_dir:
            self.logger.message(
                f"{requested_dir} belongs to another run (started at the same time); using {self.run_dir}"
            )
        for note in (space_note, *settings.notes):
            if note:
                self.logger.message(note)
        if checkpoint is not None:
            for path, reason in checkpoint["skipped"]:
                self.logger.message(f"warning: {path} is unreadable ({reason}); skipped it")
            self.logger.message(f"resumed from {checkpoint['path']} at env step {checkpoint['env_steps']:,}")
            if self.num_updates * steps_per_update > self.schedule_timesteps:
                self.logger.message(
                    f"extending the run to {self.num_updates * steps_per_update:,} env steps; "
                    f"learning rate and noise stay at their final values after "
                    f"{self.schedule_timesteps:,}"
                )

    def run(self) -> TrainSummary:
        """Train to ``total_timesteps``, evaluating, logging and checkpointing on the way.

        Raises :class:`TrainingDiverged`, :class:`TrainingInterrupted`, or :class:`CheckpointWriteError`
        for a final checkpoint that could not be written.
        """
        previous = self._catch_stop_signals()
        try:
            self._loop()
        except RuntimeError as error:
            if self.ranks.world_size == 1 or not distributed.lost_peer(error):
                raise
            self._after_losing_ranks(error)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.logger.close()
        self._report_unstable_total()
        self._report_overflow_totals()
        return TrainSummary(
            run_dir=self.run_dir,
            env_steps=self.env_steps,
            updates=self.agent.updates_issued,
            checkpoint=self.last_checkpoint,
            eval_curve=self.eval_curve,
            best=best_checkpoint(self.saved_checkpoints),
        )

    @property
    def steps_per_update(self) -> int:
        """Env steps of one update, all ranks together."""
        return self.agent.steps_per_update * self.ranks.world_size

    @property
    def env_steps(self) -> int:
        """Env steps so far, all ranks together."""
        return self.agent.updates_issued * self.steps_per_update

    def _loop(self) -> None:
        agent = self.agent
        first = agent.updates_issued
        if first == 0:
            self._evaluate_unless_stopped(first)
        # The first estimate once two updates after start-up are timed (or at the last update of a short run).
        report_at = min(first + self.remaining.startup_updates + 2, self.num_updates)
        for update in range(first + 1, self.num_updates + 1):
            if self._stop_signal is not None:
                self._stop(update - 1)
            tick = time.perf_counter()
            agent.train_iteration(self.env)
            last = update == self.num_updates
            self._train_seconds += time.perf_counter() - tick
            if update % self.settings.log_interval == 0 or last:
                self.log(update)
            evaluation_seconds = 0.0
            if update % self.eval_every == 0 or last:
                evaluation_seconds = self._evaluate_unless_stopped(update)
            if (self.checkpoint_every and update % self.checkpoint_every == 0) or last:
                self.save(update, final=last)
            if update == report_at:
                synchronize(agent.device)
            self.remaining.update_done(time.perf_counter() - tick - evaluation_seconds)
            if update == report_at:
                self.report_speed(update)

    def log(self, update: int) -> None:
        """Tensorboard scalars and the progress bar; the loop's one device-to-host copy per log interval.

        The same copy carries the count of non-finite weights (a diverged run stops here) and the env's
        reward-term totals, logged as ``reward_terms/<name>``: each term's mean sum per episode finished in the
        interval (the terms of a step add up to its reward, so they add up to ``train/episode_return``).
        """
        synchronize(self.agent.device)
        seconds, self._train_seconds = self._train_seconds, 0.0
        steps_per_second = (self.env_steps - self._steps_at_log) / max(seconds, 1e-9)
        counters = {
            f"{'physics' if name in OVERFLOW_COUNTERS else 'env'}/{name}": value
            for name, value in self.env.stats.items()
        }
        counters.update({f"{REWARD_TERMS}/{name}": total for name, total in self.env.reward_term_totals.items()})
        nonfinite = [~torch.isfinite(tensor).all() for _, tensor in weight_tensors(self.agent)]
        counters["nonfinite_weights"] = torch.stack(nonfinite).sum()
        if self.ranks.world_size > 1:
            counters = self._merge_across_ranks(counters)
        metrics = self.agent.pop_metrics(counters)
        if metrics.pop("stop_requests", 0) and self._stop_signal is None:
            self._stop_signal = self._signal_received or signal.SIGTERM
        bad = [name for name, value in metrics.items() if not math.isfinite(value)]
        if metrics.pop("nonfinite_weights"):
            bad.insert(0, "weights")
        if bad:
            self._diverged(update, f"non-finite {listed(bad)}")
        self._reward_scale = max(self._reward_scale, abs(metrics.get("reward_mean", 0.0)))
        alg = self.settings.alg
        runaway = runaway_value(metrics, self._reward_scale, alg.gamma, self.env.episode_length, alg.num_critics)
        if runaway is not None:
            name, value, limit = runaway
            self._diverged(
                update,
                f"{TAGS[name]} reached {value:.3g}, beyond {limit:.3g} ({VALUE_SCALE_LIMIT:g} x the largest |Q| "
                f"that rewards of scale {max(self._reward_scale, 1.0):.3g} allow with gamma {alg.gamma:g})",
                healthy="finite and in bounds",
                advice=f"Lower alg.lr_start (now {alg.lr_start:g})",
            )
        self._last_finite_update = update
        self._logged_update = update
        reward_terms = self._reward_term_means(metrics)
        self.logger.agent_metrics(metrics, self.env_steps)
        scalars = {"perf/env_steps_per_s": steps_per_second, **reward_terms}
        if self.mujoco_warnings is not None:
            scalars["env/mujoco_warnings"] = self.mujoco_warnings.total
        self.logger.scalars(scalars, self.env_steps)
        left = self.remaining.seconds_after(update)
        self.logger.progress(
            self.env_steps, left=duration(left) if left is not None else "timing", sps=f"{steps_per_second:,.0f}"
        )
        self._check_unstable_rate(metrics["env/nonfinite_states"])
        self._note_overflows(metrics)
        self._steps_at_log = self.env_steps

    def _merge_across_ranks(self, counters: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """All ranks' metrics, counters and stop requests in one ``all_reduce``, so every rank decides alike.

        Episode metrics and counters are summed; the update and rollout metrics (sums over this rank's
        minibatches and rollouts) are averaged over the ranks.
        """
        counters["stop_requests"] = torch.tensor(float(self._signal_received is not None))
        sums = self.agent.metric_sums
        merged = torch.cat([sums, torch.stack([value.to(sums) for value in counters.values()])])
        distributed.sum_across_ranks(merged)
        for over in ("minibatch", "rollout"):
            merged[metrics.slots_over(over)] /= self.ranks.world_size
        sums.copy_(merged[: sums.numel()])
        return dict(zip(counters, merged[sums.numel() :], strict=True))

    def evaluate(self, update: int | None = None) -> EvalResult:
        """Deterministic episodes in the eval env; the weights are checked first (a NaN policy plays 0 actions)."""
        self._check_weights(self.agent.updates_issued if update is None else update)
        assert self.eval_env is not None, "only rank 0 evaluates"
        result = evaluate(self.agent.act, self.eval_env, recorder=_StopWatch(self))
        point = {
            "env_steps": self.env_steps,
            "wall_s": time.perf_counter() - self.started,
            "return_mean": result.mean_return,
            "return_std": result.std_return,
            "length_mean": result.mean_length,
            "episodes": result.episodes,
        }
        self.eval_curve.append(point)
        self.logger.scalars(
            {
                "eval/return_mean": result.mean_return,
                "eval/return_std": result.std_return,
                "eval/length_mean": result.mean_length,
                **{f"eval/milestone_{name}": share for name, share in result.milestone_shares.items()},
                **_tracking_scalars(result),
            },
            self.env_steps,
        )
        self.logger.progress(self.env_steps, eval_return=format_return(result.mean_return))
        self.logger.csv_row("eval.csv", point)
        return result

    def save(self, update: int, final: bool = False) -> Path | None:
        """Checkpoint the (finite) training state; a write failure is reported and, unless ``final``, survived.

        Every rank calls it (their random states are gathered for the checkpoint); rank 0 writes. A log
        point comes first, unless this update had one, so no checkpoint escapes the divergence checks.
        """
        if self._logged_update < update and not self._ranks_lost:
            self.log(update)
        self._check_weights(update)
        own_rng = _rng_state(self.env, self.eval_env)
        rank_rng: list[dict[str, Any] | None]
        if self._ranks_lost:  # no collective can reach the other ranks: their random states start afresh on resume
            rank_rng = [own_rng, *[None] * (self.ranks.world_size - 1)]
        else:
            rank_rng = list(distributed.gather_objects(own_rng))
        if not self.ranks.is_main:
            self._saved_update = update
            return None
        payload: dict[str, Any] = {
            "agent": self.agent.checkpoint_state(),
            "config": self.config,
            "rng": rank_rng[0],
            "updates": self.agent.updates_issued,
            "schedule_timesteps": self.schedule_timesteps,
            "world_size": self.ranks.world_size,
        }
        if self.ranks.world_size > 1:
            payload["rank_rng"] = rank_rng
        try:
            path = save_checkpoint(self.checkpoint_dir, self.env_steps, payload)
        except CheckpointWriteError as error:
            if final:
                kept = f"is {self.last_checkpoint}, intact; free some space; {self._resume_command()}"
                raise CheckpointWriteError(
                    f"{error}; the latest checkpoint {kept if self.last_checkpoint else 'is none'}"
                ) from None
            if self.ranks.world_size > 1:  # the other ranks count this update as saved: no second try at a stop
                self._saved_update = update
            self.logger.message(
                f"warning: {error}; training goes on, the latest checkpoint stays {self.last_checkpoint or 'none'}"
            )
            return None
        self.last_checkpoint, self._saved_update = path, update
        evaluated = self.eval_curve[-1] if self.eval_curve else None
        eval_return = evaluated["return_mean"] if evaluated and evaluated["env_steps"] == self.env_steps else None
        self.saved_checkpoints = prune_checkpoints(
            [*self.saved_checkpoints, SavedCheckpoint(path, eval_return)], self.settings.keep_checkpoints
        )
        return path

    def report_speed(self, update: int) -> None:
        """The newcomer's line: measured speed, the run's estimated remaining time, the CPU preset if apt.

        The same estimate, refreshed at each log point, is what the progress bar shows as ``left``.
        """
        if not self.ranks.is_main:
            return
        settings, remaining = self.settings, self.remaining
        seconds = remaining.seconds_after(update)
        if seconds is not None:  # None: a run too short to time an update after start-up
            steps_per_second = self.steps_per_update * remaining.measured_updates / sum(remaining.durations)
            steps_left = (self.num_updates - update) * self.steps_per_update
            evaluations = remaining.evaluations_after(update)
            untimed = " (not timed yet: left out)" if remaining.eval_seconds is None and evaluations else ""
            self.logger.message(
                f"update {update}: {steps_per_second:,.0f} env-steps/s; estimated time left: {duration(seconds)} "
                f"({steps_left:,} env steps and {evaluations} evaluations{untimed})"
            )
        cpu_preset = (self.config.get("cpu_presets") or {}).get(self.alg_preset)
        if not torch.cuda.is_available() and cpu_preset:
            self.logger.message(
                f"no CUDA here: the '{self.alg_preset}' preset is sized for a GPU. "
                f"For a CPU-sized run: "
                f"python scripts/train.py task={settings.task} alg={cpu_preset}"
            )

    # ----------------------------------------------------------------- what can go wrong
    def _check_weights(self, update: int) -> None:
        bad = nonfinite_weights(self.agent)
        if bad:
            self._diverged(update, f"non-finite weights ({listed(bad)})")

    def _diverged(
        self,
        update: int,
        what: str,
        healthy: str = "finite",
        advice: str = "Lower alg.lr_start or alg.max_grad_norm, or check the task's physics",
    ) -> None:
        raise TrainingDiverged(
            f"training diverged: {what} at update {update} (env step {update * self.steps_per_update:,}); "
            f"everything was {healthy} at update {self._last_finite_update}. Nothing diverged was saved: "
            f"the latest checkpoint is {self.last_checkpoint or 'none'}. {advice}"
        )

    def _reward_term_means(self, metrics: dict[str, float]) -> dict[str, float]:
        """Take the env's cumulative reward-term totals out of ``metrics``; their means per episode finished since
        the last log (none when no episode finished)."""
        totals = {name: metrics.pop(name) for name in list(metrics) if name.startswith(f"{REWARD_TERMS}/")}
        finished = metrics["env/episodes"] - self._episodes_at_log
        means = {
            name: (total - self._reward_terms_at_log.get(name, 0.0)) / finished
            for name, total in totals.items()
            if finished
        }
        self._reward_terms_at_log, self._episodes_at_log = totals, metrics["env/episodes"]
        return means

    def _check_unstable_rate(self, unstable_total: float) -> None:
        """Say so on the console when the share of unstable (reset) world-steps crosses the threshold."""
        steps = self.env_steps - self._steps_at_log
        rate = (unstable_total - self._unstable_at_log) / max(steps, 1)
        if rate >= UNSTABLE_WARNING_RATE and not self._unstable_warned:
            self.logger.message(
                f"warning: {rate:.2%} of the world-steps from env step {self._steps_at_log:,} to {self.env_steps:,} "
                "were unstable (non-finite, or beyond MuJoCo's 1e10 limit or the task's observation limit) and reset "
                f"({unstable_total:,.0f} so far; tensorboard env/nonfinite_states); check the task's sim_dt and model"
            )
        self._unstable_warned = rate >= UNSTABLE_WARNING_RATE
        self._unstable_at_log = unstable_total

    def _report_unstable_total(self) -> None:
        if self._unstable_at_log:
            self.logger.message(
                f"{self._unstable_at_log:,.0f} unstable world-steps were reset in this run "
                f"({self._unstable_at_log / max(self.env_steps, 1):.3%} of its world-steps)"
            )

    def _note_overflows(self, metrics: dict[str, float]) -> None:
        """Say so on the console the first time a physics buffer overflows, with the override that makes room."""
        for kind in BUFFER_KINDS:
            total = metrics[f"physics/overflow_{kind}"]
            if total and kind not in self._overflows:
                self.logger.message(
                    f"warning: {total:,.0f} world-steps overflowed the physics' {kind} buffer by env step "
                    f"{self.env_steps:,} (tensorboard physics/overflow_{kind}); those steps dropped what did not "
                    f"fit and went on. {self.env.physics.overflow_fix(kind)}"
                )
            if total:
                self._overflows[kind] = total

    def _report_overflow_totals(self) -> None:
        for kind, total in self._overflows.items():
            self.logger.message(
                f"{total:,.0f} world-steps overflowed the physics' {kind} buffer in this run "
                f"({total / max(self.env_steps, 1):.3%} of its world-steps); {self.env.physics.overflow_fix(kind)}"
            )

    def _catch_stop_signals(self) -> dict[int, Any]:
        """Route SIGINT/SIGTERM to :meth:`_on_signal` (main thread only); returns the handlers to restore."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {signum: signal.signal(signum, self._on_signal) for signum in STOP_SIGNALS}

    def _on_signal(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self._signal_received is not None:
            raise TrainingInterrupted(
                signum,
                f"stopped by a second {name} at once, without saving; the latest "
                f"checkpoint is {self.last_checkpoint or 'none'}",
            )
        self._signal_received = signum
        if self.ranks.world_size > 1:  # the ranks stop together, at the next log point (see log)
            self.logger.message(
                f"{name} received: training to the next log point, then saving a checkpoint "
                f"(send {name} again to stop at once without saving)"
            )
            return
        self._stop_signal = signum
        self.logger.message(
            f"{name} received: finishing this update, then saving a checkpoint "
            f"(send {name} again to stop at once without saving)"
        )

    def _evaluate_unless_stopped(self, update: int) -> float:
        """Rank 0 evaluates; the other ranks check the (identical) weights and go on to the next collective.

        Returns the seconds it took (the time estimate counts evaluations apart from updates).
        """
        started = time.perf_counter()
        if not self.ranks.is_main:
            self._check_weights(update)
        else:
            try:
                self.evaluate(update)
            except _StopRequested:
                self._stop(update)
        seconds = time.perf_counter() - started
        self.remaining.evaluation_done(seconds)
        return seconds

    def _stop(self, update: int) -> None:
        """Save (after a last log) and end the run with :class:`TrainingInterrupted`."""
        signum = self._stop_signal
        assert signum is not None, "_stop runs after a stop was requested"
        if self._logged_update < update:
            self.log(update)
        note = ""
        if self._saved_update < update and update > 0:
            try:
                self.save(update, final=True)
            except CheckpointWriteError as error:
                note = f" ({error})"
        resume = self._resume_command() if self.last_checkpoint else "to continue: start it again"
        raise TrainingInterrupted(
            signum,
            f"stopped by {signal.Signals(signum).name} at env step {self.env_steps:,}; "
            f"latest checkpoint {self.last_checkpoint or 'none'}{note}; {resume}",
        )

    def _after_losing_ranks(self, error: RuntimeError) -> None:
        """Another rank is gone: rank 0 saves what it has, without collectives; every survivor raises RanksLost."""
        self._ranks_lost = True
        update = self.agent.updates_issued
        reason = str(error).splitlines()[0].split("] ")[-1].split(". ")[0]  # Gloo's first sentence, no source path
        what = (
            f"rank {self.ranks.rank} of {self.ranks.world_size}: another rank stopped ({reason}) during update "
            f"{update + 1} (env step {self.env_steps:,})"
        )
        if not self.ranks.is_main:
            distributed.shut_down()
            raise distributed.RanksLost(f"{what}; stopped too (rank 0 writes the checkpoints)") from None
        saved = "nothing new to save"
        if self._saved_update < update and update > 0:
            try:
                self.save(update, final=True)
                saved = "saved what this rank had"
            except (CheckpointWriteError, TrainingDiverged) as failure:
                saved = f"could not save what this rank had ({failure})"
        distributed.shut_down()
        resume = self._resume_command() if self.last_checkpoint else "to continue: start it again"
        raise distributed.RanksLost(
            f"{what}; {saved}: the latest checkpoint is {self.last_checkpoint or 'none'}; {resume}"
        ) from None

    def _resume_command(self) -> str:
        """``to continue: <the command that resumes this run from its latest checkpoint>``."""
        launcher = "python" if self.ranks.world_size == 1 else f"torchrun <{self.ranks.world_size} ranks, as now>"
        return f"to continue: {launcher} scripts/train.py resume={self.run_dir}"


class _StopWatch:
    """An evaluation's step hook (a :class:`~pqn_torch.training.evaluation.StepRecorder`) that cuts the
    evaluation short once a stop signal has arrived."""

    def __init__(self, run: TrainingRun) -> None:
        self.run = run

    def start(self) -> None:
        """Nothing to do at the reset."""

    def capture(self, result: Any) -> None:
        if self.run._stop_signal is not None:
            raise _StopRequested


def _tracking_scalars(result: EvalResult) -> dict[str, float]:
    """A joystick task's per-component tracking slope and error for tensorboard (``eval/tracking_slope_vx``, ...):
    the error alone does not tell a policy that ignores its commands from one that follows them loosely."""
    if result.tracking_error is None or result.tracking_slope is None:
        return {}
    scalars = {}
    for name, error, slope in zip(("vx", "vy", "yaw_rate"), result.tracking_error, result.tracking_slope, strict=True):
        scalars[f"eval/tracking_error_{name}"] = float(error)
        if not slope.isnan():
            scalars[f"eval/tracking_slope_{name}"] = float(slope)
    return scalars


def runaway_value(
    metrics: dict[str, float], reward_scale: float, gamma: float, episode_length: int, num_critics: int
) -> tuple[str, float, float] | None:
    """The first Q-side metric out of all proportion to the rewards, as ``(name, value, limit)``; ``None`` if none is.

    A Q-value is a discounted sum of rewards, so ``|Q| <= max |r| / (1 - gamma)`` (``max |r|`` times the
    episode length for ``gamma = 1``). The rewards' scale is
    ``reward_scale`` (the trainer passes the largest |mean rollout reward| logged so far), at least 1: DM
    rewards lie in [0, 1], and the floor keeps sparse or still-zero rewards from making the bound tight. The
    metrics checked are the update's mean Q (``q_mean``), the rollout's mean value and Q(lambda) target, and
    the critic loss per critic (a Huber loss: about the Q error once that exceeds 1); each may reach
    ``VALUE_SCALE_LIMIT`` times the bound. A healthy run's overshoots stay within a few times the bound, while a
    learning rate far too high drives them past it by orders of magnitude, updates before anything turns
    non-finite.
    """
    horizon = 1.0 / (1.0 - gamma) if gamma < 1.0 else float(episode_length)
    limit = VALUE_SCALE_LIMIT * max(reward_scale, 1.0) * horizon
    checked = {
        "q_mean": metrics.get("q_mean", 0.0),
        "value_mean": metrics.get("value_mean", 0.0),
        "target_mean": metrics.get("target_mean", 0.0),
        "critic_loss": metrics.get("critic_loss", 0.0) / num_critics,
    }
    for name, value in checked.items():
        if abs(value) > limit:
            return name, value, limit
    return None


def _checkpoint_bytes(agent: PQN) -> int:
    """About the size of one checkpoint: weights and buffers plus RAdam's two moments per parameter."""
    weights = sum(t.numel() * t.element_size() for t in agent.state_dict().values())
    moments = sum(2 * p.numel() * p.element_size() for p in agent.parameters())
    return weights + moments


def _rng_state(env: VecEnv, eval_env: VecEnv | None) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "env": env.generator.get_state()}
    if eval_env is not None:
        state["eval_env"] = eval_env.generator.get_state()
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict[str, Any] | None, env: VecEnv, eval_env: VecEnv | None) -> None:
    """Restore a rank's random states; ``None`` (a rank lost before its checkpoint) keeps the fresh seeded ones."""
    if state is None:
        return
    torch.set_rng_state(state["torch"])
    env.generator.set_state(state["env"])
    if eval_env is not None:
        eval_env.generator.set_state(state["eval_env"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

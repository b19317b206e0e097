"""The training run behind ``scripts/train.py``: envs, agent, evaluation, logging, checkpoints, resume.

``run_training`` is hydra-free (it takes the composed config as a plain dict and an output folder),
so tests and notebooks can drive it directly.
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pqn_torch.algo.pqn import PQN
from pqn_torch.cuda_graph import WARMUP_CALLS, synchronize
from pqn_torch.envs import make_env, resolve_device
from pqn_torch.envs.physics import resolve_backend
from pqn_torch.training.checkpoint import load_checkpoint, prepare_checkpoint_dir, save_checkpoint
from pqn_torch.training.evaluation import EvalResult, evaluate
from pqn_torch.training.logger import RunLogger
from pqn_torch.training.settings import merge_for_resume, resolve_switch, settings_from_config

CPU_PRESET = "cpu"


@dataclass
class TrainSummary:
    """What a finished run reports: where it wrote, how far it got, and its evaluation curve."""

    run_dir: Path
    env_steps: int
    updates: int
    checkpoint: Path | None
    eval_curve: list[dict[str, float]] = field(default_factory=list)

    @property
    def final_eval_return(self) -> float:
        return self.eval_curve[-1]["return_mean"] if self.eval_curve else float("nan")


def run_training(config: dict[str, Any], run_dir: str | Path, alg_preset: str | None = None,
                 show_progress: bool = True) -> TrainSummary:
    """Train (or resume) the run described by ``config`` and write everything under ``run_dir``."""
    return TrainingRun(config, run_dir, alg_preset, show_progress).run()


class TrainingRun:
    """One training run: set up at construction (where every config error surfaces), then :meth:`run`.

    ``config`` is the resolved hydra config as a plain dict; ``alg_preset`` the name of the ``alg``
    preset in use (for the hint that points CPU users at ``alg=cpu``).
    """

    def __init__(self, config: dict[str, Any], run_dir: str | Path, alg_preset: str | None = None,
                 show_progress: bool = True) -> None:
        self.started = time.perf_counter()
        self.alg_preset = alg_preset
        self.run_dir = Path(run_dir)
        checkpoint = None
        if config.get("resume"):
            checkpoint = load_checkpoint(config["resume"])
            config = merge_for_resume(checkpoint["config"], config)
        self.config = config
        self.settings = settings = settings_from_config(config)
        device = resolve_device(settings.device)
        backend = resolve_backend(settings.backend, device)
        use_compile = resolve_switch(settings.compile, device)
        use_graphs = resolve_switch(settings.cuda_graphs, device)
        if device.type == "cpu":
            torch.set_num_threads(settings.torch_threads)
        self.checkpoint_dir = prepare_checkpoint_dir(self.run_dir)

        self.env = make_env(settings.task, settings.alg.num_envs, device, backend, settings.seed,
                            num_threads=settings.num_threads, **settings.task_overrides)
        self.eval_env = make_env(settings.task, settings.eval_num_envs, device, backend, settings.seed + 1,
                                 num_threads=settings.num_threads, **settings.task_overrides)
        torch.manual_seed(settings.seed)
        self.agent = agent = PQN.for_env(self.env, settings.alg, settings.total_timesteps, compile=use_compile,
                                         cuda_graphs=use_graphs, split_update=settings.split_update)
        if checkpoint is not None:
            agent.load_checkpoint_state(checkpoint["agent"])
            _restore_rng(checkpoint["rng"], self.env, self.eval_env)
        agent.reset(self.env, update_statistics=checkpoint is None)

        # The speed report times the first update after warm-up: compilation (compile) and the two eager
        # iterations plus the capture (cuda_graphs) would make the estimate far too slow.
        self.warmup_updates = WARMUP_CALLS + 1 if use_graphs else 1 if use_compile else 0
        self.eval_every = max(1, int(agent.num_updates * settings.eval_interval))
        self.checkpoint_every = int(agent.num_updates * settings.checkpoint_interval)
        self.eval_curve: list[dict[str, float]] = []
        self.last_checkpoint: Path | None = None
        self.logger = RunLogger(self.run_dir, agent.num_updates * agent.steps_per_update, self.env_steps,
                                show_progress)
        self.logger.message(
            f"pqn-torch: task {settings.task}, device {device}, backend {backend}, {settings.alg.num_envs} envs, "
            f"compile {'on' if use_compile else 'off'}, CUDA graphs {'on' if use_graphs else 'off'}, "
            f"{agent.num_updates} updates of {agent.steps_per_update} env steps; writing to {self.run_dir}")
        if checkpoint is not None:
            self.logger.message(f"resumed from {checkpoint['path']} at env step {checkpoint['env_steps']:,}")

    def run(self) -> TrainSummary:
        """Train to ``total_timesteps``, evaluating, logging and checkpointing on the way."""
        try:
            self._loop()
        finally:
            self.logger.close()
        return TrainSummary(run_dir=self.run_dir, env_steps=self.env_steps, updates=self.agent.updates_issued,
                            checkpoint=self.last_checkpoint, eval_curve=self.eval_curve)

    @property
    def env_steps(self) -> int:
        return self.agent.updates_issued * self.agent.steps_per_update

    def _loop(self) -> None:
        agent = self.agent
        first = agent.updates_issued
        if first == 0:
            self.evaluate()
        train_seconds = 0.0
        steps_at_log = self.env_steps
        speed_probe = min(first + 1 + self.warmup_updates, agent.num_updates)
        for update in range(first + 1, agent.num_updates + 1):
            if update == speed_probe:
                synchronize(agent.device)
            tick = time.perf_counter()
            agent.train_iteration(self.env)
            if update == speed_probe:
                synchronize(agent.device)
                self.report_speed(update, agent.steps_per_update / (time.perf_counter() - tick))
            last = update == agent.num_updates
            if update % self.settings.log_interval == 0 or last:
                synchronize(agent.device)
                self.log(steps_at_log, train_seconds + time.perf_counter() - tick)
                steps_at_log, train_seconds = self.env_steps, 0.0
            else:
                train_seconds += time.perf_counter() - tick
            if update % self.eval_every == 0 or last:
                self.evaluate()
            if (self.checkpoint_every and update % self.checkpoint_every == 0) or last:
                self.save()

    def log(self, steps_at_last_log: int, seconds: float) -> None:
        """Tensorboard scalars and the progress bar; the loop's one device-to-host copy per log interval."""
        steps_per_second = (self.env_steps - steps_at_last_log) / max(seconds, 1e-9)
        counters = {f"env/{name}": value for name, value in self.env.stats.items()}
        self.logger.agent_metrics(self.agent.pop_metrics(counters), self.env_steps)
        self.logger.scalars({"perf/env_steps_per_s": steps_per_second}, self.env_steps)
        self.logger.progress(self.env_steps, sps=f"{steps_per_second:,.0f}")

    def evaluate(self) -> EvalResult:
        result = evaluate(self.agent, self.eval_env)
        point = {"env_steps": self.env_steps, "wall_s": time.perf_counter() - self.started,
                 "return_mean": result.mean_return, "return_std": result.std_return,
                 "length_mean": result.mean_length, "episodes": result.episodes}
        self.eval_curve.append(point)
        self.logger.scalars({"eval/return_mean": result.mean_return, "eval/return_std": result.std_return,
                             "eval/length_mean": result.mean_length}, self.env_steps)
        self.logger.progress(self.env_steps, eval_return=f"{result.mean_return:.1f}")
        _append_csv(self.run_dir / "eval.csv", point)
        return result

    def save(self) -> None:
        payload = {"agent": self.agent.checkpoint_state(), "config": self.config,
                   "rng": _rng_state(self.env, self.eval_env), "updates": self.agent.updates_issued}
        self.last_checkpoint = save_checkpoint(self.checkpoint_dir, self.env_steps, payload)

    def report_speed(self, update: int, steps_per_second: float) -> None:
        """The newcomer's line: measured speed, the whole run's estimated duration, the CPU preset if apt."""
        agent, settings = self.agent, self.settings
        remaining = (agent.num_updates - agent.updates_issued) * agent.steps_per_update
        evaluations = math.ceil(agent.num_updates / self.eval_every)
        eval_steps = evaluations * self.eval_env.episode_length * self.eval_env.num_envs
        estimate = (remaining + eval_steps) / steps_per_second
        self.logger.message(f"update {update}: {steps_per_second:,.0f} env-steps/s; estimated time for the remaining "
                            f"{remaining:,} steps and {evaluations} evaluations: {_duration(estimate)}")
        if not torch.cuda.is_available() and self.alg_preset != CPU_PRESET:
            self.logger.message(f"no CUDA here: the '{self.alg_preset}' preset is sized for a GPU. "
                                f"For a CPU-sized run: "
                                f"python scripts/train.py task={settings.task} alg={CPU_PRESET}")


def _rng_state(env: Any, eval_env: Any) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "env": env.generator.get_state(),
             "eval_env": eval_env.generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict[str, Any], env: Any, eval_env: Any) -> None:
    torch.set_rng_state(state["torch"])
    env.generator.set_state(state["env"])
    eval_env.generator.set_state(state["eval_env"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _append_csv(path: Path, row: dict[str, float]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def _duration(seconds: float) -> str:
    minutes = seconds / 60
    if minutes < 90:
        return f"about {minutes:.0f} min"
    hours = minutes / 60
    return f"about {hours:.1f} h" if hours < 48 else f"about {hours / 24:.1f} days"

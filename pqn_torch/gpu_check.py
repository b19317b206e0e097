"""``scripts/benchmark.py gpu-check``: do CUDA graphs and torch.compile work on this GPU, and pay off?

Two parts, each run once on the fast paths (CUDA graphs and torch.compile on) and once eagerly (both
off), from the same seed:

- equivalence: a noise-free, one-minibatch cut of the task's preset (so that exploration and the
  minibatch shuffle cannot differ) for ``iterations`` training iterations: two eager warm-ups, the
  capture, replays. The last rollout's contents and every parameter are compared.
- speed: the task's preset itself (``num_envs`` worlds), ``updates`` timed iterations after the
  warm-up, compile and capture (timed separately).

- the warp sweep (``warp_sweep``, also ``benchmark.py warp-sweep`` alone): every registered task built on
  MuJoCo Warp with its defaults, stepped with random actions, its overflow counts
  (:mod:`pqn_torch.envs.backend_sweep`); a table per task of build time, env-steps/s and overflows.

The verdict: ``ok`` (no fallback, differences within tolerance), ``fallback`` (a capture or a
compilation failed: training works, eagerly, see ``fallbacks``), or ``mismatch`` (the fast paths
compute something else: a bug to report).

Tolerances: compiled kernels round differently, and RAdam turns the sign of a gradient entry that
is rounding noise into a full step, so parameters may differ by about one learning-rate step per
gradient step without anything being wrong (hence ``atol`` = ``lr_start`` for parameters); and the
physics amplifies tiny differences in a few worlds. The verdict is ``mismatch`` when more than
``MISMATCH_SHARE`` of the entries of any group are beyond tolerance; a wrong graph (stale inputs,
skipped work) moves far more than that. The report keeps the largest differences for a human.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import time
from collections.abc import Iterable
from typing import Any

import torch

from pqn_torch.algo.pqn import PQN, PQNConfig
from pqn_torch.cuda_graph import WARMUP_CALLS, synchronize
from pqn_torch.envs import list_tasks, make_env
from pqn_torch.envs.backend_sweep import SweepResult, backend_sweep, sweep_table

COMPARED = ("obs", "action", "reward", "value", "target")
"""Rollout storage entries compared between the fast and the eager run."""
RTOL, ATOL = 1e-3, 1e-4
"""A difference counts when ``|fast - eager| > atol + RTOL * |eager|`` (atol: ATOL, for parameters lr_start)."""
MISMATCH_SHARE = 1e-3
SWEEP_WORLDS = {"cuda": 1024, "cpu": 4}
"""Worlds per task in the warp sweep: Playground's DM-suite batch on a GPU, a quick handful on a CPU."""
VERSIONS = ("torch", "mujoco", "mujoco-warp", "warp-lang")


def equivalence_run(
    task: str, config: PQNConfig, device: torch.device, iterations: int, seed: int, fast: bool
) -> tuple[PQN, Any]:
    """``iterations`` training iterations of a noise-free, one-minibatch cut of ``config`` (fast: graphs, compile)."""
    config = dataclasses.replace(config, num_steps=8, num_minibatches=1, noise_start=0.0, noise_finish=0.0)
    env = make_env(task, config.num_envs, device, "auto", seed, reset_pool_size=config.num_envs)
    torch.manual_seed(seed)
    agent = PQN.for_env(env, config, config.num_envs * config.num_steps * iterations, compile=fast, cuda_graphs=fast)
    agent.reset(env)
    for _ in range(iterations):
        agent.train_iteration(env)
    synchronize(device)
    return agent, env


@torch.no_grad()
def differences(fast: PQN, eager: PQN) -> dict[str, dict[str, float]]:
    """Per compared tensor group: the largest ``|fast - eager|``, the share of entries beyond tolerance, atol."""
    groups = {key: [(fast.storage[key], eager.storage[key])] for key in COMPARED}
    groups["parameters"] = list(zip(fast.parameters(), eager.parameters(), strict=True))
    report = {}
    for name, pairs in groups.items():
        atol = max(ATOL, eager.config.lr_start) if name == "parameters" else ATOL
        largest, beyond, total = 0.0, 0, 0
        for mine, theirs in pairs:
            gap = (mine.double() - theirs.double()).abs()
            largest = max(largest, float(gap.nan_to_num(float("inf")).max()))
            beyond += int((~(gap <= atol + RTOL * theirs.double().abs())).sum())  # NaN counts as beyond
            total += gap.numel()
        report[name] = {"max_abs_diff": largest, "beyond_tolerance": beyond / total, "atol": atol}
    return report


def verdict(diffs: dict[str, dict[str, float]], fallbacks: dict[str, str]) -> str:
    """``fallback`` if a fast path fell back, else ``mismatch`` if a group has too many entries beyond tolerance."""
    if fallbacks:
        return "fallback"
    return "mismatch" if any(group["beyond_tolerance"] > MISMATCH_SHARE for group in diffs.values()) else "ok"


def timed_run(
    task: str, config: PQNConfig, device: torch.device, updates: int, seed: int, fast: bool
) -> tuple[dict[str, float], dict[str, str]]:
    """Seconds of the warm-up (compile, capture), env steps per second of ``updates`` later iterations; fallbacks."""
    env = make_env(task, config.num_envs, device, "auto", seed)
    torch.manual_seed(seed)
    warmup = WARMUP_CALLS + 1
    agent = PQN.for_env(
        env, config, config.num_envs * config.num_steps * (warmup + updates), compile=fast, cuda_graphs=fast
    )
    agent.reset(env)
    start = time.perf_counter()
    for _ in range(warmup):
        agent.train_iteration(env)
    synchronize(device)
    middle = time.perf_counter()
    for _ in range(updates):
        agent.train_iteration(env)
    synchronize(device)
    speed = {
        "warmup_s": round(middle - start, 2),
        "steps_per_s": round(updates * agent.steps_per_update / (time.perf_counter() - middle)),
    }
    return speed, agent.fallbacks


def gpu_check(
    task: str,
    config: PQNConfig,
    device: torch.device,
    iterations: int = 4,
    updates: int = 10,
    seed: int = 0,
    fast: bool = True,
) -> dict[str, Any]:
    """The verdict as one JSON-ready dict (see the module docstring).

    ``fast=False`` runs the "fast" side eagerly too: the comparison machinery without a GPU (tests).
    """
    fast_agent, _ = equivalence_run(task, config, device, iterations, seed, fast)
    eager_agent, _ = equivalence_run(task, config, device, iterations, seed, fast=False)
    diffs = differences(fast_agent, eager_agent)
    fallbacks = fast_agent.fallbacks
    fast_speed, speed_fallbacks = timed_run(task, config, device, updates, seed, fast)
    eager_speed, _ = timed_run(task, config, device, updates, seed, fast=False)
    fallbacks.update({f"{name} (speed run)": error for name, error in speed_fallbacks.items()})
    return {
        "mode": "gpu-check",
        "verdict": verdict(diffs, fallbacks),
        "device": _device_name(device),
        "cuda": torch.version.cuda,
        "versions": {name: _version(name) for name in VERSIONS},
        "task": task,
        "fast_paths": {"cuda_graphs": fast, "compile": fast},
        "captured": fast_agent.captured,
        "fallbacks": fallbacks,
        "equivalence": {
            "iterations": iterations,
            "num_envs": config.num_envs,
            "rtol": RTOL,
            "mismatch_share": MISMATCH_SHARE,
            **diffs,
        },
        "speed": {
            "num_envs": config.num_envs,
            "updates": updates,
            "steps_per_update": config.num_envs * config.num_steps,
            "fast": fast_speed,
            "eager": eager_speed,
            "speedup": round(fast_speed["steps_per_s"] / max(eager_speed["steps_per_s"], 1), 2),
        },
    }


def warp_sweep(
    device: torch.device,
    tasks: Iterable[str] | None = None,
    num_envs: int | None = None,
    steps: int = 30,
    seed: int = 0,
) -> dict[str, Any]:
    """The warp sweep on ``device`` as one JSON-ready dict: verdict, the problems found, one row per task, and
    the rows as a Markdown ``table`` for a human.

    A task fails when it does not build (the error is its row), when an observation is non-finite, or when a
    buffer overflowed at its defaults. Solver iteration limits and (on a CPU) the relative error of one step
    against native MuJoCo are listed for a human: a step that lands a foot differs under Playground's capped
    solver iterations without anything being wrong.
    """
    worlds = num_envs or SWEEP_WORLDS[device.type]
    rows: list[dict[str, Any]] = []
    results: list[SweepResult] = []
    problems: list[str] = []
    for task in tasks or list_tasks():
        try:
            (result,) = backend_sweep(device, [task], worlds, steps, seed)
        except (ValueError, RuntimeError) as error:
            rows.append({"task": task, "error": str(error).splitlines()[0]})
            problems.append(f"{task}: does not build or step: {rows[-1]['error']}")
            continue
        rows.append(dataclasses.asdict(result))
        results.append(result)
        problems += sweep_problems(result)
    return {
        "mode": "warp-sweep",
        "verdict": "failed" if problems else "ok",
        "problems": problems,
        "device": _device_name(device),
        "num_envs": worlds,
        "steps": steps,
        "tasks": rows,
        "table": sweep_table(results),
    }


def sweep_problems(result: SweepResult) -> list[str]:
    """What is wrong with one task's sweep row, as lines naming the task (empty: nothing)."""
    problems = []
    if not result.finite:
        problems.append(f"{result.task}: non-finite observations")
    for name, count in result.overflows.items():
        if count and name.startswith("overflow_"):
            problems.append(f"{result.task}: {count} world-steps counted in {name} with the task's defaults")
    return problems


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None

"""Every registered task on the MuJoCo Warp backend: builds with its defaults, steps, counts overflows, agrees.

One function for the slow test (CPU) and for ``scripts/benchmark.py warp-sweep`` (the user's GPU). Per task:

- build ``make_env(task, num_envs, device, backend="warp")`` with the task's defaults (timed: the first
  build of a model compiles MuJoCo Warp's kernels, later ones load them from warp's cache);
- reset, then ``steps`` steps of uniformly random actions (timed: env-steps per second), observations finite;
- the buffers MuJoCo Warp allocated (``njmax``, the batch's contact buffer) and the overflow counters of
  those steps (``BatchedEnv.stats``);
- on a CPU, one step from a shared state against the native backend: both envs reset to the same start
  state and task state (drawn by the native env), their generators reseeded alike, the same action; the
  relative observation error ``|warp - native| / (1 + |native|)`` per entry, as median and max. A GPU
  draws its random numbers differently (observation noise, pushes), so there is nothing to compare it with.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from pqn_torch.cuda_graph import synchronize
from pqn_torch.envs import list_tasks, make_env
from pqn_torch.envs.core import OVERFLOW_COUNTERS, BatchedEnv
from pqn_torch.envs.physics.warp_backend import WarpPhysics


@dataclass
class SweepResult:
    """One task's row of the sweep (errors are ``None`` where no native comparison ran)."""

    task: str
    build_s: float
    steps_per_s: float
    finite: bool
    unstable: int
    """World-steps the env reset as unstable during the random steps."""
    njmax: int = 0
    """Constraint rows per world that MuJoCo Warp allocated."""
    contact_buffer: int = 0
    """Contacts MuJoCo Warp allocated for the whole batch (``naconmax``)."""
    overflows: dict[str, int] = field(default_factory=dict)
    """``OVERFLOW_COUNTERS`` -> world-steps counted during the random steps."""
    median_rel_error: float | None = None
    max_rel_error: float | None = None


def sweep_task(task: str, device: torch.device, num_envs: int = 4, steps: int = 30, seed: int = 0) -> SweepResult:
    """Build ``task`` on MuJoCo Warp with its defaults, step it randomly, compare one step with native MuJoCo."""
    start = time.perf_counter()
    env = make_env(task, num_envs, device, "warp", seed, reset_pool_size=num_envs)
    synchronize(env.device)
    build_s = time.perf_counter() - start
    physics = env.physics
    assert isinstance(physics, WarpPhysics)
    actions = random_actions(env, steps, seed)
    env.reset()
    finite = True
    synchronize(env.device)
    start = time.perf_counter()
    for action in actions:
        finite &= bool(torch.isfinite(env.step(action)["obs"]).all())
    synchronize(env.device)
    result = SweepResult(
        task=task,
        build_s=round(build_s, 2),
        steps_per_s=round(num_envs * steps / (time.perf_counter() - start), 1),
        finite=finite,
        unstable=int(env.stats["nonfinite_states"]),
        njmax=physics.data.njmax,
        contact_buffer=physics.data.naconmax,
        overflows={name: int(env.stats[name]) for name in OVERFLOW_COUNTERS},
    )
    if env.device.type == "cpu":
        relative = step_from_shared_state(
            env, make_env(task, num_envs, "cpu", "mujoco", seed, reset_pool_size=num_envs), actions[0], seed
        )
        result.median_rel_error = float(relative.median())
        result.max_rel_error = float(relative.max())
    return result


def backend_sweep(
    device: torch.device, tasks: Iterable[str] | None = None, num_envs: int = 4, steps: int = 30, seed: int = 0
) -> list[SweepResult]:
    """:func:`sweep_task` for ``tasks`` (default: every registered task, so new tasks join by registering)."""
    return [sweep_task(task, device, num_envs, steps, seed) for task in (tasks or list_tasks())]


def random_actions(env: BatchedEnv, count: int, seed: int) -> list[torch.Tensor]:
    """``count`` action batches uniform in the env's action bounds, drawn on the CPU (the same on any device)."""
    generator = torch.Generator().manual_seed(seed)
    low, high = env.action_low.cpu(), env.action_high.cpu()
    return [
        (low + (high - low) * torch.rand(env.num_envs, env.action_dim, generator=generator)).to(env.device)
        for _ in range(count)
    ]


def step_from_shared_state(warp: BatchedEnv, native: BatchedEnv, action: torch.Tensor, seed: int) -> torch.Tensor:
    """[N, obs_dim] relative error of ``warp``'s observation after one step from the native env's start state.

    The state, mocap bodies and task state are the native env's after a reset; both generators are
    reseeded with ``seed`` right before the step, so observation noise and pushes draw the same numbers.
    """
    native.reset()
    state = native.start_states
    shared = {
        name: state[name][: native.num_envs].float() for name in ("qpos", "qvel", "ctrl", "mocap_pos", "mocap_quat")
    }
    task_state = {name: value.clone() for name, value in native.task_state.items()}
    observations = []
    for env in (native, warp):
        env.reset_to(**shared, task_state=task_state)
        env.generator.manual_seed(seed)
        observations.append(env.step(action.to(env.device))["obs"].double())
    expected, actual = observations
    return (actual - expected).abs() / (1 + expected.abs())


def sweep_table(results: Iterable[SweepResult]) -> str:
    """The results as a Markdown table; overflow columns show buffer kinds only where one was counted."""
    results = list(results)
    buffer_counters = [name for name in OVERFLOW_COUNTERS if name.startswith("overflow_")]
    seen = [name for name in buffer_counters if any(row.overflows.get(name) for row in results)]
    header = ["task", "build s", "env-steps/s", "finite", "unstable", "njmax", "contacts"]
    header += ["median rel err", "max rel err"]
    header += [*seen, "solver_iteration_limit"] if seen else ["buffer overflows", "solver_iteration_limit"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in results:
        cells = [
            row.task,
            f"{row.build_s:.1f}",
            f"{row.steps_per_s:,.0f}",
            "yes" if row.finite else "NO",
            str(row.unstable),
            str(row.njmax),
            str(row.contact_buffer),
            _error(row.median_rel_error),
            _error(row.max_rel_error),
        ]
        cells += [str(row.overflows[name]) for name in seen] if seen else ["0"]
        cells.append(str(row.overflows["solver_iteration_limit"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _error(value: float | None) -> str:
    return "-" if value is None else f"{value:.1e}"

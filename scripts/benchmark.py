"""Throughput benchmarks; prints one JSON line per run.

    python scripts/benchmark.py env task=CheetahRun num_envs=256 backend=mujoco steps=2000 num_threads=2 torch_threads=1
    python scripts/benchmark.py env task=CheetahRun num_envs=64 backend=warp device=cpu steps=200
    python scripts/benchmark.py train task=CheetahRun num_envs=4096 updates=20 compile=true
    torchrun --nproc_per_node=2 scripts/benchmark.py train task=CartpoleBalance alg=cpu num_envs=64 num_threads=1
    python scripts/benchmark.py gpu-check [task=CheetahRun] [num_envs=...] [updates=10] [sweep=true]
    python scripts/benchmark.py warp-sweep [device=cuda] [tasks=[CheetahRun,Go1Getup]] [num_envs=...] [steps=30]

Mode ``env``: world-steps per second of ``make_env(...).step`` with random actions (after a warm-up),
next to the bare physics rate of the same model and number of worlds, one control step per call:
``mujoco.rollout`` on the same number of threads for backend=mujoco, ``mujoco_warp.step`` (replayed as a
CUDA graph on GPU) for backend=warp. ``ratio`` = env / bare: what the env adds on top of the physics.
On CUDA (``cuda_graphs=auto``) the env step is itself replayed from a captured CUDA graph, as in training.

Mode ``train``: PQN with the task's own hydra config (the DM-suite preset for DM tasks; ``alg=`` and
``num_envs=`` override it) on the training settings' device and backend. After ``warmup_updates``
untimed updates (compilation, graph capture), ``updates`` iterations are timed phase by phase (a
device sync around each rollout and each update: ``rollout_steps_per_s``, ``update_steps_per_s``),
then ``updates`` more back to back with one sync at the end (``total_steps_per_s``, what a training
run sees minus evaluation). Memory: the GPU peak (torch's reserved pool plus MuJoCo Warp's pool) on
CUDA, the process's peak resident set on the host. ``split_fraction``: the share of timed updates that
ran the actor's half of each gradient step on a second thread (``split_update``, CPU only); ``load_average``: the
machine's 1-minute load at the end, since other processes skew every CPU number. Under ``torchrun``
every rank runs ``num_envs`` worlds and trains the one agent data-parallel (``pqn_torch.distributed``);
rank 0 prints the line, whose rates count all ranks' env steps (``ranks``; memory is rank 0's).

Mode ``gpu-check`` (CUDA only): CUDA graphs and torch.compile on and off from the same seed, results
compared and both timed, as one JSON verdict line to paste into a bug report (``pqn_torch/gpu_check.py``);
with ``sweep=true`` (the default) it carries the warp sweep too.

Mode ``warp-sweep``: every registered task (or ``tasks``) on MuJoCo Warp with its defaults: build time,
env-steps/s of random actions, overflow counts, and on a CPU one step against native MuJoCo; a table on
stderr, the JSON line on stdout. ``device=cuda`` by default (``num_envs`` 1024); ``device=cpu`` is the
quick check (4 worlds) that runs anywhere.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra import compose, initialize_config_dir

try:
    from pqn_torch import distributed
    from pqn_torch.cuda_graph import WARMUP_CALLS, CapturedCall, synchronize
    from pqn_torch.envs import list_tasks, make_env, resolve_device
    from pqn_torch.envs.core import BatchedEnv
    from pqn_torch.envs.physics.mujoco_backend import MujocoPhysics, available_cores
    from pqn_torch.envs.physics.warp_backend import WarpPhysics
    from pqn_torch.envs.tasks.registry import get_task_class
    from pqn_torch.gpu_check import gpu_check, warp_sweep
    from pqn_torch.training.options import UsageError, parse_options
    from pqn_torch.training.schema import SWITCH, option, plain
    from pqn_torch.training.settings import RunSettings, check_switch, resolve_switch, settings_from_config
    from pqn_torch.training.setup import set_up_agent, start_ranks
except ImportError as import_error:  # e.g. MUJOCO_GL naming a backend this machine lacks
    print(f"benchmark.py: {import_error}", file=sys.stderr)
    sys.exit(2)
import mujoco  # noqa: E402  (after pqn_torch, whose import turns a broken MUJOCO_GL into one clear line)
import mujoco_warp  # noqa: E402
import warp as wp  # noqa: E402
from mujoco.rollout import Rollout  # noqa: E402

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

ACTION_BATCHES = 16  # distinct random action batches, cycled, so that drawing them is not timed


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name and the cores this process may use."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or "cpu"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), cpu)
    return f"{cpu} ({available_cores()} cores)"


def timed_rate(run_once: Callable[[], None], calls: int, worlds: int, device: torch.device) -> float:
    """World-steps per second of ``calls`` calls of ``run_once`` (after ``calls // 10`` warm-up calls)."""
    for _ in range(max(1, calls // 10)):
        run_once()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        run_once()
    synchronize(device)
    return worlds * calls / (time.perf_counter() - start)


def env_rate(env: BatchedEnv, steps: int, cuda_graphs: bool) -> float:
    """Env steps per second; with ``cuda_graphs`` each step replays a captured graph of ``env.step``."""
    generator = torch.Generator(device=env.device).manual_seed(0)
    low, high = env.action_low, env.action_high
    actions = [
        low + (high - low) * torch.rand(env.num_envs, env.action_dim, generator=generator, device=env.device)
        for _ in range(ACTION_BATCHES)
    ]
    action = actions[0].clone()
    step = CapturedCall(lambda: env.step(action), env.device, cuda_graphs, generators=(env.generator,))
    env.reset()
    counter = iter(range(sys.maxsize))

    def next_step() -> None:
        action.copy_(actions[next(counter) % ACTION_BATCHES])
        step()

    return timed_rate(next_step, steps, env.num_envs, env.device)


def bare_rollout_rate(env: BatchedEnv, steps: int, num_threads: int) -> float:
    """``mujoco.rollout`` from the env's current states: one control step (``substeps`` physics steps) per call.

    Each call continues from the previous call's last state (in place when there is one substep),
    with random controls; rollout restarts the solver warm-start at every call.
    """
    model, num_worlds, substeps = env.physics.mj_model, env.num_envs, env.physics.config.substeps
    full_physics = mujoco.mjtState.mjSTATE_FULLPHYSICS
    data = mujoco.MjData(model)
    state = np.empty((num_worlds, mujoco.mj_stateSize(model, full_physics)))
    for world in range(num_worlds):
        data.qpos[:], data.qvel[:] = env.physics.qpos[world].numpy(), env.physics.qvel[world].numpy()
        mujoco.mj_getState(model, data, state[world], full_physics)
    trajectory = state[:, None, :] if substeps == 1 else np.empty((num_worlds, substeps, state.shape[1]))
    sensordata = np.empty((num_worlds, substeps, model.nsensordata))
    low, high = env.action_low.numpy().astype(np.float64), env.action_high.numpy().astype(np.float64)
    if env.action_dim != model.nu:  # actions not one per actuator (Cartesian control): random targets in ctrlrange
        low, high = model.actuator_ctrlrange[:, 0], model.actuator_ctrlrange[:, 1]
    rng = np.random.default_rng(0)
    controls = [
        np.ascontiguousarray(np.repeat(rng.uniform(low, high, (num_worlds, 1, model.nu)), substeps, axis=1))
        for _ in range(ACTION_BATCHES)
    ]
    models = [model] * num_worlds
    datas = [mujoco.MjData(model) for _ in range(num_threads)]
    counter = iter(range(sys.maxsize))

    with Rollout(nthread=num_threads) as rollout:

        def control_step() -> None:
            rollout.rollout(
                models,
                datas,
                state,
                controls[next(counter) % ACTION_BATCHES],
                nstep=substeps,
                state=trajectory,
                sensordata=sensordata,
                skip_checks=True,
            )
            if substeps > 1:
                state[:] = trajectory[:, -1]

        return timed_rate(control_step, steps, num_worlds, torch.device("cpu"))


def bare_warp_rate(env: BatchedEnv, steps: int) -> float:
    """``substeps`` ``mujoco_warp.step`` calls per control step on the env's own model and data."""
    physics = env.physics
    assert isinstance(physics, WarpPhysics), "the bare MuJoCo Warp rate needs the warp backend"
    device = wp.device_from_torch(physics.device)

    def control_step() -> None:
        for _ in range(physics.config.substeps):
            mujoco_warp.step(physics.model, physics.data)

    with wp.ScopedDevice(device):
        if physics.device.type == "cuda":
            control_step()
            with wp.ScopedCapture() as capture:
                control_step()
            return timed_rate(lambda: wp.capture_launch(capture.graph), steps, env.num_envs, physics.device)
        return timed_rate(control_step, steps, env.num_envs, physics.device)


DEVICE = "auto, cpu, cuda or cuda:<index>"
BACKEND = "auto, warp or mujoco"
THREADS = "an integer >= 1, or 0 for all cores"


@dataclass
class TaskOptions:
    """The options of every mode."""

    task: str = "CheetahRun"
    device: str = option("auto", DEVICE)
    seed: int = 0


@dataclass
class EnvOptions(TaskOptions):
    num_envs: int = 256
    backend: str = option("auto", BACKEND)
    steps: int = 2000
    num_threads: int = option(0, THREADS)
    cuda_graphs: Any = option("auto", SWITCH)
    torch_threads: int = 1
    randomize: bool = False  # domain-randomized worlds (tasks with a randomizer); the bare rate stays nominal


def benchmark_env(options: EnvOptions) -> dict[str, Any]:
    """Env step rate vs bare physics rate (see module docstring). ``num_threads=0``: all cores."""
    num_threads = options.num_threads or available_cores()
    if options.num_envs < 1 or options.steps < 1 or num_threads < 1 or options.torch_threads < 1:
        raise ValueError(
            "num_envs, steps, num_threads and torch_threads must be positive (num_threads=0 means all cores)"
        )
    # As in training (config torch_threads: 1): torch's small per-step ops lose to thread sync and to contention
    # with MuJoCo's threads when torch runs multi-threaded on the same cores.
    torch.set_num_threads(options.torch_threads)
    env = make_env(
        options.task,
        options.num_envs,
        device=options.device,
        backend=options.backend,
        seed=options.seed,
        reset_pool_size=options.num_envs,
        num_threads=num_threads,
        randomize=options.randomize,
    )
    native = isinstance(env.physics, MujocoPhysics)
    cuda_graphs = resolve_switch(check_switch("cuda_graphs", options.cuda_graphs), env.device)
    env_steps = env_rate(env, options.steps, cuda_graphs)
    bare_steps = bare_rollout_rate(env, options.steps, num_threads) if native else bare_warp_rate(env, options.steps)
    return {
        "mode": "env",
        "task": options.task,
        "randomize": options.randomize,
        "backend": "mujoco" if native else "warp",
        "device": device_name(env.device),
        "num_envs": options.num_envs,
        "num_threads": num_threads if native else None,
        "torch_threads": options.torch_threads,
        "cuda_graphs": cuda_graphs,
        "env_steps_per_s": round(env_steps),
        "bare_steps_per_s": round(bare_steps),
        "ratio": round(env_steps / bare_steps, 3),
    }


@dataclass
class PresetOptions(TaskOptions):
    """The options of the modes that run the task's training config."""

    alg: str | None = option(None, "an alg preset (configs/alg/<preset>.yaml); default: the task's")
    num_envs: int = option(0, "an integer >= 1, or 0 for the preset's alg.num_envs")
    updates: int = 10


@dataclass
class TrainOptions(PresetOptions):
    warmup_updates: int = WARMUP_CALLS + 1
    compile: Any = option("auto", SWITCH)
    cuda_graphs: Any = option("auto", SWITCH)
    split_update: Any = option("auto", SWITCH)
    backend: str = option("auto", BACKEND)
    num_threads: int = option(0, THREADS)


def task_settings(options: PresetOptions, **values: Any) -> RunSettings:
    """The task's hydra config (its own preset unless ``alg`` is given) with ``num_envs``, ``seed`` and ``values``."""
    get_task_class(options.task)  # an unknown task or preset is one clear line here, not a hydra composition error
    presets = sorted(path.stem for path in (CONFIG_DIR / "alg").glob("*.yaml"))
    if options.alg and options.alg not in presets:
        raise ValueError(f"unknown alg preset {options.alg!r}; valid: {', '.join(presets)}")
    overrides = [f"task={options.task}", *([f"alg={options.alg}"] if options.alg else [])]
    with initialize_config_dir(version_base=None, config_dir=str(CONFIG_DIR)):
        config = plain(compose(config_name="config", overrides=overrides))
    config.update(seed=options.seed, **values)
    if options.num_envs:
        config["alg"]["num_envs"] = options.num_envs
    return settings_from_config(config)


def benchmark_train(options: TrainOptions) -> dict[str, Any]:
    """PQN training throughput by phase and memory peak (see module docstring)."""
    if options.updates < 1 or options.warmup_updates < 0:
        raise ValueError("updates must be positive and warmup_updates >= 0")
    settings = task_settings(
        options,
        device=options.device,
        backend=options.backend,
        compile=options.compile,
        cuda_graphs=options.cuda_graphs,
        split_update=options.split_update,
        num_threads=options.num_threads or None,
    )
    ranks, device = start_ranks(settings)
    alg, updates, warmup = settings.alg, options.updates, options.warmup_updates
    total_timesteps = max(settings.total_timesteps, (warmup + 2 * updates) * alg.num_envs * alg.num_steps)
    setup = set_up_agent(settings, ranks, device, total_timesteps)
    env, agent = setup.env, setup.agent
    distributed.broadcast_module(agent)
    agent.reset(env)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        agent.train_iteration(env)
    synchronize(device)
    split_before = agent.split_updates

    rollout_seconds = update_seconds = 0.0
    for _ in range(updates):
        start = time.perf_counter()
        agent.collect(env)
        synchronize(device)
        middle = time.perf_counter()
        agent.learn()
        synchronize(device)
        rollout_seconds += middle - start
        update_seconds += time.perf_counter() - middle
    start = time.perf_counter()
    for _ in range(updates):
        agent.train_iteration(env)
    synchronize(device)
    total_seconds = time.perf_counter() - start

    steps = updates * agent.steps_per_update * ranks.world_size
    return {
        "mode": "train",
        "task": settings.task,
        "device": device_name(device),
        "backend": setup.backend,
        "ranks": ranks.world_size,
        "num_envs": alg.num_envs,
        "compile": setup.compile,
        "cuda_graphs": setup.cuda_graphs,
        "split_update": settings.split_update,
        "split_fraction": round((agent.split_updates - split_before) / (2 * updates), 2),
        "torch_threads": torch.get_num_threads() if device.type == "cpu" else None,
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "steps_per_update": agent.steps_per_update * ranks.world_size,
        "timed_updates": 2 * updates,
        "updates_done": int(agent.updates_done),
        "rollout_steps_per_s": round(steps / rollout_seconds),
        "update_steps_per_s": round(steps / update_seconds),
        "total_steps_per_s": round(steps / total_seconds),
        "gpu_memory_peak_mb": gpu_memory_peak_mb(device),
        "host_memory_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


@dataclass
class GpuCheckOptions(PresetOptions):
    device: str = option("cuda", DEVICE)
    iterations: int = WARMUP_CALLS + 2
    sweep: bool = option(True, "true or false: also run the warp sweep (every task on MuJoCo Warp)")


@dataclass
class WarpSweepOptions:
    device: str = option("cuda", DEVICE)
    tasks: list[str] | None = option(None, "a list of task names such as [CheetahRun,Go1Getup]; null: every task")
    num_envs: int = option(0, "an integer >= 1, or 0 for 1024 on a GPU, 4 on a CPU")
    steps: int = 30
    seed: int = 0


def benchmark_gpu_check(options: GpuCheckOptions) -> dict[str, Any]:
    """CUDA graphs and torch.compile against eager on this GPU: same results? how much faster? (pqn_torch.gpu_check)."""
    if not torch.cuda.is_available():
        raise ValueError(
            "gpu-check needs a CUDA GPU, and this PyTorch sees none (torch.cuda.is_available() is "
            "False); run it on the machine whose GPU you want checked"
        )
    if options.iterations < WARMUP_CALLS + 1 or options.updates < 1:
        raise ValueError(f"iterations must be >= {WARMUP_CALLS + 1} (warm-ups, then the capture) and updates >= 1")
    device = resolve_device(options.device)
    if device.type != "cuda":
        raise ValueError(f"gpu-check checks a CUDA device, got device={options.device!r}")
    settings = task_settings(options)
    result = gpu_check(settings.task, settings.alg, device, options.iterations, options.updates, options.seed)
    if options.sweep:
        result["warp_sweep"] = run_warp_sweep(device, WarpSweepOptions(seed=options.seed))
    return result


def benchmark_warp_sweep(options: WarpSweepOptions) -> dict[str, Any]:
    """Every task on MuJoCo Warp with its defaults: builds? steps? overflows? (pqn_torch.gpu_check.warp_sweep)."""
    if options.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            "warp-sweep runs on a CUDA GPU by default, and this PyTorch sees none; device=cpu runs the quick "
            "CPU check (e.g. tasks=[CartpoleBalance,Go1JoystickRoughTerrain])"
        )
    if options.num_envs < 0 or options.steps < 1:
        raise ValueError("num_envs must be >= 1 (or 0 for the device's default) and steps >= 1")
    unknown = sorted(set(options.tasks or ()) - set(list_tasks()))
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; valid: {', '.join(list_tasks())}")
    return run_warp_sweep(resolve_device(options.device), options)


def run_warp_sweep(device: torch.device, options: WarpSweepOptions) -> dict[str, Any]:
    """The sweep, its table on stderr (stdout carries only the JSON line)."""
    result = warp_sweep(device, options.tasks, options.num_envs or None, options.steps, options.seed)
    print(result.pop("table"), file=sys.stderr)
    for problem in result["problems"]:
        print(f"problem: {problem}", file=sys.stderr)
    return result


def gpu_memory_peak_mb(device: torch.device) -> float | None:
    """Peak of torch's reserved pool plus peak of MuJoCo Warp's pool, in MiB; None off CUDA."""
    if device.type != "cuda":
        return None
    warp_device = wp.device_from_torch(device)
    warp_peak = wp.get_mempool_used_mem_high(warp_device) if wp.is_mempool_enabled(warp_device) else 0
    return round((torch.cuda.max_memory_reserved(device) + warp_peak) / 2**20, 1)


MODES: dict[str, tuple[Callable[[Any], dict[str, Any]], type]] = {
    "env": (benchmark_env, EnvOptions),
    "train": (benchmark_train, TrainOptions),
    "gpu-check": (benchmark_gpu_check, GpuCheckOptions),
    "warp-sweep": (benchmark_warp_sweep, WarpSweepOptions),
}


def main(argv: list[str]) -> int:
    wp.config.log_level = wp.LOG_WARNING  # no kernel-load chatter on stdout: it carries only the JSON line
    if not argv or argv[0] not in MODES:
        print(f"usage: benchmark.py MODE [key=value ...]; MODE one of {sorted(MODES)}", file=sys.stderr)
        return 2
    run, schema = MODES[argv[0]]
    try:
        options = parse_options("benchmark.py", argv[1:], schema)
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2
    try:
        result = run(options)
    except (ValueError, KeyError) as error:
        print(f"benchmark.py: {error}", file=sys.stderr)
        return 2
    distributed.shut_down()
    if distributed.launched_as_main():
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

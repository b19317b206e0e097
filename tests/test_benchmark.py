"""scripts/benchmark.py prints one JSON line per run whose numbers hang together; bad options are one line;
the gpu-check verdict (its comparison run on the CPU)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pqn_torch.algo import PQNConfig
from pqn_torch.envs.backend_sweep import SweepResult
from pqn_torch.envs.core import OVERFLOW_COUNTERS
from pqn_torch.gpu_check import differences, equivalence_run, gpu_check, sweep_problems, verdict

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def benchmark(*args):
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "benchmark.py"), *args],
        cwd=REPO,
        env=ENV,
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return result.returncode, result.stdout, result.stderr


def test_train_mode_reports_every_phase_for_the_task_config():
    code, stdout, stderr = benchmark(
        "train",
        "task=CartpoleBalance",
        "alg=cpu",
        "num_envs=8",
        "updates=2",
        "warmup_updates=1",
        "backend=mujoco",
        "num_threads=1",
    )
    assert code == 0, stderr
    lines = stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["mode"] == "train" and result["device"].endswith("cores)")
    assert result["num_envs"] == 8 and result["steps_per_update"] == 8 * 16  # alg=cpu: num_steps 16
    assert result["updates_done"] == 1 + result["timed_updates"] == 5  # warm-up + 2 phase-timed + 2 back to back
    assert result["compile"] is False and result["cuda_graphs"] is False  # auto = off without CUDA
    assert result["split_update"] == "auto" and 0 <= result["split_fraction"] <= 1 and result["torch_threads"] == 1
    for key in ("rollout_steps_per_s", "update_steps_per_s", "total_steps_per_s", "host_memory_peak_mb"):
        assert result[key] > 0, key
    # A whole iteration cannot be faster than its slower phase.
    assert result["total_steps_per_s"] < min(result["rollout_steps_per_s"], result["update_steps_per_s"]) * 1.5
    assert result["gpu_memory_peak_mb"] is None


def test_env_mode_compares_against_bare_physics():
    code, stdout, stderr = benchmark(
        "env", "task=CartpoleBalance", "num_envs=16", "steps=50", "backend=mujoco", "num_threads=1"
    )
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["mode"] == "env" and result["backend"] == "mujoco" and result["cuda_graphs"] is False
    assert result["ratio"] == pytest.approx(result["env_steps_per_s"] / result["bare_steps_per_s"], abs=1e-3)


@pytest.mark.parametrize(
    "args, message",
    [
        (("train", "task=Nope"), "unknown task 'Nope'; valid tasks: AcrobotSwingup"),
        (("train", "cuda_graphs=yes"), "cuda_graphs must be true, false or auto, got 'yes'"),
        (("train", "updates=x"), "updates must be an integer, got 'x'"),
        (("train", "steps=5"), "unknown option(s) ['steps']; valid: ['task', 'device', 'seed', 'alg', 'num_envs', "),
        (("env", "steps"), "bad argument 'steps': expected key=value (one value) with key in ['task', 'device', "),
    ],
)
def test_bad_options_fail_with_one_line(args, message):
    code, stdout, stderr = benchmark(*args)
    assert code == 2 and stdout == ""
    assert len(stderr.strip().splitlines()) == 1 and message in stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_gpu_check_on_a_cpu_says_it_needs_cuda_in_one_line():
    code, stdout, stderr = benchmark("gpu-check")
    assert code == 2 and stdout == ""
    assert stderr.strip().splitlines() == [
        "benchmark.py: gpu-check needs a CUDA GPU, and this PyTorch sees none "
        "(torch.cuda.is_available() is False); run it on the machine whose GPU "
        "you want checked"
    ]


def test_gpu_check_verdict_is_one_json_line_that_flags_differences_and_fallbacks():
    """The comparison on the CPU, both sides eager: identical runs give zero differences and verdict ok."""
    config = PQNConfig(num_envs=8, num_steps=4, num_minibatches=2, actor_hidden_sizes=(16,), critic_hidden_sizes=(16,))
    result = gpu_check("CartpoleBalance", config, torch.device("cpu"), iterations=3, updates=2, fast=False)
    line = json.dumps(result)
    assert "\n" not in line and json.loads(line) == result
    assert result["verdict"] == "ok" and result["fallbacks"] == {} and result["device"] == "cpu"
    assert set(result["versions"]) == {"torch", "mujoco", "mujoco-warp", "warp-lang"}
    equivalence = result["equivalence"]
    for group in ("obs", "action", "reward", "value", "target", "parameters"):
        assert equivalence[group]["max_abs_diff"] == 0.0 and equivalence[group]["beyond_tolerance"] == 0.0, group
    speed = result["speed"]
    assert speed["steps_per_update"] == 8 * 4 and speed["eager"]["steps_per_s"] > 0 and speed["speedup"] > 0

    fast, _ = equivalence_run("CartpoleBalance", config, torch.device("cpu"), 3, 0, fast=False)
    eager, _ = equivalence_run("CartpoleBalance", config, torch.device("cpu"), 3, 0, fast=False)
    first_layer = next(fast.parameters())
    with torch.no_grad():
        first_layer[0, 0] += 0.5 * config.lr_start  # rounding-sized: within tolerance
    assert verdict(differences(fast, eager), {}) == "ok"
    with torch.no_grad():
        first_layer[0] += 0.01  # a whole row of weights far off: what a wrong graph does
    diffs = differences(fast, eager)
    assert diffs["parameters"]["max_abs_diff"] == pytest.approx(0.01 + 0.5 * config.lr_start, rel=1e-4)
    assert diffs["parameters"]["atol"] == config.lr_start and diffs["obs"]["max_abs_diff"] == 0
    beyond = diffs["parameters"]["beyond_tolerance"]
    assert beyond == pytest.approx(first_layer.shape[1] / sum(p.numel() for p in fast.parameters()))
    assert verdict(diffs, {}) == "mismatch"
    assert verdict(differences(eager, eager), {"update graph": "RuntimeError: ..."}) == "fallback"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_warp_sweep_on_a_cpu_says_how_to_run_the_quick_check_in_one_line():
    code, stdout, stderr = benchmark("warp-sweep")
    assert code == 2 and stdout == ""
    assert len(stderr.strip().splitlines()) == 1 and "device=cpu runs the quick CPU check" in stderr
    code, stdout, stderr = benchmark("warp-sweep", "device=cpu", "tasks=[CheetahRun,Nope]")
    assert code == 2 and stdout == "" and stderr.startswith("benchmark.py: unknown task(s) ['Nope']; valid: ")


@pytest.mark.slow
@pytest.mark.warp
def test_warp_sweep_quick_cpu_check_is_a_table_and_one_json_line():
    code, stdout, stderr = benchmark("warp-sweep", "device=cpu", "tasks=[CartpoleBalance]", "steps=5")
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["verdict"] == "ok" and result["problems"] == [] and result["num_envs"] == 4
    (row,) = result["tasks"]
    assert row["task"] == "CartpoleBalance" and row["finite"] and row["steps_per_s"] > 0
    assert set(row["overflows"]) == set(OVERFLOW_COUNTERS) and row["median_rel_error"] <= 1e-3
    assert "| CartpoleBalance | " in stderr


def test_sweep_problems_are_non_finite_observations_and_buffer_overflows_only():
    quiet = dict.fromkeys(OVERFLOW_COUNTERS, 0)
    fine = SweepResult("A", 1.0, 10.0, True, 0, 40, 16, {**quiet, "solver_iteration_limit": 120}, 5e-2, 0.3)
    assert sweep_problems(fine) == []  # iteration limits and a landing step's error are for a human to read
    broken = SweepResult("B", 1.0, 10.0, False, 2, 40, 16, {**quiet, "overflow_contacts": 7}, None, None)
    assert sweep_problems(broken) == [
        "B: non-finite observations",
        "B: 7 world-steps counted in overflow_contacts with the task's defaults",
    ]

"""scripts/benchmark.py prints one JSON line per run whose numbers hang together; bad options are one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def benchmark(*args):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "benchmark.py"), *args], cwd=REPO, env=ENV, check=False,
                            capture_output=True, text=True, timeout=600)
    return result.returncode, result.stdout, result.stderr


def test_train_mode_reports_every_phase_for_the_task_config():
    code, stdout, stderr = benchmark("train", "task=CartpoleBalance", "alg=cpu", "num_envs=8", "updates=2",
                                     "warmup_updates=1", "backend=mujoco", "num_threads=1")
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
    code, stdout, stderr = benchmark("env", "task=CartpoleBalance", "num_envs=16", "steps=50", "backend=mujoco",
                                     "num_threads=1")
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["mode"] == "env" and result["backend"] == "mujoco" and result["cuda_graphs"] is False
    assert result["ratio"] == pytest.approx(result["env_steps_per_s"] / result["bare_steps_per_s"], abs=1e-3)


@pytest.mark.parametrize("args, message", [
    (("train", "task=Nope"), "unknown task 'Nope'; valid tasks: AcrobotSwingup"),
    (("train", "cuda_graphs=yes"), "cuda_graphs must be true, false or auto, got 'yes'"),
    (("train", "updates=x"), "updates='x': expected a int"),
    (("train", "steps=5"), "bad argument 'steps=5'"),
])
def test_bad_options_fail_with_one_line(args, message):
    code, stdout, stderr = benchmark(*args)
    assert code == 2 and stdout == ""
    assert len(stderr.strip().splitlines()) == 1 and message in stderr

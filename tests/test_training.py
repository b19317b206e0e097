"""Training runs end to end on the CPU: the CLI, tensorboard, checkpoints, resume, evaluation, learning."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pqn_torch.algo import PQN, PQNConfig
from pqn_torch.envs import make_env
from pqn_torch.training import TrainingRun, evaluate, load_checkpoint, run_training, save_checkpoint
from pqn_torch.training.run_dir import RunDirError, claim_run_dir

from training_testing import tiny_config

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
# CartpoleBalance with 50-step episodes; 16 envs x 8 steps = 128 env steps per update.
TINY_CLI = [
    "task=CartpoleBalance",
    "alg=cpu",
    "alg.num_envs=16",
    "alg.num_steps=8",
    "alg.num_minibatches=2",
    "total_timesteps=1024",
    "eval.num_envs=4",
    "+task.overrides.episode_length=50",
    "log_interval=2",
    "num_threads=1",
    "checkpoint_interval=0.5",
]


def train_cli(*args, flags=()):
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), *flags, *TINY_CLI, *args],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_train_script_writes_tensorboard_and_checkpoint(tmp_path):
    result = train_cli(f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert "device cpu, backend mujoco" in result.stdout and "env-steps/s" in result.stdout
    events = EventAccumulator(str(next((tmp_path / "tensorboard").glob("events.*"))))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {
        "loss/critic",
        "loss/actor",
        "q/mean",
        "grad_norm/critic",
        "schedule/sigma",
        "schedule/lr",
        "eval/return_mean",
        "perf/env_steps_per_s",
        "train/episode_return",
        "env/episodes",
        "env/nonfinite_states",
        "physics/overflow_constraints",  # the native backend has the counters too, at zero
        "physics/solver_iteration_limit",
    } <= tags
    assert events.Scalars("physics/overflow_contacts")[-1].value == 0
    assert events.Scalars("loss/critic")[-1].step == 1024
    checkpoint = load_checkpoint(tmp_path)
    assert checkpoint["env_steps"] == 1024 and checkpoint["updates"] == 8
    assert checkpoint["config"]["task"]["name"] == "CartpoleBalance"

    evaluated = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "evaluate.py"), f"checkpoint={tmp_path}", "episodes=3"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert "over 3 episodes (mean length 50)" in evaluated.stdout
    if importlib.util.find_spec("matplotlib"):  # the 'plot' extra: the learning curve lands in the run dir
        assert f"learning curve: {tmp_path / 'eval.png'}" in result.stdout and (tmp_path / "eval.png").is_file()
    else:
        assert "no learning-curve plot: plots need matplotlib: pip install 'pqn-torch[plot]'" in result.stdout


def test_without_alg_a_cpu_run_takes_the_cpu_sized_twin_and_says_so_first(tmp_path):
    arguments = [argument for argument in TINY_CLI if argument != "alg=cpu"]
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), *arguments, "device=cpu", f"hydra.run.dir={tmp_path}"],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.endswith(
        ": running CartpoleBalance with the CPU-sized preset alg=cpu instead of its GPU-sized "
        "'dm_suite' preset; to run that one anyway: python scripts/train.py task=CartpoleBalance "
        "alg=dm_suite"
    )
    cpu = _preset("cpu")
    for saved in (
        load_checkpoint(tmp_path)["config"]["alg"],
        OmegaConf.to_container(OmegaConf.load(tmp_path / "config.yaml"))["alg"],
    ):
        assert saved["actor_hidden_sizes"] == cpu["actor_hidden_sizes"] and saved["lr_start"] == cpu["lr_start"]
        assert saved["num_envs"] == 16  # the command line's alg.* values still apply on top


def test_invalid_value_fails_at_start_with_one_line(tmp_path):
    result = train_cli("alg.num_envs=0", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["train.py: alg.num_envs must be a positive integer, got 0"]


def test_multirun_over_seeds(tmp_path):
    result = train_cli("seed=0,1", "total_timesteps=256", f"hydra.sweep.dir={tmp_path}", flags=["-m"])
    assert result.returncode == 0, result.stderr
    for job, seed in enumerate((0, 1)):
        assert load_checkpoint(tmp_path / f"{job}_seed{seed}")["config"]["seed"] == seed


def test_resume_restores_everything_and_finishes_the_run(tmp_path, capsys):
    first = run_training(tiny_config(), tmp_path / "first", alg_preset="dm_suite", show_progress=False)
    printed = capsys.readouterr().out
    assert "python scripts/train.py task=CartpoleBalance alg=cpu" in printed  # the CPU hint for a GPU preset
    assert "estimated time" in printed
    assert first.updates == 4 and first.env_steps == 512
    midway = load_checkpoint(first.checkpoint.with_name("step_000000000256.pt"))
    assert midway["updates"] == 2

    resumed = TrainingRun(
        {**tiny_config(total_timesteps=10**9, seed=7), "resume": midway["path"]},
        tmp_path / "second",
        show_progress=False,
    )
    # the checkpoint's config wins over this command line's (apart from runtime keys such as device)
    assert resumed.settings.total_timesteps == 512 and resumed.settings.seed == 0
    saved = midway["agent"]["modules"]
    for name, value in resumed.agent.state_dict().items():
        assert torch.equal(value, saved[name]), name
    assert int(resumed.agent.updates_done) == 2 and resumed.agent.learning_rate == pytest.approx(
        resumed.agent.lr_schedule(2 * 2 * 2)
    )
    assert torch.equal(torch.get_rng_state(), midway["rng"]["torch"])
    summary = resumed.run()
    assert summary.updates == 4 and summary.env_steps == 512
    assert [p.name for p in (tmp_path / "second" / "checkpoints").iterdir()] == ["step_000000000512.pt"]
    assert [point["env_steps"] for point in summary.eval_curve] == [512]


def test_checkpoints_are_never_overwritten(tmp_path):
    directory = claim_run_dir(tmp_path, rename_if_taken=False) / "checkpoints"
    save_checkpoint(directory, 100, {"marker": 1, "agent": {}, "config": {}})
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        save_checkpoint(directory, 100, {"marker": 2, "agent": {}, "config": {}})
    assert load_checkpoint(tmp_path)["marker"] == 1
    with pytest.raises(RunDirError, match="already holds the outputs of another run"):
        claim_run_dir(tmp_path, rename_if_taken=False)


def random_policy_return(episodes: int = 16) -> float:
    """Mean undiscounted CartpoleBalance return of uniformly random actions (the baseline to beat)."""
    env = make_env("CartpoleBalance", episodes, device="cpu", backend="mujoco", seed=123, num_threads=2)
    generator = torch.Generator().manual_seed(0)
    env.reset()
    total = torch.zeros(episodes)
    for _ in range(env.episode_length):
        total += env.step(torch.rand(episodes, env.action_dim, generator=generator) * 2 - 1)["reward"]
    return float(total.mean())


def test_cpu_preset_learns_cartpole_balance_well_above_a_random_policy():
    """The CI-sized cut of the README's CPU run: alg=cpu's 300k-step schedules, stopped after 200k steps.

    (Compressing the schedules into 200k steps decays noise and learning rate too early to learn.)
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as train.py does on the CPU (torch_threads=1)
    try:
        torch.manual_seed(0)
        env = make_env("CartpoleBalance", 64, device="cpu", backend="mujoco", seed=0)
        agent = PQN.for_env(env, PQNConfig.from_dict(_preset("cpu")), total_timesteps=300_000)
        agent.reset(env)
        for _ in range(200_000 // agent.steps_per_update):
            agent.train_iteration(env)
        eval_env = make_env("CartpoleBalance", 16, device="cpu", backend="mujoco", seed=1)
        trained = evaluate(agent.act, eval_env).mean_return
    finally:
        torch.set_num_threads(threads)
    random_return = random_policy_return()
    assert trained > max(1.5 * random_return, random_return + 200), (trained, random_return)


def test_cpu_preset_holds_cartpole_balance_to_the_end_of_training(tmp_path):
    """The late-collapse regression (README, "Learning parity"): the issue's setting, one of its seeds.

    ``alg=cpu`` on CartpoleBalance for the preset's 3e5 steps with the reference's truncation handling,
    seed 9 of the README's table: with every env's time limit in the same step (``alg.stagger_episodes=false``,
    as before the fix) this run's final evaluation falls to 142; staggered it ends at 997.
    """
    alg = _preset("cpu")
    alg["bootstrap_truncation"] = False
    config = {
        "task": {"name": "CartpoleBalance", "overrides": {}},
        "alg": alg,
        "seed": 9,
        "device": "cpu",
        "backend": "mujoco",
        "num_threads": 1,
        "torch_threads": 1,
        "total_timesteps": 300_000,
        "compile": False,
        "resume": None,
        "eval": {"interval": 1.0, "num_envs": 64},
        "log_interval": 50,
        "checkpoint_interval": 0,
    }
    summary = run_training(config, tmp_path, show_progress=False)
    assert summary.env_steps == 299_008
    assert summary.final_eval_return > 900, summary.eval_curve


def _preset(name: str) -> dict:
    values = OmegaConf.to_container(OmegaConf.load(REPO / "configs" / "alg" / f"{name}.yaml"))
    values.pop("total_timesteps")
    return values

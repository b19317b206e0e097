"""What a demanding user breaks: bad input, corrupt checkpoints, signals, diverging runs, full disks (CPU, small).

Every command-line test asserts the message (one line on stderr), the exit code, and what is (or is not)
left on disk; the scripts run in an empty working directory so that anything they leave there shows.
"""

import builtins
import errno
import io
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mujoco
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pqn_torch.envs import make_env
from pqn_torch.envs.physics.mujoco_warnings import MujocoWarnings, capture_mujoco_warnings
from pqn_torch.policy import Policy
from pqn_torch.training import TrainingDiverged, TrainingRun, load_checkpoint, save_checkpoint
from pqn_torch.training.checkpoint import CheckpointWriteError
from pqn_torch.training.evaluation import evaluate
from pqn_torch.training.run_dir import RunDirError, check_writable, claim_run_dir
from pqn_torch.training.trainer import runaway_value

import training_testing

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
# PendulumSwingup, 8 envs x 8 steps = 64 env steps per update, 20-step episodes, small networks.
TINY = [
    "task=PendulumSwingup",
    "alg=cpu",
    "alg.num_envs=8",
    "alg.num_steps=8",
    "alg.num_minibatches=2",
    "alg.actor_hidden_sizes=[32]",
    "alg.critic_hidden_sizes=[32]",
    "eval.num_envs=2",
    "+task.overrides.episode_length=20",
    "num_threads=1",
    "log_interval=1",
]


def tiny_config(**changes):
    return training_testing.tiny_config(
        "PendulumSwingup",
        num_envs=8,
        episode_length=20,
        eval_envs=2,
        lr=(1e-3, 1e-4),
        **{"total_timesteps": 256, **changes},
    )


def script(name, *args, cwd, env=None, timeout=300, **popen):
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / name), *args],
        cwd=cwd,
        env={**ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        **popen,
    )


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``directory`` with its size and modification time (to show nothing was touched)."""
    return {
        str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 4-update PendulumSwingup run: checkpoints after 128 and 256 env steps."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    TrainingRun(tiny_config(), run_dir, show_progress=False).run()
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "step_000000000128.pt",
        "step_000000000256.pt",
    ]
    return run_dir


def copy_of(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    return copy


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["task.overrides.episode_length=abc"],
            "train.py: task.overrides (PendulumSwingup): episode_length must be a "
            "positive integer (control steps), got 'abc'",
        ),
        (
            ["+task.overrides.sim_dt=0"],
            "train.py: task.overrides (PendulumSwingup): sim_dt must be a positive number of seconds, got 0",
        ),
        (["resume=123"], "train.py: resume must be a run directory or checkpoint path, got 123"),
        (["alg.lr_start=inf"], "train.py: alg.lr_start must be a finite number >= 0, got inf"),
        (["alg.num_env=3"], "train.py: unknown alg option(s) ['num_env']; valid: ['num_envs', 'num_steps', "),
        (["seed=abc"], "train.py: seed must be an integer >= 0, got 'abc'"),
        (
            ["alg.penalty_coeff=1e300"],
            "train.py: alg.penalty_coeff must be at most 3.403e+38 (the largest float32, the precision training "
            "computes in), got 1e+300",
        ),
        (
            ["+task.overrides.ctrl_dt=nan"],
            "train.py: task.overrides (PendulumSwingup): ctrl_dt must be a positive number of seconds, got nan",
        ),
        (
            ["task.overrides.sim_dt=0.01"],
            "train.py: task.overrides.sim_dt: the task's config sets no sim_dt to change; task options are added "
            "with a leading +: +task.overrides.sim_dt=<value>",
        ),
        (
            ["hydra.run.dir=/proc/pqn_run"],
            "train.py: hydra.run.dir=/proc/pqn_run: /proc is not writable (",
        ),
        (
            ["total_timesteps=640", "checkpoint_interval=0.05"],
            "train.py: checkpoint_interval=0.05 is less than one update of this run (10 updates); use 0 "
            "(final checkpoint only) or a fraction >= 0.1",
        ),
    ],
)
def test_bad_training_input_is_one_line_exit_2_and_leaves_nothing(tmp_path, args, message):
    """The command-line path of a few cases; test_configs checks every invalid value's message in-process."""
    result = script("train.py", *TINY, *args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in one_line(result.stderr)
    assert list(tmp_path.iterdir()) == []  # no outputs/ (hydra's run dir is removed again)


def test_a_refused_multirun_leaves_nothing_not_even_multirun_yaml(tmp_path):
    result = script("train.py", "-m", *TINY, "alg.num_envs=0", "seed=0,1", cwd=tmp_path)
    assert result.returncode == 2
    assert one_line(result.stderr).startswith("train.py: ")
    assert list(tmp_path.iterdir()) == []  # hydra wrote multirun/<task>/<time>/multirun.yaml before the first job


def test_a_short_run_with_default_intervals_trains_and_says_it_adapted_them(tmp_path):
    """4 updates: the default intervals (0.1 of training) become one update each, said once on the console."""
    run_dir = f"hydra.run.dir={tmp_path / 'run'}"
    result = script("train.py", *TINY, "total_timesteps=256", "keep_checkpoints=null", run_dir, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for key in ("checkpoint_interval", "eval.interval"):
        note = f"{key}: the default 0.1 of training is less than one update of this run (4 updates); using one update"
        assert result.stdout.count(note) == 1
    checkpoints = sorted(path.name for path in (tmp_path / "run" / "checkpoints").iterdir())  # all are kept
    assert checkpoints == [f"step_{steps:012d}.pt" for steps in (64, 128, 192, 256)]
    assert len((tmp_path / "run" / "eval.csv").read_text().splitlines()) == 6  # header, before and after each update


def test_unwritable_run_dir_is_refused_before_anything_starts(tmp_path):
    (tmp_path / "a_file").write_text("not a directory")
    result = script("train.py", *TINY, f"hydra.run.dir={tmp_path / 'a_file' / 'run'}", cwd=tmp_path)
    assert result.returncode == 2
    assert one_line(result.stderr) == (
        f"train.py: hydra.run.dir={tmp_path / 'a_file' / 'run'}: {tmp_path / 'a_file'} "
        "is not a directory; choose a writable location"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["a_file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_run_dir_is_refused_before_anything_starts(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    result = script("train.py", *TINY, f"hydra.run.dir={locked / 'run'}", cwd=tmp_path)
    assert result.returncode == 2
    assert f"{locked} is not writable" in one_line(result.stderr)
    assert list(locked.iterdir()) == []


def test_run_dir_without_room_for_one_checkpoint_is_refused(tmp_path):
    run_dir = claim_run_dir(tmp_path / "run", rename_if_taken=False)
    free = shutil.disk_usage(run_dir).free
    with pytest.raises(RunDirError, match=r"less than one checkpoint"):
        check_writable(run_dir, checkpoint_bytes=free * 2, checkpoints=1)
    assert "less than the 10 checkpoints" in check_writable(run_dir, checkpoint_bytes=free // 5, checkpoints=10)
    assert check_writable(run_dir, checkpoint_bytes=1024, checkpoints=10) is None
    assert list((run_dir / "checkpoints").iterdir()) == []  # the probe file is gone


@pytest.mark.parametrize(
    "args, message",
    [
        (["seed=abc"], "evaluate.py: seed must be an integer >= 0, got 'abc'"),
        (["episodes=0"], "evaluate.py: episodes must be a positive integer, got 0"),
        (
            ["video=true", "video_path=/proc/eval.mp4"],
            "evaluate.py: video_path /proc/eval.mp4: the folder /proc does not exist or is not writable; "
            "give a file in a writable folder",
        ),
        (
            ["video=true", "video_path=/nonexistent/folder/eval.mp4"],
            "evaluate.py: video_path /nonexistent/folder/eval.mp4: the folder /nonexistent/folder does not exist "
            "or is not writable; give a file in a writable folder",
        ),
    ],
)
def test_bad_evaluation_input_is_one_line_exit_2(tmp_path, finished_run, args, message):
    before = snapshot(finished_run)
    result = script("evaluate.py", f"checkpoint={finished_run}", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert one_line(result.stderr) == message
    assert list(tmp_path.iterdir()) == [] and snapshot(finished_run) == before


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="uses /proc, where nobody may create files")
@pytest.mark.parametrize("name, option", [("export.py", "output=/proc/policy.onnx"), ("plot.py", "output=/proc/x.png")])
def test_an_output_file_that_cannot_be_created_is_one_line_naming_option_path_and_reason(
    tmp_path, finished_run, name, option
):
    before = snapshot(finished_run)
    source = f"checkpoint={finished_run}" if name == "export.py" else str(finished_run)
    result = script(name, source, option, cwd=tmp_path)
    assert result.returncode == 2
    assert one_line(result.stderr) == (
        f"{name}: {option}: /proc is not writable (No such file or directory); give a file in a writable folder"
    )
    assert list(tmp_path.iterdir()) == [] and snapshot(finished_run) == before


def test_bad_task_options_and_reset_states_are_refused_at_the_call():
    with pytest.raises(ValueError, match=r"^task Go1JoystickFlatTerrain: option obs_noise_level must be a finite "):
        make_env("Go1JoystickFlatTerrain", 8, obs_noise_level=float("nan"))
    env = make_env("CartpoleBalance", 2, "cpu", "mujoco", num_threads=1)
    qpos, qvel = env.start_states["qpos"][:2], env.start_states["qvel"][:2]
    with pytest.raises(ValueError, match=r"^reset_to: qpos holds NaN or inf entries; every entry must be finite$"):
        env.reset_to(torch.full_like(qpos, float("nan")), qvel)
    with pytest.raises(ValueError, match=r"^reset_to: qvel is a meta tensor \(a shape without values\)"):
        env.reset_to(qpos, torch.empty(qvel.shape, device="meta"))
    go1 = make_env("Go1JoystickFlatTerrain", 2, "cpu", "mujoco", num_threads=1)
    command = torch.tensor([[0.5, 0.0, float("inf")], [0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match=r"^reset_to: task_state\['command'\] holds NaN or inf entries"):
        go1.reset_to(go1.start_states["qpos"][:2], go1.start_states["qvel"][:2], task_state={"command": command})


def test_a_policy_evaluated_in_another_tasks_env_names_both_tasks(finished_run):
    policy = Policy.from_checkpoint(finished_run)
    with pytest.raises(ValueError) as refused:
        evaluate(policy, make_env("CartpoleBalance", 4, "cpu", "mujoco", num_threads=1))
    assert str(refused.value) == (
        "the policy was trained on PendulumSwingup and cannot act in CartpoleBalance; evaluate it in a "
        "PendulumSwingup env"
    )


def test_benchmark_with_an_unknown_preset_is_one_line(tmp_path):
    result = script("benchmark.py", "train", "task=PendulumSwingup", "alg=nope", cwd=tmp_path)
    assert result.returncode == 2
    assert one_line(result.stderr) == (
        "benchmark.py: unknown alg preset 'nope'; valid: cpu, dm_suite, locomotion, locomotion_cpu, "
        "locomotion_humanoid_cpu, manipulation, manipulation_cpu"
    )
    assert result.stdout == "" and list(tmp_path.iterdir()) == []


def test_mujoco_gl_naming_a_missing_backend_is_one_line(tmp_path):
    probe = subprocess.run(
        [sys.executable, "-c", "import mujoco"], env={**ENV, "MUJOCO_GL": "osmesa"}, capture_output=True, timeout=120
    )
    if probe.returncode == 0:
        pytest.skip("OSMesa is installed here: MUJOCO_GL=osmesa works")
    for name in ("train.py", "evaluate.py", "benchmark.py"):
        result = script(
            name, *(TINY if name == "train.py" else ["checkpoint=x"]), cwd=tmp_path, env={"MUJOCO_GL": "osmesa"}
        )
        assert result.returncode == 2
        line = one_line(result.stderr)
        assert line.startswith(f"{name}: MuJoCo cannot load the OpenGL backend MUJOCO_GL=osmesa")
        assert "unset MUJOCO_GL" in line
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- checkpoints and resume
def test_corrupt_checkpoint_is_one_line_for_resume_and_evaluate(tmp_path, finished_run):
    corrupt = tmp_path / "step_000000000256.pt"
    data = (finished_run / "checkpoints" / "step_000000000256.pt").read_bytes()
    corrupt.write_bytes(data[: len(data) // 2])
    expected = f"{corrupt} is not a readable checkpoint: the file is truncated or corrupt"
    work = tmp_path / "work"
    work.mkdir()
    trained = script("train.py", f"resume={corrupt}", cwd=work)
    evaluated = script("evaluate.py", f"checkpoint={corrupt}", cwd=work)
    assert (trained.returncode, evaluated.returncode) == (2, 2)
    assert one_line(trained.stderr) == f"train.py: {expected}"
    assert one_line(evaluated.stderr) == f"evaluate.py: {expected}"
    assert list(work.iterdir()) == []


def test_resume_falls_back_to_the_newest_readable_checkpoint_and_says_so(tmp_path, finished_run):
    run = copy_of(finished_run, tmp_path)
    newest = run / "checkpoints" / "step_000000000256.pt"
    newest.write_bytes(newest.read_bytes()[:1000])
    result = script("train.py", f"resume={run}", f"hydra.run.dir={tmp_path / 'resumed'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"warning: {newest} is unreadable (the file is truncated or corrupt); skipped it" in result.stdout
    assert f"resumed from {run / 'checkpoints' / 'step_000000000128.pt'} at env step 128" in result.stdout
    assert load_checkpoint(tmp_path / "resumed")["env_steps"] == 256
    evaluated = script("evaluate.py", f"checkpoint={run}", "episodes=2", cwd=tmp_path)
    assert evaluated.returncode == 0
    assert (
        evaluated.stdout.splitlines()[0] == f"warning: {newest} is unreadable (the file is truncated or corrupt); "
        "skipped it"
    )


def test_resume_refuses_conflicting_overrides_and_touches_nothing(tmp_path, finished_run):
    before = snapshot(finished_run)
    middle = finished_run / "checkpoints" / "step_000000000128.pt"
    result = script(
        "train.py",
        f"resume={middle}",
        "task=CartpoleBalance",
        "seed=3",
        "alg.lr_start=0.01",
        "device=cpu",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith("train.py: resume: task.name=CartpoleBalance (the run has PendulumSwingup), ")
    assert "seed=3 (the run has 0)" in line and "alg.lr_start=0.01 (the run has 0.001)" in line
    assert "device" not in line  # a runtime key: taken from this command line
    into_itself = script("train.py", f"resume={middle}", f"hydra.run.dir={finished_run}", cwd=tmp_path)
    assert into_itself.returncode == 2
    assert f"run dir {finished_run} already holds the outputs of another run" in one_line(into_itself.stderr)
    assert list(tmp_path.iterdir()) == [] and snapshot(finished_run) == before


def test_resume_extends_total_timesteps_on_purpose_only(tmp_path, finished_run):
    finished = script("train.py", f"resume={finished_run}", cwd=tmp_path)
    assert finished.returncode == 2
    assert one_line(finished.stderr) == (
        f"train.py: resume: {finished_run / 'checkpoints' / 'step_000000000256.pt'} "
        "is the end of its run (256 env steps); pass a larger total_timesteps to "
        "extend it"
    )
    assert list(tmp_path.iterdir()) == []
    extended = script(
        "train.py",
        f"resume={finished_run}",
        "total_timesteps=384",
        f"hydra.run.dir={tmp_path / 'longer'}",
        cwd=tmp_path,
    )
    assert extended.returncode == 0, extended.stderr
    assert (
        "extending the run to 384 env steps; learning rate and noise stay at their final values after 256"
        in extended.stdout
    )
    checkpoint = load_checkpoint(tmp_path / "longer")
    assert checkpoint["env_steps"] == 384 and checkpoint["schedule_timesteps"] == 256
    assert checkpoint["config"]["total_timesteps"] == 384


# ----------------------------------------------------------------------------- runs that go bad
def diverged_line(tmp_path: Path, *lr: str) -> str:
    """Train TINY with the learning rate overrides ``lr``; it must stop (exit 1) having saved nothing: its one line."""
    result = script(
        "train.py",
        *TINY,
        "total_timesteps=640",
        "checkpoint_interval=0.5",
        *lr,
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr
    assert list((tmp_path / "run" / "checkpoints").iterdir()) == []
    return one_line(result.stderr)


def train_poisoned_after_update_5(tmp_path: Path, poison) -> tuple[str, Path]:
    """Train 8 updates (checkpoints every 2), ``poison(agent)`` after update 5; the divergence message and the
    checkpoint of update 4, which must stay the latest."""
    run = TrainingRun(tiny_config(total_timesteps=512, checkpoint_interval=0.25), tmp_path, show_progress=False)
    train_iteration = run.agent.train_iteration

    def poisoned_after_update_5(env):
        train_iteration(env)
        if run.agent.updates_issued == 5:
            with torch.no_grad():
                poison(run.agent)

    run.agent.train_iteration = poisoned_after_update_5
    with pytest.raises(TrainingDiverged) as raised:
        run.run()
    good = tmp_path / "checkpoints" / "step_000000000256.pt"
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_000000000128.pt", good.name]
    return str(raised.value), good


def test_diverging_run_stops_names_the_update_and_exits_1(tmp_path):
    line = diverged_line(tmp_path, "alg.lr_start=1e30", "alg.lr_end=1e30")
    assert line.startswith("train.py: training diverged: non-finite weights, critic_loss")
    assert "at update 1 (env step 64); everything was finite at update 0" in line
    assert "the latest checkpoint is none" in line


def test_divergence_keeps_the_last_good_checkpoint_as_the_latest(tmp_path):
    message, good = train_poisoned_after_update_5(tmp_path, lambda agent: agent.critic.weights[0][0].fill_(math.nan))
    assert "non-finite weights" in message and "at update 5 (env step 320)" in message
    assert (
        f"everything was finite at update 4. Nothing diverged was saved: the latest checkpoint is {good}"
    ) in message
    assert torch.isfinite(load_checkpoint(tmp_path)["agent"]["modules"]["critic.weights.0"]).all()


def test_a_runaway_q_estimate_stops_the_run_while_still_finite_and_exits_1(tmp_path):
    """``lr_start=1e6``: mean Q reaches ~1e9 after one update, every number still finite (exit 0 before)."""
    line = diverged_line(tmp_path, "alg.lr_start=1e6")
    # Rewards of PendulumSwingup lie in [0, 1] and gamma is 0.99: |Q| <= 1 / (1 - 0.99) = 100, the limit 1000 x that.
    assert line.startswith("train.py: training diverged: q/mean reached "), line
    assert "beyond 1e+05 (1000 x the largest |Q| that rewards of scale 1 allow with gamma 0.99) at update 1" in line
    assert line.endswith("Nothing diverged was saved: the latest checkpoint is none. Lower alg.lr_start (now 1e+06)")


def test_a_runaway_q_estimate_keeps_the_last_good_checkpoint_as_the_one_evaluate_picks(tmp_path):
    """Critic output x 1e8 after update 5 (finite): the checkpoint of update 4 stays the latest, and evaluates."""

    def blow_up(agent):
        for tensor in (agent.critic.weights[-1], agent.critic.biases[-1]):  # the output layer (hidden: layer-normed)
            tensor.mul_(1e8)

    message, good = train_poisoned_after_update_5(tmp_path, blow_up)
    # Update 5's minibatch metrics came before the poison; update 6's rollout values show it.
    assert message.startswith("training diverged: q/mean reached ") and "at update 6 (env step 384)" in message
    result = script("evaluate.py", f"checkpoint={tmp_path}", "episodes=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert str(good) in result.stdout


def test_runaway_value_compares_q_with_the_rewards_discounted_horizon():
    """|Q| may reach 1000 x r / (1 - gamma): r = 3, gamma 0.5 -> 6,000; the critic loss counts per critic."""
    healthy = {"q_mean": 5_999.0, "value_mean": -5.0, "target_mean": 3.0, "critic_loss": 11_998.0}
    assert runaway_value(healthy, 3.0, 0.5, 1000, num_critics=2) is None
    assert runaway_value({**healthy, "target_mean": -6_001.0}, 3.0, 0.5, 1000, 2) == ("target_mean", -6_001.0, 6_000.0)
    assert runaway_value({**healthy, "critic_loss": 12_002.0}, 3.0, 0.5, 1000, 2) == ("critic_loss", 6_001.0, 6_000.0)
    assert runaway_value({"q_mean": 1001.0}, 0.01, 0.0, 1000, 1) == ("q_mean", 1001.0, 1000.0)  # reward floor 1
    assert runaway_value({"q_mean": 50_001.0}, 1.0, 1.0, 50, 1) == ("q_mean", 50_001.0, 50_000.0)  # gamma 1: episodes


def test_a_world_blowing_up_does_not_poison_the_observation_normalizer(tmp_path):
    """HumanoidRun at sim_dt 0.025 (the issue's command, scaled): ~20 % of world-steps blow up, values up to 1e10.

    Healthy humanoid observations stay below 75 (variance well below 1e4); before, the statistics learnt
    the blown-up worlds' values and ended with variances of 1e11.
    """
    result = script(
        "train.py",
        "task=HumanoidRun",
        "alg=cpu",
        "+task.overrides.sim_dt=0.025",
        "+task.overrides.episode_length=50",
        "alg.num_envs=16",
        "alg.num_steps=8",
        "total_timesteps=512",
        "checkpoint_interval=0",
        "eval.num_envs=2",
        "num_threads=1",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "were unstable" in result.stdout  # still reset, counted and reported
    modules = load_checkpoint(tmp_path / "run")["agent"]["modules"]
    for name in ("obs_normalizer", "critic_obs_normalizer"):
        assert modules[f"{name}.var"].max().item() < 1e6, modules[f"{name}.var"]
        assert modules[f"{name}.mean"].abs().max().item() < 100


def test_evaluating_non_finite_weights_is_an_error(tmp_path, finished_run):
    payload = load_checkpoint(finished_run)
    payload["agent"]["modules"]["actor.body.0.weight"].fill_(float("nan"))
    path = save_checkpoint(tmp_path, 999, {key: payload[key] for key in ("agent", "config", "rng", "updates")})
    result = script("evaluate.py", f"checkpoint={path}", cwd=tmp_path)
    assert result.returncode == 2
    assert one_line(result.stderr) == (
        f"evaluate.py: {path} holds non-finite weights (actor.body.0.weight): it comes "
        "from a diverged run and cannot be evaluated; use an earlier checkpoint"
    )


def test_unstable_physics_is_reported_on_the_console_and_mujoco_warnings_are_rate_limited(tmp_path):
    """PointMass with a 5 s physics step blows up in ~10 % of world-steps: say so, do not flood, no log file."""
    result = script(
        "train.py",
        *TINY,
        "task=PointMass",
        "+task.overrides.ctrl_dt=5.0",
        "+task.overrides.sim_dt=5.0",
        "total_timesteps=1280",
        "checkpoint_interval=0",
        "log_interval=5",
        "eval.interval=1",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stdout.splitlines() if "were unstable" in line]
    assert len(warnings) == 1 and "of the world-steps from env step 0 to 320" in warnings[0]
    assert "unstable world-steps were reset in this run" in result.stdout
    mujoco_lines = [line for line in result.stderr.splitlines() if line.startswith("MuJoCo")]
    assert len(mujoco_lines) <= 5, result.stderr  # at most the first of each kind, never one per step
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
    events = EventAccumulator(str(next((tmp_path / "run" / "tensorboard").glob("events.*"))))
    events.Reload()
    assert events.Scalars("env/nonfinite_states")[-1].value > 0 and "env/mujoco_warnings" in events.Tags()["scalars"]


def test_mujoco_warnings_are_counted_by_kind_and_summarized(tmp_path, monkeypatch):
    lines = []
    handler = MujocoWarnings(interval=3600.0)
    handler._print = lines.append
    for step in range(500):
        handler(
            f"Nan, Inf or huge value in QACC at DOF {step % 3}. The simulation is unstable. Time = {step * 0.01:.4f}."
        )
    handler("Linesearch objective is not convex")
    assert handler.total == 501 and len(handler.counts) == 2 and len(lines) == 2
    handler.interval = 0.0
    handler("Linesearch objective is not convex")
    assert lines[-1].startswith("MuJoCo: 500 more warnings in the last") and "(502 in all)" in lines[-1]

    monkeypatch.chdir(tmp_path)  # MuJoCo's default handler appends to MUJOCO_LOG.TXT here
    env = make_env("CartpoleBalance", 4, device="cpu", backend="mujoco", num_threads=1, reset_pool_size=4)
    assert mujoco.get_mju_user_warning() is capture_mujoco_warnings()
    before = capture_mujoco_warnings().total
    env.reset()
    env.physics.qvel[1, 1] = float("nan")
    env.step(torch.zeros(4, 1))
    assert capture_mujoco_warnings().total > before and list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- work that must not be lost
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_save_flush_and_say_how_to_resume(tmp_path, signum):
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "scripts" / "train.py"),
            *TINY,
            "total_timesteps=640000",
            "log_interval=50",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (run_dir / "eval.csv").exists() and time.monotonic() < deadline:  # training has started
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum
    checkpoint = load_checkpoint(run_dir)
    steps = checkpoint["env_steps"]
    assert 0 < steps < 640000 and checkpoint["updates"] * 64 == steps
    assert one_line(stderr) == (
        f"train.py: stopped by {signal.Signals(signum).name} at env step {steps:,}; latest "
        f"checkpoint {run_dir / 'checkpoints' / f'step_{steps:012d}.pt'}; to continue: "
        f"python scripts/train.py resume={run_dir}"
    )
    assert f"{signal.Signals(signum).name} received: finishing this update" in stdout
    assert "Traceback" not in stdout + stderr
    events = EventAccumulator(str(next((run_dir / "tensorboard").glob("events.*"))))
    events.Reload()
    assert events.Scalars("loss/critic")[-1].step == steps  # flushed up to the checkpoint


def test_a_failed_checkpoint_write_names_the_file_and_training_goes_on(tmp_path):
    """A file-size limit below one checkpoint stands in for a full disk: no checkpoint fits, none is half-written."""

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG from write() instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    run_dir = tmp_path / "run"
    result = script(
        "train.py",
        *TINY,
        "total_timesteps=256",
        "checkpoint_interval=0.5",
        "alg.critic_hidden_sizes=[256]",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
        preexec_fn=limit_file_size,
    )
    periodic, final = (run_dir / "checkpoints" / f"step_{steps:012d}.pt" for steps in (128, 256))
    assert result.returncode == 1
    assert (
        f"warning: could not write checkpoint {periodic}: File too large; training goes on, the latest "
        "checkpoint stays none"
    ) in result.stdout
    assert one_line(result.stderr) == (
        f"train.py: could not write checkpoint {final}: File too large; the latest checkpoint is none"
    )
    assert list((run_dir / "checkpoints").iterdir()) == []  # no partial files
    assert len((run_dir / "eval.csv").read_text().splitlines()) == 6  # header + 5 evaluations: training went on


def test_a_full_disk_mid_run_ends_in_one_line_and_leaves_a_checkpoint_that_resumes(tmp_path, monkeypatch, capfd):
    """Every file opened for writing in the run dir fails with ENOSPC after the first checkpoint (a full disk)."""
    run_dir = tmp_path / "run"
    run = TrainingRun(tiny_config(total_timesteps=512, checkpoint_interval=0.25), run_dir, show_progress=False)
    disk_full = False
    real_open = builtins.open

    def open_on_a_full_disk(file, mode="r", *args, **kwargs):
        writing = any(flag in mode for flag in "wax+")
        if disk_full and writing and isinstance(file, str | os.PathLike) and run_dir in Path(file).parents:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_on_a_full_disk)
    monkeypatch.setattr(io, "open", open_on_a_full_disk)  # pathlib and tensorboard's writer thread open through io
    save = run.save

    def save_then_fill_the_disk(update, final=False):
        nonlocal disk_full
        path = save(update, final)
        disk_full = True
        return path

    run.save = save_then_fill_the_disk
    with pytest.raises(CheckpointWriteError) as raised:
        run.run()
    intact = run_dir / "checkpoints" / "step_000000000128.pt"
    assert str(raised.value) == (
        f"could not write checkpoint {run_dir / 'checkpoints' / 'step_000000000512.pt'}: No space left on device; "
        f"the latest checkpoint is {intact}, intact; free some space; to continue: python scripts/train.py "
        f"resume={run_dir}"
    )
    output = capfd.readouterr()
    assert "Traceback" not in output.err + output.out
    assert f"warning: cannot write {run_dir / 'eval.csv'}: No space left on device" in output.out
    assert output.out.count("could not write checkpoint") == 2  # updates 4 and 6: training went on to the end
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == [intact.name]
    monkeypatch.undo()
    resumed = TrainingRun(
        tiny_config(total_timesteps=512, resume=str(run_dir)), tmp_path / "resumed", show_progress=False
    )
    assert resumed.env_steps == 128 and resumed.run().env_steps == 512


def test_two_runs_started_together_get_their_own_run_dirs(tmp_path):
    processes = [
        subprocess.Popen(
            [sys.executable, str(REPO / "scripts" / "train.py"), *TINY, "total_timesteps=128", "checkpoint_interval=0"],
            cwd=tmp_path,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for process in processes:
        process.communicate(timeout=300)
        assert process.returncode == 0
    run_dirs = sorted((tmp_path / "outputs" / "PendulumSwingup").iterdir())
    assert len(run_dirs) == 2
    for run_dir in run_dirs:
        assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["step_000000000128.pt"]
        assert len((run_dir / "eval.csv").read_text().splitlines()) == 4  # header, before and after each update
        assert len(list((run_dir / "tensorboard").iterdir())) == 1


def test_a_taken_default_run_dir_is_renamed_and_a_chosen_one_refused(tmp_path):
    first = claim_run_dir(tmp_path / "2026-01-01_00-00-00_seed0", rename_if_taken=True)
    second = claim_run_dir(tmp_path / "2026-01-01_00-00-00_seed0", rename_if_taken=True)
    assert (first.name, second.name) == ("2026-01-01_00-00-00_seed0", "2026-01-01_00-00-00_seed0_2")
    with pytest.raises(RunDirError) as refused:
        claim_run_dir(first, rename_if_taken=False)
    assert str(refused.value) == (
        f"run dir {first} holds an empty checkpoints/ and nothing else: another run claimed it (one starting now, "
        f"or one stopped before it wrote anything); remove {first / 'checkpoints'} if no run is using it, or choose "
        "another directory with hydra.run.dir=<dir>"
    )


def test_a_run_dir_with_outputs_but_no_checkpoint_is_refused_without_a_resume_hint(tmp_path):
    run_dir = claim_run_dir(tmp_path / "run", rename_if_taken=False)
    (run_dir / "eval.csv").write_text("env_steps\n")
    with pytest.raises(RunDirError) as refused:
        claim_run_dir(run_dir, rename_if_taken=False)
    assert str(refused.value) == (
        f"run dir {run_dir} holds another run's checkpoints, eval.csv but no checkpoint to resume from; remove them "
        "or choose another directory with hydra.run.dir=<dir>"
    )

"""Data-parallel training on the CPU: 2 ranks over Gloo on 127.0.0.1 (torch.multiprocessing and torchrun)."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pqn_torch import distributed
from pqn_torch.algo import PQN, PQNConfig
from pqn_torch.algo.normalizers import RunningMeanStd
from pqn_torch.cuda_graph import forbid_host_syncs
from pqn_torch.envs import make_env
from pqn_torch.training import load_checkpoint
from pqn_torch.training.settings import ConfigError, resolve_graphs_switch

REPO = Path(__file__).resolve().parent.parent
WORLD_SIZE = 2
CONFIG = dict(
    num_envs=8,
    num_steps=4,
    num_epochs=2,
    num_minibatches=2,
    actor_hidden_sizes=[16],
    critic_hidden_sizes=[16],
    lr_start=1e-3,
    lr_end=1e-3,
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_ranks(worker, out: Path, *args) -> list:
    """Run ``worker(rank, out, *args)`` on 2 Gloo ranks; returns what each rank saved to ``out/<rank>.pt``."""
    port = free_port()
    mp.spawn(_join_and_run, args=(port, worker, out, *args), nprocs=WORLD_SIZE, join=True)
    return [torch.load(out / f"{rank}.pt") for rank in range(WORLD_SIZE)]


def _join_and_run(rank: int, port: int, worker, out: Path, *args) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD_SIZE)
    )
    torch.set_num_threads(1)
    context = distributed.init_from_env(torch.device("cpu"))
    assert (context.rank, context.world_size) == (rank, WORLD_SIZE) and distributed.active()
    try:
        torch.save(worker(rank, *args), out / f"{rank}.pt")
    finally:
        distributed.shut_down()


def make_agent(seed: int) -> PQN:
    torch.manual_seed(seed)
    return PQN(3, 4, -torch.ones(2), torch.ones(2), PQNConfig(**CONFIG), total_timesteps=10_000)


def fill_rollout(agent: PQN, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for value in agent.storage.values():
        value.copy_(
            torch.randn(value.shape, generator=generator)
            if value.is_floating_point()
            else torch.rand(value.shape, generator=generator) < 0.1
        )


# ----------------------------------------------------------------- workers (run in each rank)
def _train_on_own_worlds(rank: int) -> dict:
    """Each rank: its own seed (network init, noise) and worlds; rank 0's weights are broadcast."""
    env = make_env("CartpoleBalance", 8, device="cpu", backend="mujoco", seed=rank, num_threads=1)
    torch.manual_seed(100 + rank)
    agent = PQN.for_env(env, PQNConfig(**CONFIG), total_timesteps=10_000)
    initial = {name: value.clone() for name, value in agent.state_dict().items()}
    distributed.broadcast_module(agent)
    agent.reset(env)
    for _ in range(3):
        agent.train_iteration(env)
    return {"initial": initial, "final": agent.state_dict(), "obs": agent.storage["obs"].clone()}


def _one_minibatch_step(rank: int) -> dict:
    """Rank r holds rollout r and takes the minibatch at indices 0..minibatch_size-1 of it."""
    agent = make_agent(seed=0)
    fill_rollout(agent, seed=rank)
    agent.minibatch_step(torch.arange(agent.config.minibatch_size))
    return agent.state_dict()


def _learn_on_same_rollout(rank: int) -> dict:
    agent = make_agent(seed=0)
    fill_rollout(agent, seed=5)
    torch.manual_seed(7)  # the same shuffle on both ranks
    agent.learn()
    return agent.state_dict()


def _normalizer_streams(rank: int, streams: list[list[torch.Tensor]]) -> dict:
    statistics = RunningMeanStd((3,))
    for batch in streams[rank]:
        statistics.update(batch)
    return statistics.state_dict()


def _collectives_without_host_syncs(rank: int) -> dict:
    """The hooks inside the captured phases: gradient averaging (one flat buffer or several) and the moment merge."""
    separate = [torch.full((2, 3), float(rank)), torch.full((4,), 2.0 * rank)]
    flat = torch.full((5,), 10.0 * rank)
    with forbid_host_syncs():
        distributed.average_gradients(separate)
        distributed.average_gradients([flat])
        moments = distributed.merge_moments(2 + rank, torch.full((3,), float(rank)), torch.ones(3))
    return {"separate": separate, "flat": flat, "moments": moments}


# ----------------------------------------------------------------- tests
def test_single_process_initialises_no_process_group(monkeypatch):
    for world_size in (None, "1"):
        if world_size is None:
            monkeypatch.delenv("WORLD_SIZE", raising=False)
        else:
            monkeypatch.setenv("WORLD_SIZE", world_size)
        assert distributed.init_from_env(torch.device("cpu")) == distributed.Context()
        assert not torch.distributed.is_initialized() and not distributed.active()


def test_cuda_graphs_true_with_several_ranks_is_one_clear_error():
    assert resolve_graphs_switch("auto", torch.device("cuda"), 2) is False
    assert resolve_graphs_switch("auto", torch.device("cuda"), 1) is True
    with pytest.raises(ConfigError, match="cuda_graphs=true is not supported with 2 ranks"):
        resolve_graphs_switch(True, torch.device("cuda"), 2)


def test_collectives_are_free_of_host_syncs_and_average_exactly(tmp_path):
    first, second = run_ranks(_collectives_without_host_syncs, tmp_path)
    for result in (first, second):
        assert torch.equal(result["separate"][0], torch.full((2, 3), 0.5))
        assert torch.equal(result["separate"][1], torch.full((4,), 1.0))
        assert torch.equal(result["flat"], torch.full((5,), 5.0))
        count, mean, var = result["moments"]
        # 2 rows at 0 and 3 rows at 1, each with variance 1: mean 3/5, variance 1 + 6/25
        assert count == 5
        torch.testing.assert_close(mean, torch.full((3,), 0.6, dtype=torch.float64))
        torch.testing.assert_close(var, torch.full((3,), 1.24, dtype=torch.float64))


def test_parameters_stay_bit_identical_across_ranks(tmp_path):
    first, second = run_ranks(_train_on_own_worlds, tmp_path)
    assert not torch.equal(first["initial"]["actor.body.0.weight"], second["initial"]["actor.body.0.weight"])
    assert not torch.equal(first["obs"], second["obs"])  # the ranks really stepped different worlds
    assert not torch.equal(first["final"]["actor.body.0.weight"], first["initial"]["actor.body.0.weight"])
    for name, value in first["final"].items():
        if name != "metric_sums":  # each rank's own losses; merged at the log points
            assert torch.equal(value, second["final"][name]), name


def test_distributed_minibatch_step_equals_one_step_on_the_concatenated_rollouts(tmp_path):
    """Averaged gradients of two half-batches = the gradient of the whole batch (equal-size means)."""
    first, second = run_ranks(_one_minibatch_step, tmp_path)
    torch.manual_seed(0)  # the same initial weights as make_agent(seed=0): num_envs draws nothing at init
    reference = PQN(3, 4, -torch.ones(2), torch.ones(2), PQNConfig(**{**CONFIG, "num_envs": 16}), 10_000)
    halves = [make_agent(seed=0) for _ in range(WORLD_SIZE)]
    for rank, half in enumerate(halves):
        fill_rollout(half, seed=rank)
    reference.storage.copy_(torch.cat([half.storage for half in halves], dim=1))
    size = halves[0].config.minibatch_size
    # rollout index i of rank r is env (i % 8) + 8 r, step i // 8 in the [4, 16] reference rollout
    local = torch.arange(size)
    reference.minibatch_step(torch.cat([(local // 8) * 16 + local % 8 + 8 * r for r in range(WORLD_SIZE)]))
    moved = reference.state_dict()
    assert not torch.allclose(first["actor.body.0.weight"], make_agent(seed=0).state_dict()["actor.body.0.weight"])
    for name, value in first.items():
        assert torch.equal(value, second[name]), name
        if name not in ("metric_sums", "noise_profile"):
            torch.testing.assert_close(value, moved[name], rtol=1e-5, atol=1e-6, msg=name)


def test_distributed_update_on_the_same_rollout_equals_a_single_process_update(tmp_path):
    first, second = run_ranks(_learn_on_same_rollout, tmp_path)
    single = make_agent(seed=0)
    fill_rollout(single, seed=5)
    torch.manual_seed(7)
    single.learn()
    for name, value in single.state_dict().items():
        torch.testing.assert_close(first[name], value, rtol=1e-5, atol=1e-6, msg=name)
        assert torch.equal(first[name], second[name]), name


def test_merged_normalizer_statistics_equal_those_of_the_concatenated_streams(tmp_path):
    generator = torch.Generator().manual_seed(0)
    streams = [
        [torch.randn(rows, 3, generator=generator) * scale + shift for rows in (5, 9, 3)]
        for scale, shift in ((1.0, 0.0), (3.0, 2.0))
    ]
    first, second = run_ranks(_normalizer_streams, tmp_path, streams)
    for name in ("mean", "var", "count"):
        assert torch.equal(first[name], second[name]), name
    everything = torch.cat([batch for stream in streams for batch in stream]).to(torch.float64)
    assert first["count"] == 34 + 1e-4  # 2 x (5 + 9 + 3) rows plus the initial pseudo-count
    # the initial pseudo-count (mean 0, var 1, weight 1e-4) shifts the exact moments by ~1e-5 at most
    torch.testing.assert_close(first["mean"], everything.mean(dim=0), rtol=0, atol=1e-4)
    torch.testing.assert_close(first["var"], everything.var(dim=0, correction=0), rtol=1e-4, atol=0)
    concatenated = RunningMeanStd((3,))
    for step in range(3):
        concatenated.update(torch.cat([stream[step] for stream in streams]))
    for name, value in concatenated.state_dict().items():
        torch.testing.assert_close(first[name], value, rtol=1e-12, atol=1e-12, msg=name)


TORCHRUN_ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def torchrun_training(*overrides: str) -> list[str]:
    """The command training CartpoleBalance (alg=cpu, 8 envs x 8 steps per rank) on 2 CPU ranks, with ``overrides``."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        str(REPO / "scripts" / "train.py"),
        "task=CartpoleBalance",
        "alg=cpu",
        "alg.num_envs=8",
        "alg.num_steps=8",
        "alg.num_minibatches=2",
        "+task.overrides.episode_length=50",
        "num_threads=1",
        *overrides,
    ]


def test_torchrun_two_ranks_write_one_run(tmp_path):
    run_dir = tmp_path / "run"
    # the default checkpoint and eval intervals (0.1 of training) are less than one of its 4 updates; every
    # checkpoint kept, to see one per update
    settings = ["total_timesteps=512", "eval.num_envs=4", "log_interval=1", "keep_checkpoints=null"]
    command = torchrun_training(*settings, f"hydra.run.dir={run_dir}")
    env = TORCHRUN_ENV
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("done: 512 env steps") == 1  # rank 0 alone reports
    assert "2 ranks x 8 envs" in result.stdout and "4 updates of 128 env steps" in result.stdout
    assert result.stdout.count("checkpoint_interval: the default 0.1 of training is less than one update") == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run"]
    events = list((run_dir / "tensorboard").glob("events.*"))
    assert len(events) == 1
    accumulator = EventAccumulator(str(events[0]))
    accumulator.Reload()
    assert [event.step for event in accumulator.Scalars("loss/critic")] == [128, 256, 384, 512]
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == [
        f"step_{steps:012d}.pt" for steps in (128, 256, 384, 512)
    ]
    checkpoint = load_checkpoint(run_dir)
    assert checkpoint["world_size"] == 2 and len(checkpoint["rank_rng"]) == 2 and checkpoint["updates"] == 4
    assert not torch.equal(checkpoint["rank_rng"][0]["env"], checkpoint["rank_rng"][1]["env"])

    extended = subprocess.run(
        [*command[:-1], f"resume={run_dir}", "total_timesteps=1024", f"hydra.run.dir={tmp_path / 'extended'}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert extended.returncode == 0, extended.stderr
    assert f"resumed from {checkpoint['path']} at env step 512" in extended.stdout
    assert load_checkpoint(tmp_path / "extended")["updates"] == 8

    resumed = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "train.py"),
            f"resume={run_dir}",
            "total_timesteps=1024",
            f"hydra.run.dir={tmp_path / 'single'}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 2
    assert resumed.stderr.strip().splitlines() == [
        f"train.py: resume: {checkpoint['path']} was trained by 2 rank(s), this run has 1; resume with the same "
        "number of ranks (torchrun --nproc_per_node=...)"
    ]


def _rank_pid(launcher: subprocess.Popen, rank: int) -> int:
    """The pid of the worker that ``launcher`` (torchrun) started as ``rank`` (Linux: read from /proc)."""
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environment = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if parent == launcher.pid and f"RANK={rank}".encode() in environment:
            return int(entry.name)
    raise AssertionError(f"no rank {rank} among the children of {launcher.pid}")


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the ranks' pids in /proc")
def test_a_rank_killed_mid_run_leaves_one_line_and_a_checkpoint_that_resumes(tmp_path):
    """kill -9 on rank 1 after the first checkpoint: rank 0 saves what it has, says so in one line, exits 1."""
    run_dir = tmp_path / "run"
    settings = [
        "alg.actor_hidden_sizes=[16]",
        "alg.critic_hidden_sizes=[16]",
        "total_timesteps=5120",
        "eval.num_envs=2",
        "eval.interval=1",
        "log_interval=5",
        "checkpoint_interval=0.25",
    ]
    launcher = subprocess.Popen(
        torchrun_training(*settings, f"hydra.run.dir={run_dir}"),
        cwd=tmp_path,
        env=TORCHRUN_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = run_dir / "checkpoints" / "step_000000001280.pt"  # update 10 of 40
    deadline = time.monotonic() + 300
    while not first.exists() and launcher.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # a few updates past the checkpoint, so that rank 0 has something new to save
    os.kill(_rank_pid(launcher, 1), signal.SIGKILL)
    _, stderr = launcher.communicate(timeout=300)
    assert launcher.returncode != 0
    ours = [line for line in stderr.splitlines() if line.startswith(("train.py", "[rank0]"))]
    assert len(ours) == 1, stderr
    assert ours[0].startswith("train.py: rank 0 of 2: another rank stopped ("), ours[0]
    assert "by peer" in ours[0] and "during update" in ours[0]  # Gloo: connection closed / reset by peer
    saved = sorted(path.name for path in (run_dir / "checkpoints").iterdir())
    assert saved[0] == first.name and len(saved) <= 2, saved  # the periodic one, then what rank 0 had (if newer)
    latest = run_dir / "checkpoints" / saved[-1]
    news = "saved what this rank had" if len(saved) == 2 else "nothing new to save"
    assert ours[0].endswith(
        f"{news}: the latest checkpoint is {latest}; to continue: torchrun <2 ranks, as now> "
        f"scripts/train.py resume={run_dir}"
    )
    checkpoint = load_checkpoint(run_dir)
    assert checkpoint["world_size"] == 2 and (checkpoint["rank_rng"][1] is None) == (len(saved) == 2)

    resumed = subprocess.run(
        torchrun_training(*settings, f"resume={run_dir}", f"hydra.run.dir={tmp_path / 'resumed'}"),
        cwd=tmp_path,
        env=TORCHRUN_ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {latest} at env step {checkpoint['env_steps']:,}" in resumed.stdout
    assert load_checkpoint(tmp_path / "resumed")["updates"] == 40

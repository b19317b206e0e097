"""Helpers shared by the task test modules: a small native-backend env and reproducible random actions."""

import contextlib
import math
import struct

import torch
from tensordict import TensorDict

from pqn_torch.cuda_graph import forbid_host_syncs
from pqn_torch.envs import BatchedEnv, make_env
from pqn_torch.envs.tasks.base import TaskState


def make_task_env(name: str, num_envs: int = 8, backend: str = "mujoco", **kwargs) -> BatchedEnv:
    """``num_envs`` worlds of task ``name`` on the CPU with a small start-state pool (fast to build)."""
    options = {"device": "cpu", "reset_pool_size": 16, "num_threads": 2}
    options.update(kwargs)
    return make_env(name, num_envs, backend=backend, **options)


def random_actions(env: BatchedEnv, steps: int, seed: int = 0) -> list[torch.Tensor]:
    """``steps`` batches of uniform actions in [-1, 1] from a seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(env.num_envs, env.action_dim, generator=generator) * 2 - 1 for _ in range(steps)]


def seeded_run(name: str, shortcuts: bool, num_envs: int, state_keys: tuple[str, ...], steps: int = 10) -> TensorDict:
    """``steps`` seeded random steps of task ``name`` in 4-step episodes, with or without host shortcuts (without:
    under ``forbid_host_syncs``), stacked, with the task state entries ``state_keys`` after each step."""
    env = make_task_env(name, num_envs=num_envs, episode_length=4, seed=5)
    env.host_shortcuts = shortcuts
    env.reset()
    results = []
    with forbid_host_syncs() if not shortcuts else contextlib.nullcontext():
        for action in random_actions(env, steps):
            results.append(env.step(action))
            for key in state_keys:
                results[-1][key] = env.task_state[key].clone()
    return torch.stack(results)


def check_truncation_at_episode_length(name: str) -> None:
    """With 3-step episodes, random actions truncate every world exactly at step 3, then restart it."""
    env = make_task_env(name, num_envs=2, episode_length=3)
    env.reset()
    for step, action in enumerate(random_actions(env, 4), start=1):
        td = env.step(action)
        assert td["truncated"].all() == (step == 3) and not td["terminated"].any()
        assert td["done"].any() == (step == 3)
    assert td["episode_length"].tolist() == [1, 1]


def check_spaces_and_random_rollout(
    env: BatchedEnv, obs_dim: int, action_dim: int, ctrl_dt: float, substeps: int, steps: int = 25
) -> None:
    """Dims, timing, action range; ``steps`` random steps: finite float32 obs, rewards in [0, 1], no episode end."""
    assert (env.obs_dim, env.critic_obs_dim, env.action_dim) == (obs_dim, obs_dim, action_dim)
    assert abs(env.ctrl_dt - ctrl_dt) < 1e-12 and env.task.substeps == substeps
    assert env.episode_length == 1000
    torch.testing.assert_close(env.action_low, -torch.ones(action_dim))
    torch.testing.assert_close(env.action_high, torch.ones(action_dim))
    td = env.reset()
    assert td["obs"].shape == (env.num_envs, obs_dim) and td["obs"].dtype == torch.float32
    rewards = []
    for action in random_actions(env, steps):
        td = env.step(action)
        assert td["obs"].dtype == torch.float32 and td["reward"].dtype == torch.float32
        assert torch.isfinite(td["obs"]).all() and torch.isfinite(td["critic_obs"]).all()
        assert not td["done"].any()
        rewards.append(td["reward"])
    rewards = torch.stack(rewards)
    assert ((rewards >= 0) & (rewards <= 1)).all()
    assert all(int(count) == 0 for key, count in env.stats.items() if key.startswith("nonfinite"))


def converge_solver(monkeypatch, task_class: type, iterations: int) -> None:
    """Make ``task_class`` build its model with ``iterations`` solver and line-search iterations: with a converged
    solve MuJoCo Warp and native MuJoCo agree to float32 precision (with Playground's few iterations the two
    solvers stop at different points)."""
    build_spec = task_class.build_spec

    def converged(task):
        spec = build_spec(task)
        spec.option.iterations = spec.option.ls_iterations = iterations
        return spec

    monkeypatch.setattr(task_class, "build_spec", converged)


def check_humanoid_warp_matches_native(
    name: str, qpos: torch.Tensor, qvel: torch.Tensor, command_clock: str = "step"
) -> None:
    """One step of a humanoid joystick task on MuJoCo Warp (float32, CPU) and native MuJoCo (float64) from the same
    state (two worlds, ``qpos``/``qvel`` [2, ...]), ctrl and task state, world 0 pushed in the step: rewards,
    critic observations and task state (the command's clock: ``command_clock``) agree."""
    options = {"num_envs": 2, "obs_noise_level": 0.0, "seed": 3}
    native = make_task_env(name, **options)
    warp = make_task_env(name, backend="warp", **options)
    state = {
        "command": torch.tensor([[0.5, 0.0, 0.2]], dtype=torch.float64).repeat(2, 1),
        "phase_dt": torch.full((2,), 0.17, dtype=torch.float64),
        "push_interval_steps": torch.tensor([1, 2]),  # world 0 is pushed in this step
    }
    for env in (native, warp):
        env.reset_to(qpos, qvel, task_state=state)
    action = (torch.rand(2, native.action_dim, generator=torch.Generator().manual_seed(0)) * 2 - 1) * 0.5
    after = [env.step(action) for env in (native, warp)]
    reward_gap = (after[1]["reward"] - after[0]["reward"]).abs().max().item()
    relative = (after[1]["critic_obs"] - after[0]["critic_obs"]).abs() / (1 + after[0]["critic_obs"].abs())
    assert reward_gap < 1e-4 and relative.max() < 1e-3, (reward_gap, relative.max())
    assert (native.task_state["push"][0] != 0).all() and (native.task_state["push"][1] == 0).all()
    for key in ("phase", command_clock, "command", "last_act", "last_contact", "feet_air_time", "push"):
        torch.testing.assert_close(warp.task_state[key].double(), native.task_state[key].double())


def check_humanoid_step_makes_no_host_sync(name: str, home_state, command_clock: TaskState | None = None) -> None:
    """A humanoid joystick step under ``forbid_host_syncs`` across a push, a command change and an episode end
    (4-step episodes, 6 steps from ``home_state(env)``; ``command_clock``: task state that makes world 0's
    command change in the first step, by default the template's ``step`` at 499)."""
    env = make_task_env(name, num_envs=2, episode_length=4)
    env.host_shortcuts = False
    qpos, qvel = home_state(env)
    clock = command_clock if command_clock is not None else {"step": torch.tensor([499, 0])}
    env.reset_to(qpos, qvel, task_state={"push_interval_steps": torch.tensor([2, 3]), **clock})
    with forbid_host_syncs():
        for action in random_actions(env, 6):
            env.step(action)
    assert int(env.stats["episodes"]) == 2


def check_gait_clock_holds_the_feet_down_at_a_zero_command(env: BatchedEnv, home_state) -> None:
    """One step of 4 worlds from ``home_state(env)`` at phase (3.0, -1.0), phase_dt 0.1: the worlds whose
    command is zero or tiny (|command| <= 0.01) hold both feet at pi, the others move on (wrapped)."""
    qpos, qvel = home_state(env)
    command = double([[0.0, 0.0, 0.0], [0.005, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 0.3]])
    phase = double([[3.0, -1.0]]).repeat(4, 1)
    env.reset_to(qpos, qvel, task_state={"command": command, "phase": phase, "phase_dt": double([0.1] * 4)})
    env.step(torch.zeros(4, env.action_dim))
    expected = double([[math.pi, math.pi], [math.pi, math.pi], [3.1, -0.9], [3.1, -0.9]])
    torch.testing.assert_close(env.task_state["phase"], expected)


def reset_humanoid_at_known_state(env: BatchedEnv, home_state) -> TensorDict:
    """Reset 4 humanoid worlds to ``home_state`` with the left knee bent 0.2 rad, the root moving forward at
    0.4 m/s, the left ankle pitching at -1.5 rad/s, command (0.5, -0.2, 0.3), gait phase (0.3, -2.0) and feet
    air time (0.1, 0.0): a state whose observation layout the humanoid tests check entry by entry."""
    qpos, qvel = home_state(env)
    qpos[:, 7 + 3] += 0.2  # left knee
    qvel[:, 0], qvel[:, 6 + 4] = 0.4, -1.5  # forward root speed, left ankle pitch speed
    command = double([[0.5, -0.2, 0.3]]).repeat(4, 1)
    phase = double([[0.3, -2.0]]).repeat(4, 1)
    air_time = double([[0.1, 0.0]]).repeat(4, 1)
    return env.reset_to(qpos, qvel, task_state={"command": command, "phase": phase, "feet_air_time": air_time})


def standing_state(env: BatchedEnv, joints: list[float], height: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Every world of a free-floating robot at ``joints``, level at ``height``, at rest: ``qpos``, ``qvel``."""
    qpos = torch.zeros_like(env.physics.qpos)
    qpos[:, 2], qpos[:, 3] = height, 1.0
    qpos[:, 7:] = torch.tensor(joints, dtype=qpos.dtype)
    return qpos, torch.zeros_like(env.physics.qvel)


def double(values) -> torch.Tensor:
    """``values`` as a float64 tensor (the native physics dtype)."""
    return torch.as_tensor(values, dtype=torch.float64)


def check_warp_follows_native(name: str, qpos: torch.Tensor, qvel: torch.Tensor, state: dict, steps: int) -> None:
    """``steps`` steps of task ``name`` (two worlds, no noise) on MuJoCo Warp (float32, CPU) and native MuJoCo
    (float64), both restarted from the native state, ctrl and task state and their generators reseeded alike
    before every step (from ``qpos``, ``qvel``, ``state`` at first): rewards, observations and every task-state
    entry agree."""
    options = {"num_envs": 2, "obs_noise_level": 0.0, "seed": 3}
    native = make_task_env(name, **options)
    warp = make_task_env(name, backend="warp", **options)
    native.reset_to(qpos, qvel, task_state=state)
    generator = torch.Generator().manual_seed(0)
    for step in range(steps):
        state = {key: value.clone() for key, value in native.task_state.items()}
        qpos, qvel, ctrl = (native.physics.qpos.clone(), native.physics.qvel.clone(), native.physics.ctrl.clone())
        for env in (native, warp):
            env.reset_to(qpos, qvel, ctrl, task_state=state)
            env.generator.manual_seed(step)
        action = (torch.rand(2, native.action_dim, generator=generator) * 2 - 1) * 0.5
        after = [env.step(action) for env in (native, warp)]
        reward_gap = (after[1]["reward"] - after[0]["reward"]).abs().max().item()
        obs_gap = (after[1]["obs"] - after[0]["obs"]).abs().max().item()
        assert reward_gap < 1e-4 and obs_gap < 1e-3, (reward_gap, obs_gap)
        for key, value in native.task_state.items():
            torch.testing.assert_close(warp.task_state[key].double(), value.double(), atol=1e-4, rtol=1e-4)


def check_step_and_reset_make_no_host_sync(name: str, home_state, task_state: dict) -> None:
    """Two worlds of task ``name`` (4-step episodes, no host shortcuts) from ``home_state(env)`` with ``task_state``:
    six steps across an episode end, then a full reset, under ``forbid_host_syncs``."""
    env = make_task_env(name, num_envs=2, episode_length=4)
    env.host_shortcuts = False
    env.reset_to(*home_state(env), task_state=task_state)
    with forbid_host_syncs():
        for action in random_actions(env, 6):
            env.step(action)
        env.reset()
    assert int(env.stats["episodes"]) == 2


def check_home_reset_with_an_empty_history(name: str, home_state, frame_size: int) -> None:
    """Task ``name`` starts every episode at ``home_state`` exactly with ``ctrl`` 0 (Playground's
    ``make_data(qpos=home)``); its first observation is one frame of ``frame_size`` followed by zeros, the
    task state's ``obs_history``."""
    env = make_task_env(name, num_envs=4)
    start = env.task.sample_start(torch.Generator().manual_seed(0), 100, env.physics)
    qpos, _ = home_state(env)
    assert (start.qpos == qpos[0]).all() and (start.qvel == 0).all()
    td = env.reset()
    assert (env.physics.ctrl == 0).all()
    assert (td["obs"][:, frame_size:] == 0).all() and (td["obs"][:, :frame_size] != 0).any()
    assert torch.equal(env.task_state["obs_history"].float(), td["obs"])


def tetrahedron_stl(size: float = 0.01) -> bytes:
    """A tiny binary STL (4 triangles, edges ``size`` along the axes), enough for MuJoCo to load a mesh file."""
    corners = [(0, 0, 0), (size, 0, 0), (0, size, 0), (0, 0, size)]
    faces = [(0, 2, 1), (0, 1, 3), (0, 3, 2), (1, 2, 3)]
    data = bytearray(80) + struct.pack("<I", len(faces))
    for face in faces:
        data += struct.pack("<3f", 0, 0, 0)
        for index in face:
            data += struct.pack("<3f", *corners[index])
        data += struct.pack("<H", 0)
    return bytes(data)

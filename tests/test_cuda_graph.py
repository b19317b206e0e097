"""What CUDA-graph capture of the training loop relies on, checked on the CPU; the capture itself on CUDA.

A captured graph replays fixed kernels on fixed addresses and cannot contain a host sync. On the CPU
we check the two conditions the capture needs: every env step and both agent phases run without a
single host-syncing op (:func:`forbid_host_syncs`), and they never rebind the tensors they read and
write. Fakes check the safety net: a phase whose capture or compilation fails trains on eagerly.
The CUDA tests (skipped without a GPU) compare replayed graphs against eager runs.
"""

import logging

import pytest
import torch
from torch.utils._python_dispatch import _disable_current_modes

from pqn_torch import cuda_graph
from pqn_torch.algo import (
    PQN,
    Actor,
    CriticEnsemble,
    PQNConfig,
    cpu_fast_path,
    cpu_gradients,
    flat_params,
    pqn as pqn_module,
)
from pqn_torch.algo.flat_params import flatten_parameters
from pqn_torch.cuda_graph import WARMUP_CALLS, CapturedCall, HostSyncError, describe_error, forbid_host_syncs
from pqn_torch.envs import list_tasks, make_env

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_host_sync_detector_flags_exactly_the_syncing_ops():
    x = torch.randn(6)
    mask = x > 0
    index = torch.tensor([0, 2])
    with forbid_host_syncs():
        torch.where(mask, x, 0.0).sum()  # pure tensor ops pass
        x[index].clamp(-1, 1)
        torch.rand(6).argsort()
        syncing = {
            "bool": lambda: bool(mask.any()),
            "item": lambda: x.sum().item(),
            "float": lambda: float(x[0]),
            "boolean mask": lambda: x[mask],
            "nonzero": lambda: mask.nonzero(),
            "tolist": lambda: x.tolist(),
            "equal": lambda: torch.equal(x, x),
            "host data": lambda: x + torch.tensor([1.0]),
        }
        for operation in syncing.values():
            with pytest.raises(HostSyncError):
                operation()
    assert x.tolist() == [float(v) for v in x]  # restored outside the block


@pytest.mark.parametrize("task", list_tasks())
def test_env_step_without_host_shortcuts_makes_no_host_sync(task):
    """The CUDA code path of every task's step (masked non-finite handling and autoreset) is capturable."""
    env = make_env(task, 2, device="cpu", backend="mujoco", seed=0, reset_pool_size=2, num_threads=1, episode_length=2)
    env.host_shortcuts = False
    env.reset()
    actions = torch.zeros(2, env.action_dim)
    actions[1, 0] = float("nan")
    with forbid_host_syncs():
        for _ in range(3):  # crosses an episode end: the autoreset is inside the checked region
            result = env.step(actions)
    assert int(env.stats["episodes"]) == 2 and int(env.stats["nonfinite_actions"]) == 3
    assert torch.isfinite(result["obs"]).all()


def test_env_results_do_not_depend_on_host_shortcuts():
    """Without resets the masked path must give bit-identical results to the CPU's shortcut path."""

    def run(shortcuts):
        env = make_env("CheetahRun", 3, device="cpu", backend="mujoco", seed=4, reset_pool_size=3, num_threads=1)
        env.host_shortcuts = shortcuts
        env.reset()
        generator = torch.Generator().manual_seed(1)
        results = []
        for step in range(4):
            action = torch.rand(3, env.action_dim, generator=generator) * 2 - 1
            if step == 2:
                action[0, 1] = float("inf")
            results.append(env.step(action))
        return torch.stack(results)

    fast, masked = run(True), run(False)
    for key in ("obs", "reward", "terminated", "truncated", "final_obs"):
        assert torch.equal(fast[key], masked[key]), key


def agent_tensors(agent, env):
    """Every tensor a captured phase reads or writes, by name (gradients are recreated inside the graph)."""
    tensors = {f"module.{name}": value for name, value in agent.state_dict(keep_vars=True).items()}
    for label, optimizer in (("actor", agent.actor_optimizer), ("critic", agent.critic_optimizer)):
        for index, state in enumerate(optimizer.state.values()):
            tensors.update({f"{label}_optimizer.{index}.{key}": value for key, value in state.items()})
        tensors[f"{label}_optimizer.lr"] = optimizer.param_groups[0]["lr"]
    tensors.update({f"storage.{key}": value for key, value in agent.storage.items()})
    tensors.update(obs=agent._obs, critic_obs=agent._critic_obs, sigma=agent._sigma)
    for name in ("qpos", "qvel", "act", "ctrl", "mocap_pos", "mocap_quat", "sensordata", "time"):
        tensors[f"physics.{name}"] = getattr(env.physics, name)
    tensors.update({f"env.stats.{key}": value for key, value in env.stats.items()})
    tensors.update(episode_step=env._episode_step, episode_return=env._episode_return)
    return tensors


@pytest.mark.parametrize("task", ["CartpoleBalance", "Go1JoystickFlatTerrain"])
def test_training_is_the_same_with_and_without_host_shortcuts(task):
    """A seeded run through resets, truncations and updates gives identical rollouts and weights either way:
    both paths draw the same random numbers (pool indices, task state, observation and exploration noise)."""

    def train(shortcuts):
        env = make_env(
            task,
            4,
            device="cpu",
            backend="mujoco",
            seed=3,
            reset_pool_size=8,
            num_threads=1,
            host_shortcuts=shortcuts,
            episode_length=5,
        )
        config = PQNConfig(
            num_envs=4,
            num_steps=4,
            num_epochs=1,
            num_minibatches=2,
            actor_hidden_sizes=(16,),
            critic_hidden_sizes=(16,),
            bootstrap_truncation=True,
            stagger_episodes=True,
        )
        torch.manual_seed(0)
        agent = PQN.for_env(env, config, total_timesteps=4 * 4 * 3, split_update=False)
        agent.reset(env)
        rollouts = []
        for _ in range(3):
            rollouts.append(agent.collect(env).clone())
            agent.learn()
        return torch.stack(rollouts), [p.detach().clone() for p in agent.parameters()], env.stats

    (fast, fast_weights, fast_stats), (masked, masked_weights, masked_stats) = train(True), train(False)
    assert int(fast_stats["episodes"]) >= 4 and fast["truncated"].any() and not fast["truncated"].all()
    for key in fast.keys():
        assert torch.equal(fast[key], masked[key]), key
    assert all(torch.equal(a, b) for a, b in zip(fast_weights, masked_weights, strict=True))
    assert {k: int(v) for k, v in fast_stats.items()} == {k: int(v) for k, v in masked_stats.items()}


@pytest.mark.parametrize("cpu_code_path", [False, True])
def test_agent_phases_make_no_host_sync_and_keep_every_tensor_in_place(monkeypatch, cpu_code_path):
    """Rollout and update are capturable: no host sync, and no tensor they use is ever rebound.

    Checked for the CUDA code path (autograd, clipping, RAdam's step) and for the CPU one (the hand-written
    backward pass and the fused clip-and-step); the optimizer steps are exempt (see below).
    """
    env = make_env(
        "CartpoleBalance", 4, device="cpu", backend="mujoco", seed=0, reset_pool_size=8, num_threads=1, episode_length=3
    )
    config = PQNConfig(
        num_envs=4,
        num_steps=5,
        num_epochs=2,
        num_minibatches=2,
        actor_hidden_sizes=(16,),
        critic_hidden_sizes=(16,),
        normalize_reward=True,
        bootstrap_truncation=True,
    )
    # the CUDA code path: no host shortcuts, one thread (the check sees this thread's ops only)
    agent = PQN.for_env(env, config, total_timesteps=200, split_update=False)
    agent._cpu_fast_path = cpu_code_path  # the device picks the path; here both run on the CPU
    env.host_shortcuts = False  # the env owns the switch; the agent's rollout follows it
    for optimizer in (agent.actor_optimizer, agent.critic_optimizer):
        # RAdam's capturable=True (what the agent uses on CUDA) is CUDA-only; its CPU path reads the step
        # count with .item(). Torch vouches for the capturable path, so the optimizer step is exempt here; the
        # CPU path's clip_and_step reads the norm and the step on the host by design and is never captured.
        for method in ("step", "clip_and_step"):
            eager_step = getattr(optimizer, method)

            def step_outside_the_check(*args, eager_step=eager_step):
                with _disable_current_modes():
                    return eager_step(*args)

            monkeypatch.setattr(optimizer, method, step_outside_the_check)
    agent.reset(env)
    agent.train_iteration(env)  # a warm-up creates the optimizer state, as before a capture
    before = {name: (tensor.data_ptr(), tuple(tensor.shape)) for name, tensor in agent_tensors(agent, env).items()}
    weights = [p.detach().clone() for p in agent.parameters()]
    rewards = agent.storage["reward"].clone()

    with forbid_host_syncs():
        agent.collect(env)
        agent.learn()
    after = {name: (tensor.data_ptr(), tuple(tensor.shape)) for name, tensor in agent_tensors(agent, env).items()}
    assert after == before
    assert not torch.equal(agent.storage["reward"], rewards)  # it really rolled out and learned
    assert all(not torch.equal(p, w) for p, w in zip(agent.parameters(), weights, strict=True))
    assert int(agent.updates_done) == agent.updates_issued == 2 and int(env.stats["episodes"]) > 0


def test_captured_call_runs_eagerly_off_cuda_and_refuses_cuda_graphs_there():
    calls = []
    call = CapturedCall(lambda: calls.append(1), torch.device("cpu"), enabled=False)
    for _ in range(4):
        call()
    assert len(calls) == 4 and not call.captured
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        CapturedCall(lambda: None, torch.device("cpu"), enabled=True)
    with pytest.raises(ValueError, match="cuda_graphs=true needs a CUDA device"):
        PQN(
            3,
            3,
            -torch.ones(1),
            torch.ones(1),
            PQNConfig(num_envs=2, num_steps=2, num_minibatches=1),
            4,
            cuda_graphs=True,
        )


# ----------------------------------------------------------------------------- the safety net, with fakes
class CaptureFailsHere(CapturedCall):
    """A CapturedCall as on a GPU where capturing fails: warm-ups run (eagerly here), then the capture raises."""

    captures = 0

    def __init__(self, fn, device, enabled, warmup_calls=WARMUP_CALLS, generators=(), phase="captured"):
        super().__init__(fn, device, False, warmup_calls, generators, phase)
        self.enabled = True  # as on CUDA; the CPU cannot capture, so the two methods below stand in

    def _run_on_side_stream(self):
        self.fn()

    def _capture(self):
        CaptureFailsHere.captures += 1
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing\nCUDA kernel errors ...")


def small_agent(compile=False):
    env = make_env(
        "CartpoleBalance", 4, device="cpu", backend="mujoco", seed=0, reset_pool_size=8, num_threads=1, episode_length=6
    )
    config = PQNConfig(
        num_envs=4, num_steps=4, num_epochs=2, num_minibatches=2, actor_hidden_sizes=(16,), critic_hidden_sizes=(16,)
    )
    torch.manual_seed(0)
    agent = PQN.for_env(env, config, total_timesteps=4 * 4 * 10, compile=compile)
    agent.reset(env)
    for _ in range(5):  # two warm-ups, the capture, two more calls
        agent.train_iteration(env)
    return agent


def assert_same_training(agent, reference):
    for (name, value), expected in zip(agent.state_dict().items(), reference.state_dict().values(), strict=True):
        assert torch.equal(value, expected), name
    for key in ("obs", "action", "reward", "target"):
        assert torch.equal(agent.storage[key], reference.storage[key]), key


def fallback_warnings(caplog):
    return [record.getMessage() for record in caplog.records if record.name == "pqn_torch"]


def test_a_failed_capture_runs_that_phase_eagerly_with_one_warning(monkeypatch, caplog):
    eager = small_agent()
    monkeypatch.setattr(pqn_module, "CapturedCall", CaptureFailsHere)
    CaptureFailsHere.captures = 0
    with caplog.at_level(logging.WARNING, logger="pqn_torch"):
        fallen_back = small_agent()
    assert_same_training(fallen_back, eager)  # the failed capture's iteration and every later one ran eagerly
    error = "RuntimeError: CUDA error: operation not permitted when stream is capturing"
    assert fallback_warnings(caplog) == [
        f"pqn-torch: CUDA graph capture of the {phase} phase failed ({error}); "
        f"the {phase} phase runs eagerly from now on"
        for phase in ("rollout", "update")
    ]
    assert CaptureFailsHere.captures == 2  # one try per phase, not one per call
    assert fallen_back.fallbacks == {"rollout graph": error, "update graph": error}
    assert eager.fallbacks == {}


def test_a_failed_compile_runs_that_phase_uncompiled_with_one_warning(monkeypatch, caplog):
    eager = small_agent()

    def compile_that_fails(fn, **options):
        def compiled(*args, **kwargs):
            raise RuntimeError("backend='inductor' raised:\nInvalidCxxCompiler: No working C++ compiler found")

        return compiled

    monkeypatch.setattr(cuda_graph.torch, "compile", compile_that_fails)
    with caplog.at_level(logging.WARNING, logger="pqn_torch"):
        fallen_back = small_agent(compile=True)
    assert_same_training(fallen_back, eager)
    error = "RuntimeError: backend='inductor' raised:"
    assert fallback_warnings(caplog) == [
        f"pqn-torch: torch.compile of the {phase} phase failed ({error}); the {phase} phase runs uncompiled from now on"
        for phase in ("rollout", "update")
    ]
    assert fallen_back.fallbacks == {"rollout compile": error, "update compile": error}


@pytest.mark.slow
def test_the_compiled_cpu_update_computes_the_eager_gradients():
    """compile=true on the CPU compiles the hand-written gradients, oneDNN's matmul inside as a custom op;
    inductor fuses with other roundings, so the gradients agree closely, not bit for bit."""
    agent = small_agent(compile=True)
    assert agent.fallbacks == {}  # really compiled, nothing fell back
    torch.manual_seed(1)
    actor = Actor(5, -torch.ones(2), torch.ones(2), hidden_sizes=(64, 64))
    critic = CriticEnsemble(5, 2, hidden_sizes=(64, 64), num_critics=2)
    flats = [flatten_parameters(actor).detach(), flatten_parameters(critic).detach()]
    layouts = (flat_params.layout(actor), flat_params.layout(critic))
    batch = cpu_gradients.Batch(
        torch.randn(64, 5), torch.randn(64, 5), torch.rand(64, 2) * 2 - 1, torch.rand(64, 2) * 2 - 1, torch.randn(64)
    )
    compiled = torch.compile(cpu_gradients.flat_minibatch_gradients, dynamic=False)
    parameters = cpu_gradients.network_views(actor, critic, *flats, layouts)
    with cpu_fast_path.enabled():
        expected = cpu_gradients.minibatch_gradients(actor, critic, parameters, batch, 0.15, 10.0)
        got = compiled(actor, critic, *flats, layouts, batch, 0.15, 10.0)
    gradient_pairs = zip(got[1], expected[1], strict=True)
    for value, reference in gradient_pairs:
        torch.testing.assert_close(value, reference, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(got[0], expected[0], rtol=1e-4, atol=1e-6)


def test_error_descriptions_fit_one_line():
    assert describe_error(ValueError("first\nsecond")) == "ValueError: first"
    assert describe_error(KeyError()) == "KeyError"
    long = describe_error(RuntimeError("x" * 1000))
    assert len(long) == 300 and long.endswith("...") and "\n" not in long


# ----------------------------------------------------------------------------- on a CUDA GPU
def cuda_agent(cuda_graphs):
    """Noise-free PQN on CheetahRun (MuJoCo Warp, CUDA): rollouts are deterministic between resets."""
    env = make_env("CheetahRun", 64, device="cuda", backend="warp", seed=0, reset_pool_size=64)
    config = PQNConfig(
        num_envs=64,
        num_steps=8,
        num_epochs=1,
        num_minibatches=1,
        noise_start=0.0,
        noise_finish=0.0,
        actor_hidden_sizes=(64,),
        critic_hidden_sizes=(64,),
    )
    torch.manual_seed(0)
    agent = PQN.for_env(env, config, total_timesteps=64 * 8 * 10, cuda_graphs=cuda_graphs)
    agent.reset(env)
    return agent, env


@needs_cuda
@pytest.mark.warp
def test_captured_training_matches_eager_training_on_cuda():
    """Four iterations (two warm-ups, the capture, one replay) equal four eager ones: same physics, targets, weights.

    With one full-batch minibatch the shuffle changes only the summation order, hence the tolerance.
    """
    (graphed, graphed_env), (eager, eager_env) = cuda_agent(True), cuda_agent(False)
    for _ in range(4):
        graphed.train_iteration(graphed_env)
        eager.train_iteration(eager_env)
    assert graphed.captured == {"rollout": True, "update": True}
    torch.testing.assert_close(graphed_env.physics.qpos, eager_env.physics.qpos, rtol=1e-3, atol=1e-4)
    for key in ("obs", "reward", "value", "target"):
        torch.testing.assert_close(graphed.storage[key], eager.storage[key], rtol=1e-3, atol=1e-4)
    for graphed_param, eager_param in zip(graphed.parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(graphed_param, eager_param, rtol=1e-3, atol=1e-5)
    assert int(graphed.updates_done) == 4 and graphed.pop_metrics()["episodes"] == 0


@needs_cuda
@pytest.mark.warp
def test_replayed_env_step_follows_the_eager_trajectory_on_cuda():
    def rollout(cuda_graphs):
        env = make_env("CheetahRun", 32, device="cuda", backend="warp", seed=0, reset_pool_size=32)
        env.reset(seed=0)
        action = torch.zeros(32, env.action_dim, device="cuda")
        step = CapturedCall(lambda: env.step(action), env.device, cuda_graphs, generators=(env.generator,))
        for index in range(6):
            action.fill_(0.1 * (index % 3) - 0.1)
            step()
        return env.physics.qpos.clone()

    torch.testing.assert_close(rollout(True), rollout(False), rtol=1e-4, atol=1e-5)

"""The deployable policy: built from a checkpoint alone, it acts exactly as the training agent; its ONNX export."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pqn_torch.algo import PQN, CriticEnsemble, PQNConfig
from pqn_torch.envs import BatchedEnv, list_tasks, make_env
from pqn_torch.envs.tasks import get_task_class
from pqn_torch.export import export_policy
from pqn_torch.policy import Policy
from pqn_torch.training import load_checkpoint, settings_from_config
from pqn_torch.training.playback import evaluate_checkpoint

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def training_agent(checkpoint):
    """The checkpoint's full training agent, rebuilt the way a resumed run does (the independent path)."""
    settings = settings_from_config(checkpoint["config"])
    env = make_env(
        settings.task, 8, "cpu", "mujoco", seed=3, reset_pool_size=8, num_threads=1, **settings.task_overrides
    )
    agent = PQN(
        env.obs_dim, env.critic_obs_dim, env.action_low, env.action_high, settings.alg, settings.total_timesteps
    )
    agent.load_checkpoint_state(checkpoint["agent"])
    return agent, env


def test_policy_from_checkpoint_acts_exactly_as_the_training_agent(trained_run):
    checkpoint = load_checkpoint(trained_run)
    agent, env = training_agent(checkpoint)
    rng_state = torch.get_rng_state()
    policy = Policy.from_checkpoint(trained_run)
    assert torch.equal(torch.get_rng_state(), rng_state)  # building it draws no random numbers of the caller's
    assert (policy.task, policy.obs_dim, policy.action_dim, policy.ctrl_dt) == ("CheetahRun", 17, 6, 0.01)
    assert policy.env_steps == 512 and policy.checkpoint == checkpoint["path"]
    assert policy.task_overrides == {"episode_length": 50}

    observations = [env.reset()["obs"]]
    for _ in range(20):
        observations.append(env.step(agent.act(observations[-1]))["obs"])
    obs = torch.cat([*observations, 5 * torch.randn(64, 17)])
    assert torch.equal(policy(obs), agent.act(obs))
    assert torch.equal(policy(obs[0]), agent.act(obs[:1])[0])  # a single observation, no batch dimension
    as_numpy = policy(obs.double().numpy())
    assert isinstance(as_numpy, np.ndarray) and np.array_equal(as_numpy, agent.act(obs).numpy())
    assert not any(parameter.requires_grad for parameter in policy.parameters())


def test_loading_a_policy_builds_no_env_and_no_training_agent(trained_run, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("Policy.from_checkpoint built an env or the training agent")

    monkeypatch.setattr(BatchedEnv, "__init__", refuse)
    monkeypatch.setattr(PQN, "__init__", refuse)
    monkeypatch.setattr(CriticEnsemble, "__init__", refuse)
    policy = Policy.from_checkpoint(trained_run)
    assert policy(torch.zeros(2, 17)).shape == (2, 6)
    assert not any(name.startswith("critic") for name in policy.state_dict())


def test_policy_maps_into_an_asymmetric_action_range():
    low, high = torch.tensor([-2.0, 0.0]), torch.tensor([3.0, 1.0])
    config = PQNConfig(num_envs=4, num_steps=2, num_minibatches=1, actor_hidden_sizes=(8, 8), critic_hidden_sizes=(8,))
    agent = PQN(4, 4, low, high, config, total_timesteps=8)
    agent.obs_normalizer.update(torch.randn(32, 4) * 3 + 1)
    policy = Policy.from_agent_state(agent.state_dict(), "PointMass")
    obs = torch.cat([torch.randn(256, 4), torch.full((1, 4), 1e6), torch.full((1, 4), -1e6)])
    actions = policy(obs)
    assert torch.equal(actions, agent.act(obs))
    assert (actions >= low).all() and (actions <= high).all()
    assert torch.equal(policy.action_low, low) and torch.equal(policy.action_high, high)

    last = agent.actor.body[-1]  # output layer: pre-tanh values (+20, -20) whatever the observation
    torch.nn.init.zeros_(last.weight)
    last.bias.data = torch.tensor([20.0, -20.0])
    saturated = Policy.from_agent_state(agent.state_dict(), "PointMass")(obs)
    assert torch.equal(saturated, torch.tensor([[3.0, 0.0]]).expand(len(obs), 2))  # high of one, low of the other


def test_policy_rejects_a_wrong_observation_size(trained_run):
    message = r"CheetahRun policy: observations must have shape \[\.\.\., 17\], got \[3, 5\]"
    with pytest.raises(ValueError, match=message):
        Policy.from_checkpoint(trained_run)(torch.zeros(3, 5))


def test_documented_observation_layouts_add_up_to_the_observation():
    documented = [name for name in list_tasks() if get_task_class(name).observation_layout]
    assert "CheetahRun" in documented and "CartpoleBalance" in documented
    for name in documented:
        env = make_env(name, 1, "cpu", "mujoco", reset_pool_size=1, num_threads=1)
        layout = get_task_class(name).observation_layout
        assert sum(size for _, size in layout) == env.obs_dim, name
        assert all(size > 0 and part for part, size in layout), name


# ----------------------------------------------------------------------------- ONNX export
def export(*args):
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "export.py"), *args],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_export_writes_onnx_that_onnxruntime_runs_like_the_torch_policy(trained_run, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime", reason="needs the 'export' extra")
    output = tmp_path / "deploy" / "cheetah.onnx"
    result = export(f"checkpoint={trained_run}", f"output={output}")
    assert result.returncode == 0, result.stderr
    assert "max abs difference" in result.stdout and str(output) in result.stdout

    policy = Policy.from_checkpoint(trained_run)
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    (obs_input,), (action_output,) = session.get_inputs(), session.get_outputs()
    assert obs_input.name == "obs" and obs_input.shape[1] == 17 and isinstance(obs_input.shape[0], str)  # dynamic
    assert action_output.name == "action" and action_output.shape[1] == 6
    env = make_env("CheetahRun", 5, "cpu", "mujoco", seed=11, reset_pool_size=5, num_threads=1)
    obs = env.reset()["obs"]
    for batch in (obs, obs[:1], torch.cat([obs] * 40)):  # batch sizes 5, 1, 200 from one graph
        actions = session.run(None, {"obs": batch.numpy()})[0]
        np.testing.assert_allclose(actions, policy(batch).numpy(), atol=1e-5, rtol=0)

    sidecar = json.loads(output.with_suffix(".json").read_text())
    assert sidecar["onnx"] == "cheetah.onnx" and sidecar["task"] == "CheetahRun" and sidecar["env_steps"] == 512
    assert (sidecar["obs_dim"], sidecar["action_dim"], sidecar["control_period_s"]) == (17, 6, 0.01)
    assert sidecar["action_low"] == [-1.0] * 6 and sidecar["action_high"] == [1.0] * 6
    assert sum(part["size"] for part in sidecar["observation_layout"]) == 17
    statistics = policy.obs_normalizer
    np.testing.assert_allclose(sidecar["observation_statistics"]["mean"], statistics.mean.numpy())
    seen = sidecar["observation_range_in_rollout"]
    assert len(seen["min"]) == len(seen["max"]) == 17
    assert all(low <= high for low, high in zip(seen["min"], seen["max"], strict=True))
    verification = sidecar["verification"]
    assert verification["rollout_observations"] == 16 * 250 and verification["random_observations"] == 4096
    assert 0 <= verification["random_max_abs_diff"] < 1e-4 and 0 <= verification["rollout_max_abs_diff"] < 1e-4


def test_export_refuses_to_overwrite_and_bad_output_names(trained_run, tmp_path):
    pytest.importorskip("onnxruntime", reason="needs the 'export' extra")
    existing = tmp_path / "policy.onnx"
    existing.write_bytes(b"mine")
    result = export(f"checkpoint={trained_run}", f"output={existing}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"export.py: {existing} exists already; choose another output= or remove it"
    ]
    assert existing.read_bytes() == b"mine"
    result = export(f"checkpoint={trained_run}", f"output={tmp_path / 'policy.pt'}")
    assert result.returncode == 2 and "output must be a .onnx file" in result.stderr
    result = export(f"checkpoint={tmp_path / 'nothing'}")
    assert result.returncode == 2 and "no checkpoint file or run directory" in result.stderr


def untrained_policy(task: str, env: BatchedEnv, seed: int) -> Policy:
    """A random actor with observation statistics of a short rollout: actions far from zero in every joint."""
    torch.manual_seed(seed)
    config = PQNConfig(num_envs=4, num_steps=2, num_minibatches=1, actor_hidden_sizes=(32,), critic_hidden_sizes=(8,))
    agent = PQN(env.obs_dim, env.critic_obs_dim, env.action_low, env.action_high, config, total_timesteps=8)
    agent.obs_normalizer.update(env.reset()["obs"])
    return Policy.from_agent_state(agent.state_dict(), task)


def controls_from_metadata(meta, action, joint_pos, previous_ctrl):
    """The ``ctrl`` a robot program computes from the ONNX metadata alone (each mode written out here)."""
    scale = meta["action_scale"]
    if meta["control_mode"] == "action":
        return np.clip(action, meta["action_low"], meta["action_high"])
    if meta["control_mode"] == "default_pose_offset":
        ctrl = np.asarray(meta["default_joint_pos"]) + scale * action
    elif meta["control_mode"] == "joint_pos_offset":
        ctrl = joint_pos + scale * action
    else:
        assert meta["control_mode"] == "ctrl_increment"
        ctrl = previous_ctrl + scale * action
    return np.clip(ctrl, meta["ctrl_low"], meta["ctrl_high"]) if meta["control_clipped"] else ctrl


@pytest.mark.parametrize(
    "task, formula",
    [
        ("Go1JoystickFlatTerrain", "ctrl = default_joint_pos + 0.5 * action"),
        pytest.param("Go1Getup", "ctrl = joint_pos + 0.5 * action", marks=pytest.mark.slow),
        pytest.param(
            "Go1Handstand",
            "ctrl = previous ctrl + 0.3 * action (the first previous ctrl: joint_pos at the start)",
            marks=pytest.mark.slow,
        ),
        pytest.param("CartpoleBalance", "ctrl = clip(action, action_low, action_high)", marks=pytest.mark.slow),
        ("SpotGetup", "ctrl = joint_pos + 0.6 * action, clipped to [ctrl_low, ctrl_high]"),
        (
            "PandaPickCube",
            "ctrl = previous ctrl + 0.04 * action (the first previous ctrl: joint_pos at the start), "
            "clipped to [ctrl_low, ctrl_high]",
        ),
    ],
)
def test_onnx_metadata_alone_rebuilds_the_envs_controls(task, formula, tmp_path):
    """Read back with onnxruntime, the metadata maps the ONNX policy's actions to the env's own ``ctrl``."""
    onnxruntime = pytest.importorskip("onnxruntime", reason="needs the 'export' extra")
    env = make_env(task, 4, "cpu", "mujoco", seed=5, reset_pool_size=4, num_threads=1)
    export_policy(untrained_policy(task, env, seed=1), tmp_path / "policy.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "policy.onnx"), providers=["CPUExecutionProvider"])
    meta = {key: json.loads(value) for key, value in session.get_modelmeta().custom_metadata_map.items()}
    assert meta["task"] == task and meta["control"] == formula and meta["ctrl_dt"] == env.ctrl_dt
    assert (meta["obs_dim"], meta["action_dim"]) == (env.obs_dim, env.action_dim)
    model = env.physics.mj_model
    if task.startswith("Go1"):
        assert len(meta["joint_names"]) == 12 and meta["joint_names"][0] == "FR_hip_joint"
        np.testing.assert_allclose(meta["default_joint_pos"], model.keyframe("home").qpos[7:])
        assert meta["joint_stiffness"] == [35.0] * 12 and meta["joint_damping"] == [0.5] * 12  # Playground's Kp, Kd
        assert sum(meta["observation_sizes"]) == env.obs_dim
    if "joint_names" in meta:
        qpos_columns = [model.joint(name).qposadr[0] for name in meta["joint_names"]]
    else:
        qpos_columns = []
    physics = env.physics
    obs = env.reset()["obs"].numpy()
    previous = physics.qpos[:, qpos_columns].numpy()  # the first previous ctrl (ctrl_increment)
    moved = 0.0
    for _ in range(30):
        action = session.run(["action"], {"obs": obs})[0]
        expected = controls_from_metadata(meta, action, physics.qpos[:, qpos_columns].numpy(), previous)
        step = env.step(torch.from_numpy(action))
        kept = ~step["done"].numpy()  # reset worlds start over from their start ctrl
        np.testing.assert_allclose(physics.ctrl.numpy()[kept], expected[kept], rtol=0, atol=1e-6)
        moved = max(moved, float(np.abs(action).max()))
        previous = np.where(kept[:, None], expected, physics.qpos[:, qpos_columns].numpy())
        obs = step["obs"].numpy()
    assert moved > 0.1  # the actions are not all near zero: a wrong scale would show


def test_evaluation_runs_nominal_or_refuses_randomized_worlds_for_a_task_without_a_randomizer(trained_run):
    report = evaluate_checkpoint(trained_run, episodes=2, device="cpu", backend="mujoco", randomize=False)
    assert report.startswith("CheetahRun, checkpoint") and "over 2 episodes" in report
    with pytest.raises(ValueError, match="task CheetahRun has no domain randomization; randomize must be false"):
        evaluate_checkpoint(trained_run, episodes=2, device="cpu", backend="mujoco", randomize=True)

"""Domain randomization of the humanoid joystick tasks (MuJoCo Playground 0.2.0's Berkeley Humanoid, G1 and T1
randomizers): the fields each table draws, their ranges as Playground's ``randomize.py`` defines them, that
nothing else changes, that a randomized world is MuJoCo's own model with its values, and that an exported policy
records that it trained in randomized worlds."""

import copy
import json

import mujoco
import numpy as np
import pytest
import torch
from test_policy import untrained_policy

from pqn_torch.envs import make_env
from pqn_torch.envs.randomization import DomainRandomizer
from pqn_torch.export import export_policy, policy_metadata
from pqn_torch.policy import Policy

BERKELEY, G1, T1 = "BerkeleyHumanoidJoystickFlatTerrain", "G1JoystickFlatTerrain", "T1JoystickFlatTerrain"
WORLDS = 512
# Playground's ranges per task: floor friction (set), joint friction loss, link masses (scale); every table
# also scales the armature by U(1, 1.05), adds U(-1, 1) kg to the torso and U(-0.05, 0.05) rad to qpos0's joints.
RANGES = {
    BERKELEY: {"floor": (0.4, 1.0), "frictionloss": (0.9, 1.1), "mass": (0.9, 1.1), "torso": "torso"},
    G1: {"floor": (0.4, 1.0), "frictionloss": (0.5, 2.0), "mass": (0.9, 1.1), "torso": "torso_link"},
    T1: {"floor": (0.2, 0.6), "frictionloss": (0.9, 1.1), "mass": (0.98, 1.02), "torso": "Trunk"},
}
TORSO_BODY_ID = {BERKELEY: 1, G1: 16, T1: 1}  # Playground's hard-coded ids: the same bodies here


def drawn(task):
    """The nominal model and the table's draws for 512 worlds (seeded)."""
    env = make_env(task, WORLDS, "cpu", "mujoco", reset_pool_size=1, num_threads=1)
    randomizer = DomainRandomizer(env.task.randomization, env.physics)
    return env.physics.mj_model, randomizer.draw(torch.Generator().manual_seed(11))


def assert_spans(values, low, high, what):
    """All of ``values`` inside [low, high] and, over 512 worlds, reaching near both ends (not a narrower range)."""
    span = high - low
    assert values.min().item() >= low - 1e-9 and values.max().item() <= high + 1e-9, what
    assert values.min().item() < low + 0.05 * span and values.max().item() > high - 0.05 * span, what


def unchanged_outside(values, nominal, changed):
    """Every entry that ``changed`` (a bool mask over one world's field) leaves out equals the nominal value."""
    expanded = torch.as_tensor(nominal).expand_as(values)
    return torch.equal(values[:, ~changed], expanded[:, ~changed])


@pytest.mark.parametrize("task", [BERKELEY, G1, T1])
def test_each_table_draws_playgrounds_fields_in_playgrounds_ranges_and_nothing_else(task):
    model, values = drawn(task)
    ranges = RANGES[task]
    expected_fields = {"dof_frictionloss", "dof_armature", "body_mass", "qpos0"}
    expected_fields |= {"pair_friction"} if task == G1 else {"geom_friction"}
    expected_fields |= {"actuator_gainprm", "actuator_biasprm", "dof_damping"} if task == T1 else set()
    assert set(values) == expected_fields

    joints = torch.zeros(model.nv, dtype=torch.bool)
    joints[6:] = True  # every dof but the free joint's
    frictionloss = values["dof_frictionloss"][:, 6:] / torch.as_tensor(model.dof_frictionloss[6:])
    assert_spans(frictionloss, *ranges["frictionloss"], "frictionloss")
    assert unchanged_outside(values["dof_frictionloss"], model.dof_frictionloss, joints)
    armature = values["dof_armature"][:, 6:] / torch.as_tensor(model.dof_armature[6:])
    assert_spans(armature, 1.0, 1.05, "armature")
    assert len(set(frictionloss[0].tolist())) == model.nv - 6  # one draw per joint

    torso = model.body(ranges["torso"]).id
    assert torso == TORSO_BODY_ID[task]
    links = [body for body in range(1, model.nbody) if body != torso and model.body_mass[body] > 0]
    assert_spans(values["body_mass"][:, links] / torch.as_tensor(model.body_mass[links]), *ranges["mass"], "mass")
    low, high = ranges["mass"]
    torso_mass = values["body_mass"][:, torso]  # scaled, then + U(-1, 1) kg: inside, ends rarely reached
    assert torso_mass.min().item() >= low * model.body_mass[torso] - 1 - 1e-9
    assert torso_mass.max().item() <= high * model.body_mass[torso] + 1 + 1e-9
    assert torso_mass.max().item() - torso_mass.min().item() > 1.5  # wider than the scaling alone allows
    qpos0 = values["qpos0"] - torch.as_tensor(model.qpos0)
    assert_spans(qpos0[:, 7:], -0.05, 0.05, "qpos0")
    assert (qpos0[:, :7] == 0).all()  # the free joint's reference stays

    if task == G1:  # one friction per world for both feet's floor pairs, both tangent directions
        pairs = [model.pair(name).id for name in ("left_foot_floor", "right_foot_floor")]
        assert pairs == [0, 1]  # Playground's pair_friction[0:2]
        friction = values["pair_friction"]
        feet = friction[:, pairs, :2]
        assert_spans(feet, *ranges["floor"], "foot-floor friction")
        assert (feet == feet[:, :1, :1]).all()
        changed = torch.zeros(model.pair_friction.shape, dtype=torch.bool)
        changed[pairs, :2] = True
        assert unchanged_outside(friction, model.pair_friction, changed)
    else:
        floor = model.geom("floor").id
        assert floor == 0  # Playground's FLOOR_GEOM_ID
        friction = values["geom_friction"]
        assert_spans(friction[:, floor, 0], *ranges["floor"], "floor friction")
        changed = torch.zeros(model.geom_friction.shape, dtype=torch.bool)
        changed[floor, 0] = True
        assert unchanged_outside(friction, model.geom_friction, changed)

    if task == T1:  # Kp x U(0.9, 1.1) per actuator, the bias -Kp with it; the ankles' damping x U(0.5, 2)
        gain, bias = values["actuator_gainprm"], values["actuator_biasprm"]
        assert_spans(gain[:, :, 0] / torch.as_tensor(model.actuator_gainprm[:, 0]), 0.9, 1.1, "Kp")
        assert torch.equal(bias[:, :, 1], -gain[:, :, 0])
        gain_column = torch.zeros(model.actuator_gainprm.shape, dtype=torch.bool)
        gain_column[:, 0] = True
        assert unchanged_outside(gain, model.actuator_gainprm, gain_column)
        assert unchanged_outside(bias, model.actuator_biasprm, gain_column.roll(1, dims=1))
        ankles = torch.tensor(["Ankle" in model.joint(model.dof_jntid[dof]).name for dof in range(model.nv)])
        assert ankles.sum() == 4
        damping = values["dof_damping"][:, ankles] / torch.as_tensor(model.dof_damping[ankles.numpy()])
        assert_spans(damping, 0.5, 2.0, "ankle damping")
        assert unchanged_outside(values["dof_damping"], model.dof_damping, ankles)


def world_model(mj_model, env, world):
    """An MjModel with world ``world``'s randomized values and mj_setConst run on it: the independent reference."""
    model = copy.copy(mj_model)
    for name in env.physics.config.per_world_fields:
        getattr(model, name)[:] = env.physics.model_field(name)[world].numpy()
    mujoco.mj_setConst(model, mujoco.MjData(model))
    return model


@pytest.mark.parametrize("task", [G1, T1])
def test_a_randomized_world_steps_as_mujocos_own_model_with_its_values(task):
    """The fields beyond Go1's (G1's contact-pair friction, T1's gains and damping) reach the native physics: a
    randomized world moves as plain ``mj_step`` on a model holding that world's values, and unlike the nominal."""
    options = dict(reset_pool_size=2, num_threads=1, seed=4, obs_noise_level=0.0, perturbations=False)
    env = make_env(task, 2, "cpu", "mujoco", randomize=True, **options)
    nominal_env = make_env(task, 2, "cpu", "mujoco", **options)
    reference = world_model(nominal_env.physics.mj_model, env, 1)
    keyframe = reference.keyframe(env.task.home_keyframe)
    data = mujoco.MjData(reference)
    data.qpos[:] = keyframe.qpos
    qpos = torch.as_tensor(keyframe.qpos).repeat(2, 1)
    qvel = torch.zeros(2, reference.nv, dtype=torch.float64)
    qvel[:, 0] = 0.5  # walking into the floor friction
    data.qvel[:] = qvel[1].numpy()
    for each in (env, nominal_env):
        each.reset_to(qpos, qvel)
    data.ctrl[:] = env.physics.ctrl[1].numpy()
    mujoco.mj_forward(reference, data)
    actions = torch.linspace(-0.5, 0.5, env.action_dim, dtype=torch.float64).repeat(2, 1)
    for _ in range(15):
        env.step(actions)
        nominal_env.step(actions)
        data.ctrl[:] = env.physics.ctrl[1].numpy()
        mujoco.mj_step(reference, data, nstep=env.task.substeps)
    np.testing.assert_allclose(env.physics.qpos[1].numpy(), data.qpos, rtol=0, atol=1e-8)
    assert (env.physics.qpos[1] - nominal_env.physics.qpos[1]).abs().max().item() > 1e-3


@pytest.mark.parametrize("task", [BERKELEY, G1, T1])
def test_a_policy_records_its_randomized_training_as_go1s_does(task):
    """The task options travel with the policy (``task_overrides``, as for Go1): its metadata says
    ``randomize: true`` and the env it rebuilds from them has randomized worlds."""
    env = make_env(task, 4, "cpu", "mujoco", seed=5, reset_pool_size=4, num_threads=1)
    trained = untrained_policy(task, env, seed=1)
    policy = Policy(trained.actor, trained.obs_normalizer, task, {"randomize": True})
    meta = policy_metadata(policy, env.task, env.physics.mj_model)
    assert json.loads(meta["task"]) == task and json.loads(meta["task_overrides"]) == {"randomize": True}
    rebuilt = make_env(policy.task, 2, "cpu", "mujoco", reset_pool_size=2, num_threads=1, **policy.task_overrides)
    assert rebuilt.task.config.randomize
    masses = rebuilt.physics.model_field("body_mass")
    assert not torch.equal(masses[0], masses[1])


@pytest.mark.slow
def test_an_exported_policy_records_its_randomized_training(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime", reason="needs the 'export' extra")
    env = make_env(T1, 4, "cpu", "mujoco", seed=5, reset_pool_size=4, num_threads=1)
    trained = untrained_policy(T1, env, seed=1)
    result = export_policy(Policy(trained.actor, trained.obs_normalizer, T1, {"randomize": True}), tmp_path / "p.onnx")
    session = onnxruntime.InferenceSession(str(result.onnx_path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["task_overrides"]) == {"randomize": True}
    assert json.loads(result.sidecar_path.read_text())["task_overrides"] == {"randomize": True}


@pytest.mark.warp
@pytest.mark.slow
@pytest.mark.parametrize("task", [G1, T1])
def test_mujoco_warp_batches_the_humanoid_fields_with_the_native_draws(task):
    """On MuJoCo Warp each world holds the same draws as on native MuJoCo (float32 uniforms from the same seed),
    contact-pair friction and actuator gains included, and the randomized worlds step."""
    options = dict(seed=6, reset_pool_size=2, num_threads=1, randomize=True)
    native = make_env(task, 2, "cpu", "mujoco", **options)
    warp = make_env(task, 2, "cpu", "warp", **options)
    for name in native.physics.config.per_world_fields:
        drawn_here = native.physics.model_field(name).float()
        torch.testing.assert_close(warp.physics.model_field(name).reshape(drawn_here.shape), drawn_here)
    for _ in range(5):
        warp.step(torch.zeros(2, warp.action_dim))
    assert torch.isfinite(warp.physics.qpos).all()

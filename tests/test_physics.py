"""Physics backends against MuJoCo itself: native batch == mj_step, warp views are zero-copy, backends agree."""

import mujoco
import numpy as np
import pytest
import torch
import warp as wp

from pqn_torch.envs import make_env
from pqn_torch.envs.physics import PhysicsConfig
from pqn_torch.envs.physics.mujoco_backend import MujocoPhysics
from pqn_torch.envs.physics.warp_backend import contact_capacity
from pqn_torch.envs.tasks.dm_control.cheetah import CheetahRun

NUM_WORLDS = 3
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def cheetah_model():
    """CheetahRun's model: contacts with the floor and a 4-iteration solver, so warm-start matters."""
    task = CheetahRun()
    spec = task.build_spec()
    spec.option.timestep = task.config.sim_dt
    return spec.compile()


def scattered_start(physics, seed):
    """Different bent poses and velocities per world, the feet at the floor: contacts from the first steps."""
    generator = torch.Generator().manual_seed(seed)
    physics.qpos.copy_((torch.rand(physics.qpos.shape, generator=generator, dtype=torch.float64) - 0.5) * 0.6)
    physics.qpos[:, 1] = -0.1
    physics.qvel.copy_(0.3 * torch.randn(physics.qvel.shape, generator=generator, dtype=torch.float64))
    physics.ctrl.copy_(torch.rand(physics.ctrl.shape, generator=generator, dtype=torch.float64) * 2 - 1)
    physics.forward()


def plain_data(physics, world):
    """A fresh MjData holding world ``world``'s state, warm-start and controls."""
    data = mujoco.MjData(physics.mj_model)
    data.qpos[:] = physics.qpos[world].numpy()
    data.qvel[:] = physics.qvel[world].numpy()
    data.ctrl[:] = physics.ctrl[world].numpy()
    data.qacc_warmstart[:] = physics._warmstart[world].numpy()
    data.time = float(physics.time[world])
    return data


def assert_world_matches(physics, world, data):
    np.testing.assert_array_equal(physics.qpos[world].numpy(), data.qpos)
    np.testing.assert_array_equal(physics.qvel[world].numpy(), data.qvel)
    np.testing.assert_array_equal(physics.sensordata[world].numpy(), data.sensordata)
    assert float(physics.time[world]) == data.time


# ----------------------------------------------------------------------------- native MuJoCo backend
def test_native_xfrc_applied_acts_per_world_and_qacc_is_mj_steps(cheetah_model):
    """A force written to one world's ``xfrc_applied`` moves only that world, exactly as in ``mj_step``;
    ``qacc`` holds the accelerations of the last physics step."""
    physics = MujocoPhysics(cheetah_model, NUM_WORLDS, CPU, PhysicsConfig(substeps=1, num_threads=2))
    scattered_start(physics, seed=2)
    torso = cheetah_model.body("torso").id
    physics.xfrc_applied[1, torso] = torch.tensor([50.0, 0.0, 80.0, 0.0, 3.0, 0.0], dtype=torch.float64)
    datas = [plain_data(physics, world) for world in range(NUM_WORLDS)]
    datas[1].xfrc_applied[torso] = [50.0, 0.0, 80.0, 0.0, 3.0, 0.0]
    physics.step()
    for world, data in enumerate(datas):
        mujoco.mj_step(cheetah_model, data)
        assert_world_matches(physics, world, data)
        np.testing.assert_array_equal(physics.qacc[world].numpy(), data.qacc)


def test_step_n_equals_n_mj_steps(cheetah_model):
    physics = MujocoPhysics(cheetah_model, NUM_WORLDS, CPU, PhysicsConfig(substeps=1, num_threads=2))
    scattered_start(physics, seed=0)
    datas = [plain_data(physics, world) for world in range(NUM_WORLDS)]
    physics.step(30)
    for world, data in enumerate(datas):
        contacts = 0
        for _ in range(30):
            mujoco.mj_step(cheetah_model, data)
            contacts += data.ncon
        assert contacts > 0, "the test needs contacts to exercise the constraint solver"
        assert_world_matches(physics, world, data)


def test_warmstart_carries_across_calls(cheetah_model):
    """Ten step() calls of 3 substeps (config default) == 30 uninterrupted mj_step calls, bit for bit."""
    physics = MujocoPhysics(cheetah_model, NUM_WORLDS, CPU, PhysicsConfig(substeps=3, num_threads=2))
    scattered_start(physics, seed=1)
    physics.step()
    datas = [plain_data(physics, world) for world in range(NUM_WORLDS)]
    cold = plain_data(physics, 0)
    cold.qacc_warmstart[:] = 0
    for _ in range(10):
        physics.step()
    for world, data in enumerate(datas):
        for _ in range(30):
            mujoco.mj_step(cheetah_model, data)
        assert_world_matches(physics, world, data)
    # Losing the warm-start between calls would change the trajectory, so the check above can fail.
    for _ in range(30):
        mujoco.mj_step(cheetah_model, cold)
    assert not np.array_equal(cold.qvel, physics.qvel[0].numpy())


def test_clear_warmstart_only_in_masked_worlds(cheetah_model):
    physics = MujocoPhysics(cheetah_model, NUM_WORLDS, CPU, PhysicsConfig(num_threads=1))
    scattered_start(physics, seed=2)
    physics.step(20)
    mask = torch.tensor([True, False, True])
    datas = [plain_data(physics, world) for world in range(NUM_WORLDS)]
    physics.clear_warmstart(mask)
    assert (physics._warmstart[mask] == 0).all() and (physics._warmstart[~mask] != 0).any()
    physics.step(20)
    for world, data in enumerate(datas):
        if mask[world]:
            data.qacc_warmstart[:] = 0
        for _ in range(20):
            mujoco.mj_step(cheetah_model, data)
        assert_world_matches(physics, world, data)


def test_views_write_through_and_stay_the_same_objects(cheetah_model):
    physics = MujocoPhysics(cheetah_model, 2, CPU, PhysicsConfig(num_threads=1))
    views = {name: getattr(physics, name) for name in ("qpos", "qvel", "act", "ctrl", "sensordata", "time")}
    assert physics.dtype == torch.float64 and physics.qpos.shape == (2, cheetah_model.nq)
    data = mujoco.MjData(cheetah_model)
    physics.qpos[1, 1] = data.qpos[1] = 0.5  # rootz of world 1, written through the view
    physics.qvel[1, 0] = data.qvel[0] = 2.0
    physics.forward()
    mujoco.mj_forward(cheetah_model, data)
    assert data.sensordata.any()
    np.testing.assert_array_equal(physics.sensordata[1].numpy(), data.sensordata)
    physics.step(4)
    mujoco.mj_step(cheetah_model, data, 4)
    np.testing.assert_array_equal(physics.qpos[1].numpy(), data.qpos)
    assert not np.array_equal(physics.qpos[0].numpy(), data.qpos)
    assert physics.time[0].item() == pytest.approx(4 * cheetah_model.opt.timestep)
    assert all(getattr(physics, name) is view for name, view in views.items())


def test_bad_arguments_are_rejected(cheetah_model):
    physics = MujocoPhysics(cheetah_model, 1, CPU, PhysicsConfig(num_threads=1))
    with pytest.raises(ValueError, match="positive integer"):
        physics.step(0)
    with pytest.raises(ValueError, match="CPU only"):
        MujocoPhysics(cheetah_model, 1, torch.device("cuda", 0), PhysicsConfig())
    with pytest.raises(ValueError, match="num_threads"):
        MujocoPhysics(cheetah_model, 1, CPU, PhysicsConfig(num_threads=0))


def test_unstable_world_goes_nonfinite_instead_of_silent_reset(cheetah_model):
    """MuJoCo C's autoreset is off: a NaN stays visible so the env terminates and resets that world itself."""
    physics = MujocoPhysics(cheetah_model, 2, CPU, PhysicsConfig(num_threads=1))
    physics.qvel[1, 3] = float("nan")
    physics.step(1)
    assert torch.isfinite(physics.qpos[0]).all() and not torch.isfinite(physics.qpos[1]).all()


# ----------------------------------------------------------------------------- MuJoCo Warp backend
def test_contact_capacity_keeps_playgrounds_per_world_share():
    assert contact_capacity(100_000, 1024) == 100_000  # Playground's CheetahRun total at its batch
    assert contact_capacity(100_000, 4096) == 400_000
    assert contact_capacity(100_000, 4) == 391  # ceil(97.66 * 4)
    assert contact_capacity(0, 64) == 0 and contact_capacity(None, 64) is None
    # Robot tasks state their need per world (Go1 joystick: 4 foot contacts), which wins over naconmax.
    assert contact_capacity(None, 64, contacts_per_world=4) == 256 == contact_capacity(100_000, 64, 4)


@pytest.fixture(scope="module")
def warp_env():
    return make_env("CheetahRun", 4, device="cpu", backend="warp", reset_pool_size=4)


@pytest.mark.warp
def test_warp_views_are_zero_copy(warp_env):
    physics = warp_env.physics
    assert physics.dtype == torch.float32 and physics.device == CPU
    physics.qpos[2, 4] = 0.25
    assert physics.data.qpos.numpy()[2, 4] == pytest.approx(0.25)
    wp.copy(physics.data.qvel, wp.full(physics.data.qvel.shape, 1.5, dtype=float, device="cpu"))
    assert (physics.qvel == 1.5).all()
    for name in ("qpos", "qvel", "ctrl", "sensordata", "time"):
        assert getattr(physics, name).data_ptr() == getattr(physics.data, name).ptr


@pytest.mark.warp
def test_warp_clear_warmstart(warp_env):
    physics = warp_env.physics
    physics._warmstart.fill_(2.0)
    physics.clear_warmstart(torch.tensor([False, True, True, False]))
    warmstart = physics.data.qacc_warmstart.numpy()
    assert (warmstart[1:3] == 0).all() and (warmstart[[0, 3]] == 2.0).all()


@pytest.mark.warp
def test_backends_agree_on_cheetah_run(warp_env):
    """Same start states and actions for 20 control steps -> same observations and rewards.

    Tolerance: MuJoCo Warp computes in float32 (relative rounding ~6e-8), MuJoCo C in float64; the
    4-iteration solver and the foot contacts amplify that rounding over the 20 steps (measured here:
    at most 3e-5 in observations of magnitude up to ~9, 3e-7 in rewards); the tolerances are 10x those.
    """
    native = make_env("CheetahRun", 4, device="cpu", backend="mujoco", reset_pool_size=4, num_threads=1)
    qpos, qvel = native.start_states["qpos"].clone(), native.start_states["qvel"].clone()
    torch.testing.assert_close(native.reset_to(qpos, qvel)["obs"], warp_env.reset_to(qpos, qvel)["obs"])
    generator = torch.Generator().manual_seed(5)
    total_reward = 0.0
    for _ in range(20):
        action = torch.rand(4, 6, generator=generator) * 2 - 1
        expected, actual = native.step(action), warp_env.step(action)
        torch.testing.assert_close(actual["obs"], expected["obs"], atol=3e-4, rtol=1e-4)
        torch.testing.assert_close(actual["reward"], expected["reward"], atol=3e-6, rtol=0)
        total_reward += float(expected["reward"].sum())
    assert total_reward > 0, "rewards must be non-trivial for the comparison to mean anything"

"""Domain randomization: per-world model fields on both backends, Go1's table, the env options."""

import copy
import dataclasses

import mujoco
import numpy as np
import pytest
import torch

from pqn_torch.envs import make_env
from pqn_torch.envs.physics import make_physics
from pqn_torch.envs.randomization import DomainRandomizer, Draw, randomized_fields
from pqn_torch.envs.tasks.locomotion.go1 import GO1_RANDOMIZATION

CPU = torch.device("cpu")
RANDOMIZED = torch.tensor([False, True, False, True])


def nominal_and_randomized(backend):
    """Go1 flat-terrain physics, 4 worlds: the nominal one, and one whose worlds 1 and 3 drew Go1's table."""
    nominal = make_env("Go1JoystickFlatTerrain", 4, "cpu", backend, reset_pool_size=4, num_threads=1).physics
    config = dataclasses.replace(nominal.config, per_world_fields=randomized_fields(GO1_RANDOMIZATION))
    randomized = make_physics(backend, nominal.mj_model, 4, CPU, config)
    randomizer = DomainRandomizer(GO1_RANDOMIZATION, randomized)
    parameters = randomizer.draw(torch.Generator().manual_seed(7))
    randomizer.write(parameters, RANDOMIZED)
    return nominal, randomized, parameters


def start_standing(physics):
    """Every world at the home pose, position targets at its joint angles, at rest."""
    home = torch.as_tensor(physics.mj_model.keyframe("home").qpos, dtype=physics.dtype)
    physics.qpos.copy_(home.expand_as(physics.qpos))
    physics.qvel.zero_()
    physics.ctrl.copy_(physics.qpos[:, 7:])
    physics.clear_warmstart(torch.ones(4, dtype=torch.bool))
    physics.forward()


def check_draws_and_dynamics(nominal, randomized, parameters):
    model = nominal.mj_model
    trunk, floor = model.body("trunk").id, model.geom("floor").id
    mass, friction = randomized.model_field("body_mass"), randomized.model_field("geom_friction")
    nominal_mass = torch.as_tensor(model.body_mass, dtype=mass.dtype)
    nominal_friction = torch.as_tensor(model.geom_friction, dtype=friction.dtype)
    for world in (0, 2):
        assert torch.equal(mass[world], nominal_mass) and torch.equal(friction[world], nominal_friction)
    for world in (1, 3):
        torch.testing.assert_close(mass[world], parameters["body_mass"][world].to(mass.dtype))
        links = [body for body in range(2, model.nbody) if model.body_mass[body] > 0]
        ratio = (mass[world, links] / nominal_mass[links]).tolist()
        assert all(0.9 - 1e-6 <= value <= 1.1 + 1e-6 for value in ratio)
        trunk_mass = model.body_mass[trunk]
        assert 0.9 * trunk_mass - 1 - 1e-5 <= mass[world, trunk].item() <= 1.1 * trunk_mass + 1 + 1e-5
        assert 0.4 <= friction[world, floor, 0].item() <= 1.0
        assert torch.equal(friction[world, :, 1:], nominal_friction[:, 1:])  # only the floor's sliding friction
    assert mass[1, trunk] != mass[3, trunk]  # a draw per world

    for physics in (nominal, randomized):
        start_standing(physics)
        for _ in range(25):
            physics.ctrl.add_(0.02)  # a slow crouch: every joint target moves
            physics.step()
    for world in (0, 2):
        assert torch.equal(randomized.qpos[world], nominal.qpos[world])  # untouched worlds: bit for bit
    for world in (1, 3):
        assert (randomized.qpos[world] - nominal.qpos[world]).abs().max().item() > 1e-3


def world_model(mj_model, parameters, world):
    """An MjModel with world ``world``'s drawn values and mj_setConst run on it: the independent reference."""
    model = copy.copy(mj_model)
    for name, values in parameters.items():
        getattr(model, name)[:] = values[world].numpy()
    mujoco.mj_setConst(model, mujoco.MjData(model))
    return model


def test_go1_randomized_worlds_on_native_mujoco_are_mujocos_own_model_with_those_values():
    nominal, randomized, parameters = nominal_and_randomized("mujoco")
    reference = world_model(nominal.mj_model, parameters, 1)
    batch = randomized._batch
    for name in ("body_subtreemass", "dof_invweight0", "body_invweight0", "actuator_acc0"):
        np.testing.assert_allclose(batch.expanded(name)[1], getattr(reference, name), rtol=1e-12, err_msg=name)
        np.testing.assert_array_equal(batch.expanded(name)[0], getattr(nominal.mj_model, name), err_msg=name)
    assert reference.body_subtreemass[0] != nominal.mj_model.body_subtreemass[0]  # the masses changed it
    check_draws_and_dynamics(nominal, randomized, parameters)
    data = mujoco.MjData(reference)  # world 1 stepped by plain mj_step on its own model
    data.qpos[:] = reference.keyframe("home").qpos
    data.ctrl[:] = data.qpos[7:]
    mujoco.mj_forward(reference, data)
    for _ in range(25):
        data.ctrl[:] += 0.02
        mujoco.mj_step(reference, data, nstep=randomized.config.substeps)
    np.testing.assert_allclose(randomized.qpos[1].numpy(), data.qpos, rtol=0, atol=1e-9)


@pytest.mark.warp
@pytest.mark.slow
def test_go1_randomized_worlds_on_mujoco_warp_follow_the_draws_and_recompute_constants():
    nominal, randomized, parameters = nominal_and_randomized("warp")
    reference = world_model(nominal.mj_model, parameters, 3)
    for name in ("body_subtreemass", "dof_invweight0"):  # MuJoCo Warp's set_const, per world, in float32
        values = getattr(randomized.model, name).numpy()
        np.testing.assert_allclose(values[3], getattr(reference, name), rtol=1e-4, err_msg=name)
        np.testing.assert_array_equal(values[0], getattr(nominal.mj_model, name).astype(np.float32), err_msg=name)
    check_draws_and_dynamics(nominal, randomized, parameters)


def test_a_draw_names_rows_by_object_and_applies_in_order():
    model = make_env("Go1JoystickFlatTerrain", 1, "cpu", "mujoco", reset_pool_size=1, num_threads=1).physics.mj_model
    assert Draw("geom_friction", "set", 0, 1, rows="floor", column=0).index(model) == (slice(None), 0, 0)
    assert Draw("body_ipos", "add", 0, 1, rows="trunk").index(model) == (slice(None), model.body("trunk").id)
    with pytest.raises(ValueError, match="low"):
        Draw("body_mass", "scale", 1.1, 0.9)


def test_randomize_options_are_checked():
    with pytest.raises(ValueError, match="task CartpoleBalance has no domain randomization"):
        make_env("CartpoleBalance", 2, "cpu", "mujoco", randomize=True)
    with pytest.raises(ValueError, match="randomize_every_reset=true needs randomize=true"):
        make_env("Go1JoystickFlatTerrain", 2, "cpu", "mujoco", randomize_every_reset=True)
    with pytest.raises(ValueError, match="randomize must be true or false, got 1"):
        make_env("Go1JoystickFlatTerrain", 2, "cpu", "mujoco", randomize=1)


def test_env_draws_once_per_env_or_again_at_each_reset():
    def trunk_masses(env):
        return env.physics.model_field("body_mass")[:, env.physics.mj_model.body("trunk").id].clone()

    options = dict(seed=3, reset_pool_size=4, num_threads=1, randomize=True, episode_length=3)
    once = make_env("Go1JoystickFlatTerrain", 4, "cpu", "mujoco", **options)
    every = make_env("Go1JoystickFlatTerrain", 4, "cpu", "mujoco", randomize_every_reset=True, **options)
    masked = make_env(  # the GPU's path: no host check, the masked writes run at every step
        "Go1JoystickFlatTerrain", 4, "cpu", "mujoco", randomize_every_reset=True, host_shortcuts=False, **options
    )
    first = trunk_masses(once)
    assert torch.equal(first, trunk_masses(every))  # the same draws from the same seed
    assert len(set(first.tolist())) == 4
    for env in (once, every, masked):
        env.reset(staggered=True)
    actions = torch.zeros(4, 12)
    resets = 0
    for _ in range(3):
        before = trunk_masses(every)
        done = every.step(actions)["done"]
        once.step(actions)
        masked.step(actions)
        after = trunk_masses(every)
        assert torch.equal(trunk_masses(masked), after)
        assert torch.equal(after[~done], before[~done]) and bool((after[done] != before[done]).all())
        assert torch.equal(trunk_masses(once), first)
        resets += int(done.sum())
    assert 0 < resets < 12  # staggered: some worlds reset while others run on

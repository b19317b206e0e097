"""MuJoCo Warp's fixed buffers: sized from the task, checked at its start states, overflows counted and reported."""

import dataclasses
import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pqn_torch.envs import make_env
from pqn_torch.envs.backend_sweep import SweepResult, backend_sweep, sweep_table
from pqn_torch.envs.core import OVERFLOW_COUNTERS
from pqn_torch.envs.physics import PhysicsConfig
from pqn_torch.envs.physics.warp_backend import contact_capacity
from pqn_torch.envs.tasks import get_task_class
from pqn_torch.envs.tasks.base import TaskConfig
from pqn_torch.training import run_training

from training_testing import tiny_config

CPU = torch.device("cpu")


def test_every_physics_field_of_the_task_config_reaches_the_backend():
    """naconmax, contacts_per_world and njmax: a task's figure (or a user's override) is what the physics gets."""
    shared = {field.name for field in dataclasses.fields(PhysicsConfig)} & {
        field.name for field in dataclasses.fields(TaskConfig)
    }
    assert shared == {"naconmax", "contacts_per_world", "njmax"}  # a new shared field must be added here
    overrides = {"naconmax": 123, "contacts_per_world": 5, "njmax": 7}
    env = make_env("CartpoleBalance", 1, "cpu", "mujoco", reset_pool_size=1, **overrides)
    assert {name: getattr(env.physics.config, name) for name in shared} == overrides
    assert env.physics.config.substeps == 1 and env.physics.config.num_threads is None


@pytest.mark.warp
def test_go1_rough_terrain_builds_on_warp_with_its_stated_buffers():
    """Its default pose (straight legs on the heightfield: 112 rows) is no start state; the real ones fit njmax=60."""
    config = get_task_class("Go1JoystickRoughTerrain").default_config
    assert (config.njmax, config.contacts_per_world) == (60, 8)
    env = make_env("Go1JoystickRoughTerrain", 2, "cpu", "warp", reset_pool_size=2)
    assert env.physics.data.njmax == 60 and env.physics.data.naconmax == 8 * 2
    env.reset()
    for _ in range(3):
        assert torch.isfinite(env.step(torch.zeros(2, 12))["obs"]).all()
    assert all(int(env.stats[name]) == 0 for name in OVERFLOW_COUNTERS if name.startswith("overflow_"))

    # Start states that do not fit fail the build, naming the override that makes room.
    with pytest.raises(ValueError, match=r"start states overflow the physics' constraints buffer; njmax is 4 rows "):
        make_env("Go1JoystickRoughTerrain", 2, "cpu", "warp", reset_pool_size=2, njmax=4)


@pytest.mark.warp
def test_warp_counts_a_constraint_overflow_per_world():
    """ReacherEasy with no constraint rows: its start states fit (no joint at a limit); a wrist driven into
    its limit needs one row per world, which does not fit. Counted per world, once per step, reported with
    the fix; the native backend has the same counters, at zero."""
    env = make_env("ReacherEasy", 2, "cpu", "warp", reset_pool_size=2, njmax=0)
    native = make_env("ReacherEasy", 2, "cpu", "mujoco", reset_pool_size=2, njmax=0)
    assert set(env.stats) == set(native.stats) >= set(OVERFLOW_COUNTERS)
    wrist_limit = float(env.physics.mj_model.jnt_range[1, 1])
    qpos = torch.tensor([[0.0, wrist_limit - 0.01], [0.0, 0.0]])
    qvel = torch.tensor([[0.0, 2.0], [0.0, 0.0]])
    push = torch.tensor([[0.0, 1.0], [0.0, 0.0]])  # world 0 drives on through the limit, world 1 rests
    for envs in (env, native):
        envs.reset_to(qpos, qvel)
        envs.step(push)
    # MuJoCo C keeps the limit's row and brakes the wrist (measured 0.52 rad/s); MuJoCo Warp had no room for
    # it and lets the push accelerate the wrist on (measured 4.19 rad/s).
    assert native.physics.qvel[0, 1] < 1.0 and env.physics.qvel[0, 1] > 3.0
    counts = {name: int(env.stats[name]) for name in OVERFLOW_COUNTERS}
    assert counts == {**dict.fromkeys(OVERFLOW_COUNTERS, 0), "overflow_constraints": 1}
    assert all(int(native.stats[name]) == 0 for name in OVERFLOW_COUNTERS)
    assert env.physics.overflow_fix("constraints").endswith("+task.overrides.njmax=1")
    env.step(push)  # still beyond the limit: counted again (the bitmask was cleared after the first step)
    assert int(env.stats["overflow_constraints"]) == 2


@pytest.mark.slow
@pytest.mark.warp
def test_a_warp_run_logs_overflows_to_tensorboard_and_says_how_to_fix_them(tmp_path, capsys):
    """WalkerWalk with njmax=12: its start states fit (measured: at most 8 rows), falling walkers need ~20."""
    config = tiny_config("WalkerWalk", num_envs=8, backend="warp")
    config["task"]["overrides"]["njmax"] = 12
    run_training(config, tmp_path, show_progress=False)
    out = capsys.readouterr().out
    events = EventAccumulator(str(next((tmp_path / "tensorboard").glob("events.*"))))
    events.Reload()
    assert {f"physics/{name}" for name in OVERFLOW_COUNTERS} <= set(events.Tags()["scalars"])
    total = events.Scalars("physics/overflow_constraints")[-1].value
    assert total > 0 and events.Scalars("physics/overflow_contacts")[-1].value == 0
    assert "warning: " in out and "overflowed the physics' constraints buffer by env step" in out
    last_line = out.strip().splitlines()[-1]
    assert last_line.startswith(f"{total:,.0f} world-steps overflowed the physics' constraints buffer in this run")
    assert "+task.overrides.njmax=" in last_line


# Tasks whose compared step lands feet or bodies on contact from a fresh start: Playground's capped solver
# iterations stop at different points in the two implementations there (measured: Go1JoystickRoughTerrain's
# median relative error 8e-3 with its 1 Newton iteration, 1e-8 with 30); compared with a converged solver.
LANDING_STEP = {"Go1JoystickRoughTerrain"}


@pytest.mark.slow
@pytest.mark.warp
def test_every_task_builds_steps_and_agrees_on_warp(monkeypatch):
    """The sweep behind ``benchmark.py warp-sweep``: every registered task on MuJoCo Warp (CPU) with defaults."""
    results = backend_sweep(CPU)
    print("\n" + sweep_table(results))
    for result in results:
        assert result.finite and result.steps_per_s > 0, result
        config = get_task_class(result.task).default_config
        # The buffers are the task's stated figures (a task must state them: None would fail here).
        assert result.njmax == config.njmax, result
        assert result.contact_buffer == contact_capacity(config.naconmax, 4, config.contacts_per_world), result
        assert not any(result.overflows[name] for name in OVERFLOW_COUNTERS if name.startswith("overflow_")), result
        if result.task not in LANDING_STEP:
            assert result.median_rel_error is not None and result.median_rel_error <= 1e-3, result
    for task in LANDING_STEP:
        task_class = get_task_class(task)
        build_spec = task_class.build_spec

        def converged(self, build_spec=build_spec):
            spec = build_spec(self)
            spec.option.iterations = spec.option.ls_iterations = 30
            return spec

        monkeypatch.setattr(task_class, "build_spec", converged)
        (result,) = backend_sweep(CPU, [task])
        assert result.median_rel_error is not None and result.median_rel_error <= 1e-3, result


def test_sweep_table_shows_counted_buffer_kinds_only():
    """The table a GPU user reads: one row per task, columns for the buffer kinds that overflowed anywhere."""
    quiet = SweepResult("A", 1.0, 100.0, True, 0, 40, 16, dict.fromkeys(OVERFLOW_COUNTERS, 0), 1e-8, 2e-4)
    full = SweepResult("B", 2.5, 1234.0, False, 3, 60, 32, {**quiet.overflows, "overflow_contacts": 7}, None, None)
    lines = sweep_table([quiet, full]).splitlines()
    assert lines[0] == (
        "| task | build s | env-steps/s | finite | unstable | njmax | contacts | median rel err | max rel err "
        "| overflow_contacts | solver_iteration_limit |"
    )
    assert lines[2] == "| A | 1.0 | 100 | yes | 0 | 40 | 16 | 1.0e-08 | 2.0e-04 | 0 | 0 |"
    assert lines[3] == "| B | 2.5 | 1,234 | NO | 3 | 60 | 32 | - | - | 7 | 0 |"
    assert sweep_table([quiet]).splitlines()[0].endswith("| buffer overflows | solver_iteration_limit |")
    assert math.isclose(full.build_s, 2.5)

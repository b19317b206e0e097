"""The five Unitree Go1 tasks: sizes and layouts, reward terms on hand-built states, command resampling,
getup resets, handstand/footstand terminations, pushes, task state across autoreset, warp parity."""

import math
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from pqn_torch.envs.tasks.locomotion.go1 import COMMAND_AMPLITUDE, COMMAND_NONZERO_PROBABILITY, Go1Task

from task_testing import make_task_env, tetrahedron_stl

GO1_TASKS = {  # obs, critic obs, episode length (Playground 0.2.0)
    "Go1JoystickFlatTerrain": (48, 123, 1000),
    "Go1JoystickRoughTerrain": (48, 123, 1000),
    "Go1Getup": (42, 91, 300),
    "Go1Handstand": (45, 94, 500),
    "Go1Footstand": (45, 94, 500),
}
HOME_JOINTS = [0.1, 0.9, -1.8, -0.1, 0.9, -1.8, 0.1, 0.9, -1.8, -0.1, 0.9, -1.8]
DT = 0.02


def home_state(env, height=0.278):
    """Every world at the home pose, level, at rest ([N, 19], [N, 18] in the physics dtype)."""
    qpos = torch.zeros_like(env.physics.qpos)
    qpos[:, 2], qpos[:, 3] = height, 1.0
    qpos[:, 7:] = torch.tensor(HOME_JOINTS, dtype=qpos.dtype)
    return qpos, torch.zeros_like(env.physics.qvel)


@pytest.fixture(scope="module")
def joystick():
    return make_task_env("Go1JoystickFlatTerrain", num_envs=4, obs_noise_level=0.0)


@pytest.mark.parametrize("name", sorted(GO1_TASKS))
def test_sizes_timing_and_action_space(name):
    env = make_task_env(name, num_envs=2)
    obs_dim, critic_dim, episode_length = GO1_TASKS[name]
    assert (env.obs_dim, env.critic_obs_dim, env.action_dim) == (obs_dim, critic_dim, 12)
    assert env.episode_length == episode_length and env.ctrl_dt == DT and env.task.substeps == 5
    model = env.physics.mj_model
    assert (model.nq, model.nv, model.nu, model.nmesh) == (19, 18, 12, 0)  # visual meshes dropped
    assert model.opt.ccd_iterations == 20 and model.opt.timestep == 0.004
    assert (model.actuator_gainprm[:, 0] == 35).all() and (model.dof_damping[6:] == 0.5).all()
    torch.testing.assert_close(env.action_low, -torch.ones(12))
    torch.testing.assert_close(env.action_high, torch.ones(12))
    td = env.reset()
    assert td["obs"].shape == (2, obs_dim) and td["critic_obs"].shape == (2, critic_dim)


def test_joystick_observation_layout_at_a_known_state(joystick):
    env = joystick
    qpos, qvel = home_state(env)
    qpos[:, 7] += 0.2  # FR hip joint
    qvel[:, 0], qvel[:, 7] = 0.4, -1.5  # forward trunk speed, FR thigh speed
    command = torch.tensor([[0.5, -0.2, 0.3]]).repeat(4, 1)
    td = env.reset_to(qpos, qvel, task_state={"command": command})
    obs, critic = td["obs"][0], td["critic_obs"][0]
    torch.testing.assert_close(obs[0:3], torch.tensor([0.4, 0.0, 0.0]), atol=1e-5, rtol=0)  # local linvel
    torch.testing.assert_close(obs[3:6], torch.zeros(3), atol=1e-6, rtol=0)  # gyro
    torch.testing.assert_close(obs[6:9], torch.tensor([0.0, 0.0, -1.0]), atol=1e-6, rtol=0)  # gravity, IMU frame
    expected_offset = torch.zeros(12)
    expected_offset[0] = 0.2
    torch.testing.assert_close(obs[9:21], expected_offset, atol=1e-6, rtol=0)  # joints - home
    assert obs[21 + 1] == -1.5 and obs[21:33].abs().sum() == 1.5  # joint velocities
    assert (obs[33:45] == 0).all()  # last action
    torch.testing.assert_close(obs[45:48], command[0])
    assert torch.equal(critic[:48], obs)
    torch.testing.assert_close(critic[54:57], torch.tensor([0.0, 0.0, -1.0]), atol=1e-6, rtol=0)  # clean gravity
    torch.testing.assert_close(critic[63:75], expected_offset, atol=1e-6, rtol=0)
    assert critic[75 + 1] == -1.5
    # reset_to puts the position targets at the joint angles: every actuator force Kp * (ctrl - q) is 0.
    assert (critic[87:99] == 0).all()
    assert critic[99:103].tolist() == [0, 0, 0, 0] and (critic[115:] == 0).all()  # contacts, air time, push


def test_noise_is_uniform_with_playgrounds_scales():
    env = make_task_env("Go1JoystickFlatTerrain", num_envs=512)
    qpos, qvel = home_state(env)
    command = {"command": torch.full((512, 3), 0.5)}
    obs = env.reset_to(qpos, qvel, task_state=command)["obs"]
    clean_env = make_task_env("Go1JoystickFlatTerrain", num_envs=512, obs_noise_level=0.0)
    clean = clean_env.reset_to(qpos, qvel, task_state=command)["obs"]
    error = obs - clean
    for columns, scale in (
        (slice(0, 3), 0.1),
        (slice(3, 6), 0.2),
        (slice(6, 9), 0.05),
        (slice(9, 21), 0.03),
        (slice(21, 33), 1.5),
    ):
        part = error[:, columns]
        assert part.abs().max() <= scale + 1e-6 and part.abs().max() > 0.9 * scale
        assert part.std().item() == pytest.approx(scale / math.sqrt(3), rel=0.1)  # U(-s, s)
    assert torch.equal(error[:, 33:], torch.zeros(512, 15))  # last action and command are exact


def test_joystick_reward_terms_standing_still_at_home(joystick):
    env = joystick
    qpos, qvel = home_state(env)
    env.reset_to(qpos, qvel, task_state={"command": torch.zeros(4, 3)})
    contact = env.task.feet_contact(env.physics)
    none = torch.zeros(4, 4, dtype=torch.bool)
    terms = env.task.reward_terms(
        env.physics,
        torch.zeros(4, 12, dtype=torch.float64),
        env.task_state,
        contact,
        none,
        torch.zeros(4, dtype=torch.bool),
    )
    one, zero = torch.ones(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    for name in ("tracking_lin_vel", "tracking_ang_vel", "pose"):
        torch.testing.assert_close(terms[name], one)
    for name in (
        "lin_vel_z",
        "ang_vel_xy",
        "orientation",
        "stand_still",
        "termination",
        "action_rate",
        "energy",
        "feet_slip",
        "feet_clearance",
        "feet_height",
        "feet_air_time",
        "dof_pos_limits",
    ):
        torch.testing.assert_close(terms[name], zero, atol=1e-9, rtol=0)
    # At rest the position servos hold the weight: torque cost = |tau|_2 + |tau|_1 of the actuator forces.
    torques = env.task.actuator_force(env.physics)
    torch.testing.assert_close(terms["torques"], torques.norm(dim=-1) + torques.abs().sum(-1))


def test_joystick_tracking_stand_still_and_joint_limit_terms(joystick):
    env = joystick
    qpos, qvel = home_state(env)
    qvel[:, 0], qvel[:, 1] = 0.5, 0.2  # trunk velocity in the world frame (= trunk frame at yaw 0)
    qpos[:, 7] = 0.863 * 0.95 + 0.1  # FR hip abduction 0.1 rad beyond its soft limit (95 % of 0.863)
    command = torch.tensor([[1.0, 0.2, 0.5], [0.0, 0.0, 0.0], [1.0, 0.2, 0.5], [0.0, 0.0, 0.0]])
    env.reset_to(qpos, qvel, task_state={"command": command})
    physics, task = env.physics, env.task
    none = torch.zeros(4, 4, dtype=torch.bool)
    terms = task.reward_terms(
        physics, torch.zeros(4, 12, dtype=torch.float64), env.task_state, none, none, torch.zeros(4, dtype=torch.bool)
    )
    # exp(-(1.0 - 0.5)^2 / 0.25) with the command, exp(-(0.5^2 + 0.2^2) / 0.25) without.
    expected = torch.tensor([math.exp(-1.0), math.exp(-1.16), math.exp(-1.0), math.exp(-1.16)], dtype=torch.float64)
    torch.testing.assert_close(terms["tracking_lin_vel"], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(terms["tracking_ang_vel"][0], torch.tensor(math.exp(-1.0), dtype=torch.float64))
    offset = 0.863 * 0.95 + 0.1 - 0.1
    torch.testing.assert_close(terms["stand_still"], torch.tensor([0.0, offset, 0.0, offset], dtype=torch.float64))
    torch.testing.assert_close(terms["pose"], torch.full((4,), math.exp(-(offset**2)), dtype=torch.float64))
    torch.testing.assert_close(terms["dof_pos_limits"], torch.full((4,), 0.1, dtype=torch.float64))


def test_joystick_feet_terms_for_a_foot_landing_after_a_known_air_time(joystick):
    env = joystick
    qpos, qvel = home_state(env)
    command = torch.tensor([[1.0, 0.0, 0.0]]).repeat(4, 1)
    air_time = torch.tensor([[0.3, 0.0, 0.0, 0.0]]).repeat(4, 1)
    swing_peak = torch.tensor([[0.05, 0.0, 0.0, 0.0]]).repeat(4, 1)
    env.reset_to(qpos, qvel, task_state={"command": command, "feet_air_time": air_time, "swing_peak": swing_peak})
    landing = torch.zeros(4, 4, dtype=torch.bool)
    landing[:, 0] = True
    terms = env.task.reward_terms(
        env.physics,
        torch.zeros(4, 12, dtype=torch.float64),
        env.task_state,
        landing,
        landing,
        torch.zeros(4, dtype=torch.bool),
    )
    torch.testing.assert_close(terms["feet_air_time"], torch.full((4,), 0.3 - 0.1, dtype=torch.float64))
    torch.testing.assert_close(terms["feet_height"], torch.full((4,), (0.05 / 0.1 - 1) ** 2, dtype=torch.float64))
    # One env step: the landing foot's air time (+dt) is rewarded, then the timers of feet on the floor restart.
    action = torch.full((4, 12), 0.1)
    env.step(action)
    state = env.task_state
    assert state["last_contact"].all() and (state["feet_air_time"] == 0).all() and (state["swing_peak"] == 0).all()
    torch.testing.assert_close(state["last_act"], action.double())


def test_command_resampling_statistics():
    env = make_task_env("Go1JoystickFlatTerrain", num_envs=2)
    generator = torch.Generator().manual_seed(3)
    num = 200_000
    amplitude = torch.tensor(COMMAND_AMPLITUDE, dtype=torch.float64)
    state = env.task.initial_state(generator, num, env.physics)
    initial = state["command"]
    assert (initial.abs() <= amplitude).all()
    torch.testing.assert_close(initial.abs().mean(0), amplitude / 2, atol=0.01, rtol=0)  # U(-a, a)
    # Time to the next command ~ Exp(mean 5 s), rounded to 20 ms control steps.
    assert state["steps_until_next_cmd"].double().mean().item() == pytest.approx(250, rel=0.02)
    old = torch.tensor([[1.0, 0.5, -1.0]], dtype=torch.float64).repeat(num, 1)
    new = env.task.resample_command(generator, old)
    kept = new == old
    zeroed = new == 0
    replaced = ~kept & ~zeroed
    nonzero = torch.tensor(COMMAND_NONZERO_PROBABILITY, dtype=torch.float64)
    torch.testing.assert_close(kept.double().mean(0), torch.full((3,), 0.5, dtype=torch.float64), atol=0.005, rtol=0)
    torch.testing.assert_close(zeroed.double().mean(0), 0.5 * (1 - nonzero), atol=0.005, rtol=0)
    for axis in range(3):
        values = new[replaced[:, axis], axis]
        assert values.abs().max() <= amplitude[axis]
        assert values.mean().abs() < 0.02
        assert values.abs().mean().item() == pytest.approx(amplitude[axis].item() / 2, rel=0.03)


def test_autoreset_replaces_task_state_only_in_finished_worlds():
    env = make_task_env("Go1JoystickFlatTerrain", num_envs=4, obs_noise_level=0.0)
    qpos, qvel = home_state(env)
    qpos[0, 2], qpos[0, 3:7] = 0.5, torch.tensor([0.0, 1.0, 0.0, 0.0])  # world 0 upside down: terminates
    command = torch.tensor([[1.0, 0.5, 0.25]]).repeat(4, 1)
    timer = torch.full((4,), 400, dtype=torch.int64)
    env.reset_to(qpos, qvel, task_state={"command": command, "steps_until_next_cmd": timer})
    action = torch.full((4, 12), 0.2)
    td = env.step(action)
    assert td["terminated"].tolist() == [True, False, False, False]
    state = env.task_state
    assert (state["command"][1:] == command[1:].double()).all() and (state["steps_until_next_cmd"][1:] == 399).all()
    assert (state["last_act"][1:] == action[1:].double()).all()
    assert not torch.equal(state["command"][0], command[0].double()) and (state["last_act"][0] == 0).all()
    assert state["steps_until_next_cmd"][0] != 399
    torch.testing.assert_close(td["obs"][0, 45:], state["command"][0].float())  # the new episode's command


def test_reset_to_task_state_and_option_errors(joystick):
    qpos, qvel = home_state(joystick)
    with pytest.raises(ValueError, match=r"has no task state 'cmd'; valid: \['command'"):
        joystick.reset_to(qpos, qvel, task_state={"cmd": torch.zeros(4, 3)})
    with pytest.raises(ValueError, match=r"task_state\['command'\] must have shape \(4, 3\)"):
        joystick.reset_to(qpos, qvel, task_state={"command": torch.zeros(4, 2)})
    with pytest.raises(ValueError, match="obs_noise_level must be >= 0"):
        make_task_env("Go1JoystickFlatTerrain", obs_noise_level=-1.0)
    with pytest.raises(ValueError, match="option perturbations must be bool, got 'yes'"):
        make_task_env("Go1JoystickFlatTerrain", perturbations="yes")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['perturbations'\] for task Go1Getup"):
        make_task_env("Go1Getup", perturbations=True)


def test_tracking_error_is_the_command_minus_the_imu_velocities(joystick):
    env = joystick
    qpos, qvel = home_state(env)
    qvel[:, 0], qvel[:, 1], qvel[:, 5] = 0.5, 0.2, 0.5  # trunk at yaw 0: world frame = trunk frame
    command = torch.tensor([[1.0, 0.2, 0.5], [0.0, 0.0, 0.0], [-1.0, 0.0, 1.0], [0.5, 0.2, 0.5]])
    env.reset_to(qpos, qvel, task_state={"command": command})
    # The IMU site sits at r = (-0.01592, -0.06659, -0.00617) m from the trunk frame: it moves at v + w x r,
    # (0.5 + 0.5 * 0.06659, 0.2 - 0.5 * 0.01592) = (0.533295, 0.19204) m/s; the gyro reads the 0.5 rad/s yaw rate.
    measured = torch.tensor([0.533295, 0.19204, 0.5], dtype=torch.float64)
    expected = (command.double() - measured).abs()
    error = env.task.command_tracking_error(env.physics, env.task_state)
    torch.testing.assert_close(error, expected, atol=1e-5, rtol=0)


def test_pushes_follow_playgrounds_half_sine_schedule():
    env = make_task_env("Go1JoystickFlatTerrain", num_envs=2, perturbations=True, obs_noise_level=0.0)
    qpos, qvel = home_state(env)
    schedule = {
        "steps_until_next_pert": torch.tensor([3, 1000]),
        "pert_duration_seconds": torch.full((2,), 0.1, dtype=torch.float64),
        "pert_duration": torch.tensor([5, 5]),
        "pert_mag": torch.full((2,), 2.0),
    }
    env.reset_to(qpos, qvel, task_state=schedule)
    trunk, mass = env.physics.mj_model.body("trunk").id, env.physics.mj_model.body_subtreemass[1]
    flags, forces, observed = [], [], []
    for _ in range(10):
        td = env.step(torch.zeros(2, 12))
        forces.append(env.physics.xfrc_applied[:, trunk].clone())
        flags.append(td["critic_obs"][:, -1].tolist())
        observed.append(td["critic_obs"][0, 119:122])
    # Steps 1-3 wait (the third arms a direction and raises the flag); steps 4-9 push with pert_steps 0..5,
    # the last one ends the push; step 10 waits again.
    assert [f[0] for f in flags] == [0, 0, 1, 1, 1, 1, 1, 1, 0, 0] and all(f[1] == 0 for f in flags)
    direction = env.task_state["pert_dir"][0]
    assert direction[2] == 0 and direction.norm().item() == pytest.approx(1.0)
    for step, pert_step in zip(range(3, 9), range(0, 6), strict=True):
        magnitude = 0.5 * math.sin(math.pi * pert_step * DT / 0.1) * mass * 2.0 / 0.1
        torch.testing.assert_close(forces[step][0, :3], magnitude * direction, atol=1e-9, rtol=1e-6)
        assert (forces[step][0, 3:] == 0).all()
    assert forces[5][0, :3].norm() > 100  # the peak: half the trunk's mass times 2 m/s over 0.1 s
    assert (torch.stack(forces)[[0, 1, 2, 9]] == 0).all() and (torch.stack(forces)[:, 1] == 0).all()
    for step in range(10):  # the critic sees the force applied during the step
        torch.testing.assert_close(observed[step], forces[step][0, :3].float())


def test_getup_reset_drops_sixty_percent_and_settles():
    env = make_task_env("Go1Getup", num_envs=32, reset_pool_size=64)
    start = env.task.sample_start(torch.Generator().manual_seed(0), 20_000, env.physics)
    dropped = start.qpos[:, 2] == 0.5
    assert dropped.double().mean().item() == pytest.approx(0.6, abs=0.015)
    torch.testing.assert_close(
        start.qpos[dropped, 3:7].norm(dim=-1), torch.ones(int(dropped.sum()), dtype=torch.float64), atol=1e-5, rtol=0
    )
    home = start.qpos[~dropped]
    assert (home[:, 7:] == torch.tensor(HOME_JOINTS, dtype=torch.float64)).all() and (home[:, 2] == 0.278).all()
    low, high = torch.as_tensor(env.physics.mj_model.jnt_range[1:]).T
    assert ((start.qpos[dropped, 7:] >= low) & (start.qpos[dropped, 7:] <= high)).all()
    # The pool holds settled starts: clock at 0, every trunk down from the 0.5 m drop (a free fall lasts 0.32 s
    # and ends at ~2 m/s) and most of them nearly still after Playground's 0.5 s.
    pool = env.start_states
    assert (pool["time"] == 0).all() and (pool["qpos"][:, 2] < 0.45).all()
    speed = pool["qvel"][:, :3].norm(dim=-1)
    assert speed.median() < 0.3 and speed.max() < 1.5
    joints_held = (pool["ctrl"] - pool["qpos"][:, 7:]).abs().amax(dim=-1)
    assert (joints_held < 0.5).float().mean() > 0.9  # ctrl = the initial joints, which the servos held


@pytest.mark.parametrize("name", ["Go1Handstand", "Go1Footstand"])
def test_stand_tasks_terminate_on_unwanted_contacts_and_falls(name):
    env = make_task_env(name, num_envs=3, obs_noise_level=0.0)
    qpos, qvel = home_state(env)
    qpos[1, 2] = 0.08  # trunk on the floor: the front calves and thighs touch it
    qpos[2, 2], qpos[2, 3:7] = 0.5, torch.tensor([0.0, 1.0, 0.0, 0.0])  # upside down in the air
    env.reset_to(qpos, qvel)
    assert env.task.unwanted_contact(env.physics).tolist() == [False, True, False]
    assert (env.physics.ctrl == torch.tensor(HOME_JOINTS, dtype=torch.float64)).all()
    td = env.step(torch.zeros(3, 12))
    assert td["terminated"].tolist() == [False, True, True]
    terms = env.task.reward_terms(env.physics)
    assert terms["contact"][0] == 1.0  # standing on its feet costs: a foot touches the floor


def test_stand_tasks_integrate_the_position_targets():
    env = make_task_env("Go1Handstand", num_envs=2, obs_noise_level=0.0)
    qpos, qvel = home_state(env)
    env.reset_to(qpos, qvel)
    action = torch.full((2, 12), 0.5)
    env.step(action)
    env.step(action)
    expected = torch.tensor(HOME_JOINTS, dtype=torch.float64) + 2 * 0.3 * 0.5
    torch.testing.assert_close(env.physics.ctrl, expected.expand(2, -1))


def test_handstand_reward_terms_at_home_and_in_a_handstand():
    for name, forward in (("Go1Handstand", -1.0), ("Go1Footstand", 1.0)):
        env = make_task_env(name, num_envs=2, obs_noise_level=0.0)
        qpos, qvel = home_state(env)
        pitch = -forward * math.pi / 2  # nose down for the handstand, up for the footstand
        qpos[1, 2] = 0.6
        qpos[1, 3:7] = torch.tensor([math.cos(pitch / 2), 0.0, math.sin(pitch / 2), 0.0])
        env.reset_to(qpos, qvel)
        terms = env.task.reward_terms(env.physics)
        # Level: the forward axis is horizontal, cos = 0 -> (0.5)^2; vertical the right way -> 1.
        torch.testing.assert_close(
            terms["orientation"], torch.tensor([0.25, 1.0], dtype=torch.float64), atol=1e-6, rtol=0
        )
        imu_height = env.task.torso_height(env.physics)[:, 0]
        desired = env.task.desired_height
        expected = torch.exp(-(desired - imu_height.clamp(max=desired)))
        torch.testing.assert_close(terms["height"], expected)
        assert terms["height"][1] == 1.0 and terms["pose"][0] == 0 and terms["dof_pos_limits"][0] == 0


def test_getup_reward_terms_upright_at_home():
    env = make_task_env("Go1Getup", num_envs=2, obs_noise_level=0.0)
    qpos, qvel = home_state(env)
    qvel[1, 8] = 2 * math.pi + 1.0  # a thigh 1 rad/s above the speed limit
    env.reset_to(qpos, qvel)
    action = torch.zeros(2, 12, dtype=torch.float64)
    terms = env.task.reward_terms(env.physics, action, env.task_state)
    torch.testing.assert_close(terms["orientation"], torch.ones(2, dtype=torch.float64), atol=1e-9, rtol=0)
    height = env.task.torso_height(env.physics)[0, 0].clamp(max=0.275)
    torch.testing.assert_close(terms["torso_height"][0], torch.exp(height) - 1)
    assert terms["posture"][0] == 1.0 and terms["dof_vel"][1].item() == pytest.approx(1.0)
    gate = float(0.275 - height < 0.005)
    assert terms["stand_still"][0] == gate
    torch.testing.assert_close(terms["dof_acc"], (env.physics.qacc[:, 6:] ** 2).sum(-1))


@pytest.mark.slow
@pytest.mark.warp
@pytest.mark.parametrize("solver_iterations", [None, 30])
def test_warp_matches_native_on_go1_joystick(solver_iterations, monkeypatch):
    """MuJoCo Warp (float32, CPU) vs native MuJoCo (float64) along a 20-step native trajectory.

    Both backends get the native state, ctrl and task state before every step, so each step is compared from
    the same start. With a converged solver (30 Newton iterations) the two agree on every step to float32
    precision: same sensors, observations, rewards and task-state updates. With Playground's single
    iteration the solver stops at different points in the two implementations whenever a foot lands
    (measured: 5 of 20 steps within 1e-3), so there only the rewards are held to a small gap.
    """
    if solver_iterations is not None:
        build_spec = Go1Task.build_spec

        def converged(task):
            spec = build_spec(task)
            spec.option.iterations = spec.option.ls_iterations = solver_iterations
            return spec

        monkeypatch.setattr(Go1Task, "build_spec", converged)
    native = make_task_env("Go1JoystickFlatTerrain", num_envs=4, obs_noise_level=0.0)
    warp = make_task_env("Go1JoystickFlatTerrain", num_envs=4, backend="warp", obs_noise_level=0.0)
    qpos, qvel = home_state(native)
    native.reset_to(qpos, qvel, task_state={"command": torch.tensor([[0.5, 0.0, 0.2]]).repeat(4, 1)})
    generator = torch.Generator().manual_seed(0)
    close_steps, reward_gaps = 0, []
    for _ in range(20):
        state = {name: value.clone() for name, value in native.task_state.items()}
        qpos, qvel, ctrl = (native.physics.qpos.clone(), native.physics.qvel.clone(), native.physics.ctrl.clone())
        before = [env.reset_to(qpos, qvel, ctrl, task_state=state)["critic_obs"] for env in (native, warp)]
        # All but the accelerometer (51:54), which holds contact forces of a solve from a cold start.
        for columns in (slice(0, 51), slice(54, 123)):
            torch.testing.assert_close(before[1][:, columns], before[0][:, columns], atol=1e-4, rtol=1e-4)
        action = (torch.rand(4, 12, generator=generator) * 2 - 1) * 0.5
        after = [env.step(action) for env in (native, warp)]
        reward_gaps.append((after[1]["reward"] - after[0]["reward"]).abs().max().item())
        relative = (after[1]["critic_obs"] - after[0]["critic_obs"]).abs() / (1 + after[0]["critic_obs"].abs())
        close_steps += int(relative.max() < 1e-3)
        assert torch.equal(native.task_state["last_act"].float(), warp.task_state["last_act"])
    if solver_iterations is None:
        assert max(reward_gaps) < 5e-3, reward_gaps  # rewards are ~0.01 per step here
    else:
        assert max(reward_gaps) < 1e-5 and close_steps == 20, (reward_gaps, close_steps)


def test_scene_keeps_meshes_with_a_menagerie_checkout(tmp_path, monkeypatch):
    """With MENAGERIE_ROOT the visual meshes load from there (here: stand-in boxes written as STL)."""
    assets = tmp_path / "unitree_go1" / "assets"
    assets.mkdir(parents=True)
    for name in ("trunk", "hip", "thigh_mirror", "calf", "thigh"):
        (assets / f"{name}.stl").write_bytes(tetrahedron_stl())
    monkeypatch.setenv("MENAGERIE_ROOT", str(tmp_path))
    env = make_task_env("Go1JoystickFlatTerrain", num_envs=1)
    assert env.physics.mj_model.nmesh == 5
    assert env.obs_dim == 48


def test_scene_keeps_meshes_from_a_prefetched_menagerie_package_cache(tmp_path, monkeypatch):
    """Without MENAGERIE_ROOT, meshes come from mujoco-menagerie's cache only when already fetched (no download)."""
    assets = tmp_path / "models" / "unitree_go1-0123" / "assets"
    assets.mkdir(parents=True)
    for name in ("trunk", "hip", "thigh_mirror", "calf", "thigh"):
        (assets / f"{name}.stl").write_bytes(tetrahedron_stl())
    cached = {"value": False}

    class Cache:  # the package's API: Cache().is_cached(robot), Cache().model_path(robot)
        def is_cached(self, robot):
            return cached["value"]

        def model_path(self, robot):
            return assets.parent

    package = types.SimpleNamespace(Cache=Cache, get=lambda name: name)
    monkeypatch.delenv("MENAGERIE_ROOT", raising=False)
    monkeypatch.setitem(sys.modules, "mujoco_menagerie", package)
    assert make_task_env("Go1JoystickFlatTerrain", num_envs=1).physics.mj_model.nmesh == 0  # not fetched
    cached["value"] = True
    assert make_task_env("Go1JoystickFlatTerrain", num_envs=1).physics.mj_model.nmesh == 5


def test_train_script_runs_go1_joystick_with_the_locomotion_cpu_preset(tmp_path):
    """A short CPU training run through scripts/train.py: setup, rollouts with task state, evaluation, checkpoint."""
    repo = Path(__file__).resolve().parent.parent
    command = [
        sys.executable,
        str(repo / "scripts" / "train.py"),
        "task=Go1JoystickFlatTerrain",
        "alg=locomotion_cpu",
        "alg.num_envs=8",
        "alg.num_steps=8",
        "alg.num_minibatches=2",
        "total_timesteps=256",
        "eval.num_envs=2",
        "+task.overrides.episode_length=20",
        "num_threads=1",
        "eval.interval=0.5",
        "checkpoint_interval=0.5",
        f"hydra.run.dir={tmp_path}",
    ]
    result = subprocess.run(
        command, cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)}, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert "task Go1JoystickFlatTerrain, device cpu, backend mujoco, 8 envs" in result.stdout
    assert "done: 256 env steps" in result.stdout and "no CUDA here" not in result.stdout
    rows = (tmp_path / "eval.csv").read_text().strip().splitlines()
    assert len(rows) >= 3  # header, the evaluation before training and at least one more
    assert list((tmp_path / "checkpoints").glob("*.pt"))
    evaluate = [sys.executable, str(repo / "scripts" / "evaluate.py"), f"checkpoint={tmp_path}", "episodes=2"]
    result = subprocess.run(
        [*evaluate, "command=[1.0,0,0]"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ | {"PYTHONPATH": str(repo)},
    )
    assert result.returncode == 0, result.stderr
    assert "tracking error (held [1, 0, 0]), mean |command - measured|: vx " in result.stdout
    assert "tracking slope" not in result.stdout  # a held command does not vary: no slope to report
    result = subprocess.run(
        [*evaluate, "command=[1.0,0]"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ | {"PYTHONPATH": str(repo)},
    )
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "evaluate.py: command must be [vx, vy, yaw rate]: three finite numbers, got [1.0, 0.0]"
    ]

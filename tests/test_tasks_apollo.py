"""The Apptronik Apollo joystick task: sizes and model, observation and critic layout at a hand-built state,
reward terms against hand-computed values, reset distribution (ctrl at 0), the exponential command schedule and
its per-component resampling, the gait clock held at a zero command, termination without a reward clip, graph
safety, warp parity and a training smoke run."""

import math

import mujoco
import pytest
import torch

from pqn_torch.envs.physics.base import sensor_slice
from pqn_torch.envs.tasks.locomotion.apollo import ApolloJoystickFlatTerrain

from task_testing import (
    check_gait_clock_holds_the_feet_down_at_a_zero_command,
    check_humanoid_step_makes_no_host_sync,
    check_humanoid_warp_matches_native,
    converge_solver,
    double,
    make_task_env,
    standing_state,
)
from training_testing import check_training_smoke_run

TASK = "ApolloJoystickFlatTerrain"
# The "knees_bent" keyframe: torso (3), neck (3), left arm, right arm (7 each), left leg, right leg (6 each).
LEFT_ARM, RIGHT_ARM = [0.2, 0.0, 0.1, -0.4, 0.0, 0.0, 0.0], [-0.2, 0.0, 0.1, -0.4, 0.0, 0.0, 0.0]
LEFT_LEG, RIGHT_LEG = [0.08, 0.1, -0.477, 1.033, -0.03, -0.537], [-0.08, -0.1, -0.477, 1.033, 0.03, -0.537]
HOME_JOINTS = [0.0] * 6 + LEFT_ARM + RIGHT_ARM + LEFT_LEG + RIGHT_LEG
HOME_HEIGHT = 1.01597
TORSO_YAW, LEFT_HIP_ROLL, LEFT_KNEE = 0, 21, 23


def home_state(env, height=HOME_HEIGHT):
    """Every world at the knees_bent pose, level, at rest ([N, 39], [N, 38] in the physics dtype)."""
    return standing_state(env, HOME_JOINTS, height)


@pytest.fixture(scope="module")
def clean():
    return make_task_env(TASK, num_envs=4, obs_noise_level=0.0, perturbations=False)


def terms_at(env):
    """The task's unscaled reward terms at the env's current state, zero action, nothing terminated."""
    num, physics = env.num_envs, env.physics
    return env.task.reward_terms(
        physics,
        torch.zeros(num, 32, dtype=torch.float64),
        env.task_state,
        env.task.feet_contact(physics),
        torch.zeros(num, 2, dtype=torch.bool),
        torch.zeros(num, dtype=torch.bool),
    )


def test_sizes_timing_and_model():
    env = make_task_env(TASK, num_envs=2)
    assert (env.obs_dim, env.critic_obs_dim, env.action_dim) == (112, 224, 32)
    assert env.episode_length == 1000 and env.ctrl_dt == 0.02 and env.task.substeps == 4
    model = env.physics.mj_model
    assert (model.nq, model.nv, model.nu, model.nmesh) == (39, 38, 32, 0)  # visual meshes dropped
    assert model.opt.timestep == 0.005 and model.opt.integrator == mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    assert (model.opt.iterations, model.opt.ls_iterations) == (3, 5)
    assert env.task.action_mapping.scale == 0.5 and env.task.home_keyframe == "knees_bent"
    keyframe = model.keyframe("knees_bent")
    assert keyframe.qpos[7:].tolist() == HOME_JOINTS and keyframe.ctrl.tolist() == HOME_JOINTS
    assert env.task.reward_clip is None and env.task.reward_term_names == (
        "tracking",
        "ang_vel_xy",
        "orientation",
        "feet_phase",
        "pose",
        "collision",
    )
    assert sum(size for _, size in env.task.observation_layout) == 112


def test_observation_and_critic_layout_at_a_known_state(clean):
    env = clean
    qpos, qvel = home_state(env)
    qpos[:, 7 + LEFT_KNEE] += 0.2
    qvel[:, 0], qvel[:, 6 + LEFT_KNEE] = 0.4, -1.5  # forward root speed, left knee speed
    command = double([[0.5, -0.2, 0.3]]).repeat(4, 1)
    phase = double([[0.3, -2.0]]).repeat(4, 1)
    td = env.reset_to(qpos, qvel, task_state={"command": command, "phase": phase})
    obs, critic = td["obs"][0], td["critic_obs"][0]
    forward = torch.tensor([0.4, 0.0, 0.0])
    down = torch.tensor([0.0, 0.0, -1.0])
    offset, speed = torch.zeros(32), torch.zeros(32)
    offset[LEFT_KNEE], speed[LEFT_KNEE] = 0.2, -1.5
    torch.testing.assert_close(obs[0:3], forward, atol=1e-5, rtol=0)  # local linvel
    torch.testing.assert_close(obs[3:6], torch.zeros(3), atol=1e-6, rtol=0)  # gyro
    torch.testing.assert_close(obs[6:9], down, atol=1e-6, rtol=0)  # gravity
    torch.testing.assert_close(obs[9:12], command[0].float())
    torch.testing.assert_close(obs[12:44], offset, atol=1e-6, rtol=0)
    torch.testing.assert_close(obs[44:76], speed, atol=1e-6, rtol=0)
    assert (obs[76:108] == 0).all()  # last action
    expected_phase = torch.tensor([math.cos(0.3), math.cos(-2.0), math.sin(0.3), math.sin(-2.0)])
    torch.testing.assert_close(obs[108:112], expected_phase)
    assert torch.equal(critic[:112], obs)
    torch.testing.assert_close(critic[112:115], torch.zeros(3), atol=1e-6, rtol=0)  # gyro
    torch.testing.assert_close(critic[115:118], down, atol=1e-6, rtol=0)
    torch.testing.assert_close(critic[118:121], forward, atol=1e-5, rtol=0)
    torch.testing.assert_close(critic[121:153], offset, atol=1e-6, rtol=0)
    torch.testing.assert_close(critic[153:185], speed, atol=1e-6, rtol=0)
    torch.testing.assert_close(critic[185:217], env.task.actuator_force(env.physics)[0].float())
    torch.testing.assert_close(critic[217:224], torch.tensor([0.0, 0.0, HOME_HEIGHT, 1.0, 0.0, 0.0, 0.0]))
    # Apollo's reset leaves ctrl at 0 (Playground's), not at the joint angles.
    env.reset()
    assert (env.physics.ctrl == 0).all()


def test_tracking_spin_and_tilt_terms(clean):
    env = clean
    qpos, qvel = home_state(env)
    qvel[0, 0:2] = double([0.3, 0.1])  # world 0 walks forward and left
    qvel[1, 3:5] = double([0.3, -0.2])  # world 1 rolls and pitches (angular velocity, trunk frame)
    roll = 0.3  # world 2 leans sideways
    qpos[2, 3:7] = double([math.cos(roll / 2), math.sin(roll / 2), 0.0, 0.0])
    command = double([[0.5, 0.4, 0.2]]).repeat(4, 1)
    env.reset_to(qpos, qvel, task_state={"command": command})
    terms = terms_at(env)
    linear = math.exp(-((0.5 - 0.3) ** 2 + (0.4 - 0.1) ** 2) / 0.25)
    turning = math.exp(-(0.2**2) / 0.25)
    assert terms["tracking"][0].item() == pytest.approx(linear + 0.5 * turning, rel=1e-5)
    assert terms["ang_vel_xy"][1].item() == pytest.approx(0.3**2 + 0.2**2, rel=1e-6)
    assert terms["ang_vel_xy"][0].item() == pytest.approx(0.0, abs=1e-12)
    assert terms["orientation"][2].item() == pytest.approx(math.sin(roll) ** 2, rel=1e-6)
    assert terms["orientation"][0].item() == pytest.approx(0.0, abs=1e-12)


def test_pose_weights_follow_the_command(clean):
    env = clean
    qpos, qvel = home_state(env)
    qpos[:, 7 + TORSO_YAW] += 0.1  # weight 5, or 1 at a zero command
    qpos[:, 7 + LEFT_HIP_ROLL] += 0.2  # weight 1, or 0.01 while |vy| > 0.3
    command = double([[0.0, 0.0, 0.0], [0.5, 0.2, 0.0], [0.5, -0.4, 0.0], [0.005, 0.0, 0.0]])
    env.reset_to(qpos, qvel, task_state={"command": command})
    pose = terms_at(env)["pose"]
    expected = [0.01 + 0.04, 5 * 0.01 + 0.04, 5 * 0.01 + 0.01 * 0.04, 0.01 + 0.04]
    torch.testing.assert_close(pose, double(expected))


def test_feet_phase_and_collision_terms(clean):
    env = clean
    qpos, qvel = home_state(env)
    qpos[1, 2] += 0.05  # world 1 5 cm up
    phase = double([[math.pi, math.pi], [math.pi, math.pi], [0.0, math.pi], [math.pi, math.pi]])
    env.reset_to(qpos, qvel, task_state={"phase": phase})
    # World 3: a hand touches its thigh (the contact sensor's reading written by hand).
    sensor = sensor_slice(env.physics.mj_model, "collision_l_hand_plate_collision_capsule_body_l_thigh_found")
    env.physics.sensordata[3, sensor] = 1.0
    terms = terms_at(env)
    data = mujoco.MjData(env.physics.mj_model)
    data.qpos[:] = qpos[0].numpy()
    mujoco.mj_kinematics(env.physics.mj_model, data)
    feet = [float(data.site(name).xpos[2]) for name in ("l_foot", "r_foot")]
    # Target height 0 at phase pi (feet down), the full 0.12 m swing at phase 0.
    at_home = math.exp(-(feet[0] ** 2 + feet[1] ** 2) / 0.01)
    lifted = math.exp(-((feet[0] + 0.05) ** 2 + (feet[1] + 0.05) ** 2) / 0.01)
    swinging = math.exp(-((feet[0] - 0.12) ** 2 + feet[1] ** 2) / 0.01)
    torch.testing.assert_close(terms["feet_phase"], double([at_home, lifted, swinging, at_home]), atol=1e-6, rtol=0)
    torch.testing.assert_close(terms["collision"], double([0.0, 0.0, 0.0, 1.0]))


def test_reset_distribution_and_push_speed():
    env = make_task_env(TASK, num_envs=2)
    generator = torch.Generator().manual_seed(0)
    num = 20_000
    state = env.task.initial_state(generator, num, env.physics)
    frequency = state["phase_dt"] / (2 * math.pi * 0.02)
    assert frequency.min() >= 1.25 and frequency.max() < 1.75
    half_widths = double([1.5, 0.8, 1.5])  # vx, vy, yaw rate; never zeroed at reset
    command = state["command"].abs()
    assert (command.max(0).values <= half_widths).all() and (command > 0).all()
    torch.testing.assert_close(command.mean(0), half_widths / 2, atol=0.02, rtol=0)
    # Exp(mean 5 s) until the next command: 250 control steps on average.
    assert state["steps_until_next_cmd"].min() >= 0
    assert state["steps_until_next_cmd"].double().mean().item() == pytest.approx(250, rel=0.03)
    assert "step" not in state
    start = env.task.sample_start(generator, num, env.physics)
    assert (start.qpos[:, 2] == HOME_HEIGHT).all()
    assert env.task.pushes.speed == (0.1, 2.0) and env.task.pushes.interval == (5.0, 10.0)


def test_command_resampling_per_component():
    env = make_task_env(TASK, num_envs=2)
    num = 40_000
    old = double([[1.0, 0.5, -1.0]]).repeat(num, 1)
    state = {"command": old.clone(), "steps_until_next_cmd": torch.ones(num, dtype=torch.int64)}
    state["steps_until_next_cmd"][: num // 2] = 3  # the first half is not due
    terminated = torch.zeros(num, dtype=torch.bool)
    env.task.update_command(state, terminated, torch.Generator().manual_seed(1))
    waiting, due = state["command"][: num // 2], state["command"][num // 2 :]
    assert torch.equal(waiting, old[: num // 2]) and (state["steps_until_next_cmd"][: num // 2] == 2).all()
    kept = due == old[num // 2 :]
    zero = due == 0
    replaced = ~kept & ~zero
    # Each component kept with probability 0.5, else a new draw that is non-zero with probability (0.9, 0.25, 0.5).
    torch.testing.assert_close(kept.double().mean(0), double([0.5] * 3), atol=0.01, rtol=0)
    nonzero = replaced.double().sum(0) / (~kept).double().sum(0)
    torch.testing.assert_close(nonzero, double([0.9, 0.25, 0.5]), atol=0.015, rtol=0)
    half_widths = double([1.5, 0.8, 1.5])
    assert ((due.abs() <= half_widths) | kept).all()
    assert state["steps_until_next_cmd"][num // 2 :].double().mean().item() == pytest.approx(250, rel=0.03)


def test_gait_clock_holds_the_feet_down_at_a_zero_command(clean):
    check_gait_clock_holds_the_feet_down_at_a_zero_command(clean, home_state)


def test_fall_terminates_unclipped_and_autoreset_replaces_task_state_only_there():
    env = make_task_env(TASK, num_envs=3, obs_noise_level=0.0, perturbations=False)
    qpos, qvel = home_state(env)
    roll = 2.0  # world 0 lies on its side, past horizontal: tilt cost sin(2)^2 = 0.83, feet far above the floor
    qpos[0, 2], qpos[0, 3:7] = 0.6, double([math.cos(roll / 2), math.sin(roll / 2), 0.0, 0.0])
    command = double([[1.5, 0.8, 1.5]]).repeat(3, 1)  # far from standing still: tracking pays ~0
    countdown = torch.tensor([40, 40, 40])
    env.reset_to(qpos, qvel, task_state={"command": command, "steps_until_next_cmd": countdown})
    td = env.step(torch.full((3, 32), 0.2))
    assert td["terminated"].tolist() == [True, False, False]
    assert td["reward"][0].item() < -0.01  # the tilt cost, not clipped at 0
    state = env.task_state
    assert (state["command"][1:] == command[1:]).all() and (state["steps_until_next_cmd"][1:] == 39).all()
    assert (state["phase"][0] == double([0.0, math.pi])).all()


def test_step_makes_no_host_sync_across_pushes_command_changes_and_episode_ends():
    check_humanoid_step_makes_no_host_sync(TASK, home_state, {"steps_until_next_cmd": torch.tensor([1, 3])})


def test_training_smoke_run(tmp_path):
    check_training_smoke_run(TASK, tmp_path)


@pytest.mark.slow
@pytest.mark.warp
def test_warp_matches_native_for_one_step(monkeypatch):
    converge_solver(monkeypatch, ApolloJoystickFlatTerrain, 30)
    qpos, qvel = home_state(make_task_env(TASK, num_envs=2))
    qvel[:, 0] = 0.3
    check_humanoid_warp_matches_native(TASK, qpos, qvel, command_clock="steps_until_next_cmd")

"""The Booster T1 joystick tasks: sizes and model, observation layout at a hand-built state, reward terms against
hand-computed values, reset distribution, the gait clock held at a zero command, pushes, termination and
autoreset, graph safety, warp parity and a training smoke run. The template's shared mechanics (command clock,
push schedule) are tested in depth on Berkeley and G1."""

import math

import mujoco
import pytest
import torch

from pqn_torch.envs.tasks.locomotion.t1 import T1JoystickFlatTerrain

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

FLAT, ROUGH = "T1JoystickFlatTerrain", "T1JoystickRoughTerrain"
# The "home" keyframe: head (2), left arm, right arm (4 each), waist, left leg, right leg (6 each).
LEG = [-0.2, 0.0, 0.0, 0.4, -0.2, 0.0]
HOME_JOINTS = [0.0, 0.0] + [0.0, -1.4, 0.0, -0.4] + [0.0, 1.4, 0.0, 0.4] + [0.0] + LEG * 2
HOME_HEIGHT = 0.665  # the flat scene's keyframe
LEFT_HIP_ROLL, LEFT_KNEE = 12, 14


def home_state(env, height=HOME_HEIGHT):
    """Every world at the home pose, level, at rest ([N, 30], [N, 29] in the physics dtype)."""
    return standing_state(env, HOME_JOINTS, height)


def feet_sideways_distance(model: mujoco.MjModel, qpos: torch.Tensor) -> float:
    """|y_left - y_right| of the foot sites at ``qpos`` (facing +x), from MuJoCo's own kinematics."""
    data = mujoco.MjData(model)
    data.qpos[:] = qpos.numpy()
    mujoco.mj_kinematics(model, data)
    return abs(float(data.site("left_foot").xpos[1] - data.site("right_foot").xpos[1]))


@pytest.fixture(scope="module")
def clean():
    return make_task_env(FLAT, num_envs=4, obs_noise_level=0.0, perturbations=False)


def terms_at(env, landing=None):
    """The task's unscaled reward terms at the env's current state, zero action."""
    num = env.num_envs
    physics = env.physics
    return env.task.reward_terms(
        physics,
        torch.zeros(num, 23, dtype=torch.float64),
        env.task_state,
        env.task.feet_contact(physics),
        torch.zeros(num, 2, dtype=torch.bool) if landing is None else landing,
        torch.zeros(num, dtype=torch.bool),
    )


@pytest.mark.parametrize("name", [FLAT, ROUGH])
def test_sizes_timing_and_model(name):
    env = make_task_env(name, num_envs=2)
    assert (env.obs_dim, env.critic_obs_dim, env.action_dim) == (85, 180, 23)
    assert env.episode_length == 1000 and env.ctrl_dt == 0.02 and env.task.substeps == 10
    model = env.physics.mj_model
    assert (model.nq, model.nv, model.nu, model.nmesh) == (30, 29, 23, 0)  # visual meshes dropped
    assert model.opt.timestep == 0.002 and (model.opt.iterations, model.opt.ls_iterations) == (3, 5)
    assert model.opt.ccd_iterations == 10  # Playground's in-code edit
    assert env.task.action_mapping.scale == 1.0
    floor = model.geom("floor")
    expected_floor = mujoco.mjtGeom.mjGEOM_HFIELD if name == ROUGH else mujoco.mjtGeom.mjGEOM_PLANE
    assert floor.type[0] == expected_floor and model.nhfield == (name == ROUGH)
    assert env.task.reward_clip == (0.0, 1e4) and len(env.task.reward_term_names) == 15  # 14 + clipping


def test_observation_layout_and_four_sphere_feet(clean):
    env = clean
    qpos, qvel = home_state(env)
    qpos[1, 2] += 0.2  # world 1 lifted: no sphere touches the floor
    qpos[:, 7 + LEFT_KNEE] += 0.2
    qvel[:, 0] = 0.4
    command = double([[0.5, -0.2, 0.3]]).repeat(4, 1)
    phase = double([[0.3, -2.0]]).repeat(4, 1)
    td = env.reset_to(qpos, qvel, task_state={"command": command, "phase": phase})
    obs, critic = td["obs"], td["critic_obs"]
    torch.testing.assert_close(obs[0, 0:3], torch.tensor([0.4, 0.0, 0.0]), atol=1e-5, rtol=0)  # local linvel
    torch.testing.assert_close(obs[0, 6:9], torch.tensor([0.0, 0.0, -1.0]), atol=1e-6, rtol=0)  # gravity
    torch.testing.assert_close(obs[0, 9:12], command[0].float())
    offset = torch.zeros(23)
    offset[LEFT_KNEE] = 0.2
    torch.testing.assert_close(obs[0, 12:35], offset, atol=1e-6, rtol=0)
    assert (obs[:, 58:81] == 0).all()  # last action
    expected_phase = torch.tensor([math.cos(0.3), math.cos(-2.0), math.sin(0.3), math.sin(-2.0)])
    torch.testing.assert_close(obs[0, 81:85], expected_phase)
    assert torch.equal(critic[:, :85], obs)
    assert critic[0, 146].item() == pytest.approx(HOME_HEIGHT)  # root height
    # Feet contacts: any of a foot's four spheres on the floor.
    assert critic[:, 170:172].tolist() == [[1.0, 1.0], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]


def test_reward_terms_at_home_and_with_the_feet_too_close(clean):
    env = clean
    qpos, qvel = home_state(env)
    qpos[2:, 7 + LEFT_HIP_ROLL] = -0.15  # worlds 2, 3: the left foot swings inward
    yaw = 0.7  # world 3 also faces elsewhere: the stance is measured in the IMU's heading frame
    qpos[3, 3:7] = double([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])
    command = double([[0.0, 0.0, 0.0], [0.5, 0.2, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    env.reset_to(qpos, qvel, task_state={"command": command})
    terms = terms_at(env)
    torch.testing.assert_close(terms["alive"], double([1.0] * 4))
    torch.testing.assert_close(terms["collision"], double([0.0] * 4))
    # Home stance: the feet are 0.2125 m apart, beyond 0.2: no cost. Closer: 0.2 - distance.
    home = feet_sideways_distance(env.physics.mj_model, qpos[0])
    close = feet_sideways_distance(env.physics.mj_model, qpos[2])
    assert home > 0.2 and 0.1 < close < 0.2
    torch.testing.assert_close(terms["feet_distance"], double([0.0, 0.0, 0.2 - close, 0.2 - close]))
    # Hip roll/yaw deviation costs only with a lateral command; pose weighs the hip roll 1.
    torch.testing.assert_close(terms["joint_deviation_hip"], double([0.0] * 4))
    torch.testing.assert_close(terms["pose"], double([0.0, 0.0, 0.15**2, 0.15**2]))
    torch.testing.assert_close(terms["tracking_lin_vel"][1], torch.tensor(math.exp(-0.29 / 0.25), dtype=torch.float64))


def test_gait_clock_holds_the_feet_down_at_a_zero_command(clean):
    check_gait_clock_holds_the_feet_down_at_a_zero_command(clean, home_state)


def test_reset_distribution_and_push_speed():
    env = make_task_env(FLAT, num_envs=2)
    generator = torch.Generator().manual_seed(0)
    num = 20_000
    state = env.task.initial_state(generator, num, env.physics)
    frequency = state["phase_dt"] / (2 * math.pi * 0.02)
    assert frequency.min() >= 1.25 and frequency.max() < 1.75
    zero = (state["command"] == 0).all(-1)
    moving = state["command"][~zero].abs()
    half_widths = double([1.0, 0.8, 1.0])  # vx, vy, yaw rate
    assert (moving.max(0).values <= half_widths).all()
    torch.testing.assert_close(moving.mean(0), half_widths / 2, atol=0.01, rtol=0)
    start = env.task.sample_start(generator, num, env.physics)
    assert (start.qpos[:, 2] == HOME_HEIGHT).all()
    assert env.task.pushes.speed == (0.1, 1.0)


def test_fall_terminates_and_autoreset_replaces_task_state_only_there():
    env = make_task_env(FLAT, num_envs=3, obs_noise_level=0.0, perturbations=False)
    qpos, qvel = home_state(env)
    qpos[0, 2], qpos[0, 3:7] = 0.6, torch.tensor([0.0, 1.0, 0.0, 0.0])  # world 0 upside down
    command = double([[1.0, 0.5, 0.25]]).repeat(3, 1)
    env.reset_to(qpos, qvel, task_state={"command": command, "step": torch.full((3,), 40)})
    td = env.step(torch.full((3, 23), 0.2))
    assert td["terminated"].tolist() == [True, False, False]
    assert (td["reward"] >= 0).all()  # clipped at 0
    state = env.task_state
    assert (state["command"][1:] == command[1:]).all() and (state["step"][1:] == 41).all()
    assert (state["phase"][0] == double([0.0, math.pi])).all() and state["step"][0] == 0


def test_step_makes_no_host_sync_across_pushes_command_changes_and_episode_ends():
    check_humanoid_step_makes_no_host_sync(FLAT, home_state)


def test_training_smoke_run(tmp_path):
    check_training_smoke_run(FLAT, tmp_path)


@pytest.mark.slow
@pytest.mark.warp
def test_warp_matches_native_for_one_step(monkeypatch):
    converge_solver(monkeypatch, T1JoystickFlatTerrain, 30)
    qpos, qvel = home_state(make_task_env(FLAT, num_envs=2))
    qvel[:, 0] = 0.3
    check_humanoid_warp_matches_native(FLAT, qpos, qvel)

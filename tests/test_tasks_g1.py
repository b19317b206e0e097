"""The Unitree G1 joystick tasks: sizes and model, observation layout at a hand-built state, reward terms against
hand-computed values (sensor readings written by hand where a state would be hard to build), reset distribution,
command clock and pushes, termination and autoreset, graph safety, warp parity and a training smoke run."""

import math

import mujoco
import pytest
import torch

from pqn_torch.envs.physics.base import sensor_slice
from pqn_torch.envs.tasks.locomotion.g1 import RESTRICTED_JOINT_RANGE, G1JoystickFlatTerrain

from task_testing import (
    check_humanoid_step_makes_no_host_sync,
    check_humanoid_warp_matches_native,
    converge_solver,
    double,
    make_task_env,
    reset_humanoid_at_known_state,
    standing_state,
)
from training_testing import check_training_smoke_run

FLAT, ROUGH = "G1JoystickFlatTerrain", "G1JoystickRoughTerrain"
# The "knees_bent" keyframe: legs (hip pitch, roll, yaw, knee, ankle pitch, roll) x 2, waist (yaw, roll, pitch),
# arms (shoulder pitch, roll, yaw, elbow, wrist roll, pitch, yaw) x 2.
LEG = [-0.312, 0.0, 0.0, 0.669, -0.363, 0.0]
HOME_JOINTS = LEG * 2 + [0.0, 0.0, 0.073] + [0.2, 0.2, 0.0, 0.6, 0.0, 0.0, 0.0] + [0.2, -0.2, 0.0, 0.6, 0.0, 0.0, 0.0]
HOME_HEIGHT = 0.755  # the flat scene's keyframe
KNEE_HIGH, ANKLE_ROLL_HIGH = 2.8798, 0.2618
WAIST_PITCH = 0.073  # the torso leans forward by the home pose's waist pitch
PELVIS_IMU_DEPTH = 0.08339  # the imu_in_pelvis site below the pelvis origin


def home_state(env, height=HOME_HEIGHT):
    """Every world at the home pose, level, at rest ([N, 36], [N, 35] in the physics dtype)."""
    return standing_state(env, HOME_JOINTS, height)


def write_sensor(env, name: str, values) -> None:
    """Overwrite the reading of model sensor ``name`` in every world (a state that is hard to build by hand)."""
    env.physics.sensordata[:, sensor_slice(env.physics.mj_model, name)] = double(values)


@pytest.fixture(scope="module")
def clean():
    return make_task_env(FLAT, num_envs=4, obs_noise_level=0.0, perturbations=False)


def terms_at(env, contact=None, landing=None, terminated=None):
    """The task's unscaled reward terms at the env's current state, zero action."""
    num = env.num_envs
    physics = env.physics
    return env.task.reward_terms(
        physics,
        torch.zeros(num, 29, dtype=torch.float64),
        env.task_state,
        env.task.feet_contact(physics) if contact is None else contact,
        torch.zeros(num, 2, dtype=torch.bool) if landing is None else landing,
        torch.zeros(num, dtype=torch.bool) if terminated is None else terminated,
    )


@pytest.mark.parametrize("name", [FLAT, ROUGH])
def test_sizes_timing_and_model(name):
    env = make_task_env(name, num_envs=2)
    assert (env.obs_dim, env.critic_obs_dim, env.action_dim) == (103, 216, 29)
    assert env.episode_length == 1000 and env.ctrl_dt == 0.02 and env.task.substeps == 10
    model = env.physics.mj_model
    assert (model.nq, model.nv, model.nu, model.nmesh) == (36, 35, 29, 0)  # visual meshes dropped
    assert model.opt.timestep == 0.002 and (model.opt.iterations, model.opt.ls_iterations) == (3, 5)
    assert model.opt.integrator == mujoco.mjtIntegrator.mjINT_EULER
    # The model's own gains: Kp 75, ankle pitch 20, ankle roll and wrists 2; no edits in code.
    legs = [75, 75, 75, 75, 20, 2] * 2
    arm = [75, 75, 75, 75, 2, 2, 2]
    assert model.actuator_gainprm[:, 0].tolist() == legs + [75] * 3 + arm * 2
    floor = model.geom("floor")
    expected_floor = mujoco.mjtGeom.mjGEOM_HFIELD if name == ROUGH else mujoco.mjtGeom.mjGEOM_PLANE
    assert floor.type[0] == expected_floor and model.nhfield == (name == ROUGH)
    if name == ROUGH:  # Playground's 256 x 256 heightfield, 20 m x 20 m with 5 cm relief
        assert (model.hfield_nrow[0], model.hfield_ncol[0]) == (256, 256)
        assert model.hfield_size[0].tolist() == [10, 10, 0.05, 1.0]
    assert env.task.reward_clip is None and len(env.task.reward_term_names) == 15  # no clip, no clipping term
    torch.testing.assert_close(env.action_low, -torch.ones(29))
    torch.testing.assert_close(env.action_high, torch.ones(29))


def test_restricted_joint_range_narrows_joints_controls_and_soft_limits():
    env = make_task_env(FLAT, num_envs=2, restricted_joint_range=True)
    model = env.physics.mj_model
    expected = double(RESTRICTED_JOINT_RANGE)
    torch.testing.assert_close(double(model.jnt_range[1:]), expected)
    torch.testing.assert_close(double(model.actuator_ctrlrange), expected)
    assert expected[3].tolist() == [0.0, 1.57]  # left knee
    # Soft limits shrink the restricted range to 95 % about its middle: knee 0.785 +- 0.95 * 0.785.
    assert env.task.soft_high[3].item() == pytest.approx(0.785 + 0.95 * 0.785)
    default = make_task_env(FLAT, num_envs=2).physics.mj_model
    assert default.jnt_range[4].tolist() == [-0.087267, KNEE_HIGH]


def test_observation_layout_reads_the_pelvis_imu(clean):
    env = clean
    td = reset_humanoid_at_known_state(env, home_state)
    obs, critic = td["obs"][0], td["critic_obs"][0]
    sensors = env.physics.sensordata[0]
    model = env.physics.mj_model
    torch.testing.assert_close(obs[0:3], torch.tensor([0.4, 0.0, 0.0]), atol=1e-5, rtol=0)  # local linvel
    torch.testing.assert_close(obs[0:3], sensors[sensor_slice(model, "local_linvel_pelvis")].float())
    torch.testing.assert_close(obs[3:6], torch.zeros(3), atol=1e-6, rtol=0)  # gyro
    torch.testing.assert_close(obs[6:9], torch.tensor([0.0, 0.0, -1.0]), atol=1e-6, rtol=0)  # gravity, pelvis frame
    torch.testing.assert_close(obs[9:12], torch.tensor([0.5, -0.2, 0.3]))  # the command
    offset = torch.zeros(29)
    offset[3] = 0.2
    torch.testing.assert_close(obs[12:41], offset, atol=1e-6, rtol=0)  # joints - home
    velocities = torch.zeros(29)
    velocities[4] = -1.5
    torch.testing.assert_close(obs[41:70], velocities)
    assert (obs[70:99] == 0).all()  # last action
    expected_phase = torch.tensor([math.cos(0.3), math.cos(-2.0), math.sin(0.3), math.sin(-2.0)])
    torch.testing.assert_close(obs[99:103], expected_phase)
    assert torch.equal(critic[:103], obs)
    torch.testing.assert_close(critic[106:109], sensors[sensor_slice(model, "accelerometer_pelvis")].float())
    torch.testing.assert_close(critic[109:112], torch.tensor([0.0, 0.0, -1.0]), atol=1e-6, rtol=0)  # clean gravity
    torch.testing.assert_close(critic[112:115], torch.tensor([0.4, 0.0, 0.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(critic[118:147], offset, atol=1e-6, rtol=0)
    torch.testing.assert_close(critic[147:176], velocities)
    assert critic[176].item() == pytest.approx(HOME_HEIGHT)  # root height
    # reset_to puts the position targets at the joint angles: every actuator force Kp * (ctrl - q) is 0.
    assert (critic[177:206] == 0).all()
    torch.testing.assert_close(critic[206:208], torch.ones(2))  # both feet on the floor at home
    torch.testing.assert_close(critic[208:214], env.task.feet_velocity(env.physics)[0].flatten().float())
    torch.testing.assert_close(critic[214:216], torch.tensor([0.1, 0.0]))


def test_noise_is_uniform_with_playgrounds_scales():
    env = make_task_env(FLAT, num_envs=512, perturbations=False)
    qpos, qvel = home_state(env)
    command = {"command": torch.full((512, 3), 0.5)}
    obs = env.reset_to(qpos, qvel, task_state=command)["obs"]
    clean_env = make_task_env(FLAT, num_envs=512, obs_noise_level=0.0, perturbations=False)
    error = obs - clean_env.reset_to(qpos, qvel, task_state=command)["obs"]
    scales = [0.1] * 3 + [0.2] * 3 + [0.05] * 3 + [0.03] * 29 + [1.5] * 29  # linvel, gyro, gravity, joints, vel.
    columns = list(range(0, 9)) + list(range(12, 70))
    for column, scale in zip(columns, scales, strict=True):
        part = error[:, column]
        assert part.abs().max() <= scale + 1e-6 and part.abs().max() > 0.9 * scale, column
        assert part.std().item() == pytest.approx(scale / math.sqrt(3), rel=0.15), column  # U(-s, s)
    assert (error[:, 9:12] == 0).all() and (error[:, 70:] == 0).all()  # command, last action, phase exact


def test_reward_terms_standing_at_home(clean):
    env = clean
    qpos, qvel = home_state(env)
    command = double([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.5, 0.0, 0.0]])
    env.reset_to(qpos, qvel, task_state={"command": command})
    terms = terms_at(env)
    zero = torch.zeros(4, dtype=torch.float64)
    torch.testing.assert_close(terms["tracking_lin_vel"][:2], double([1.0, 1.0]))
    torch.testing.assert_close(terms["tracking_lin_vel"][2:], double([math.exp(-0.25 / 0.25)] * 2))
    # The torso leans forward by the waist pitch: its up axis is (sin p, 0, cos p), measured against [0.073, 0, 1].
    tilt = (math.sin(WAIST_PITCH) - 0.073) ** 2 + (math.cos(WAIST_PITCH) - 1.0) ** 2
    torch.testing.assert_close(terms["orientation"], double([tilt] * 4), atol=1e-9, rtol=0)
    for name in ("ang_vel_xy", "feet_air_time", "feet_slip", "stand_still", "termination", "collision"):
        torch.testing.assert_close(terms[name], zero, atol=1e-9, rtol=0, msg=name)
    for name in ("contact_force", "joint_deviation_knee", "joint_deviation_hip", "dof_pos_limits", "pose"):
        torch.testing.assert_close(terms[name], zero, atol=1e-9, rtol=0, msg=name)
    # The gait reward needs a command or a moving pelvis: none at rest with a zero command. With one, the left
    # foot should be at the top of its swing (0.15 m) and the right one down.
    left, right = env.task.feet_height(env.physics)[0].tolist()
    expected = math.exp(-((left - 0.15) ** 2 + right**2) / 0.01)
    torch.testing.assert_close(terms["feet_phase"], double([0.0, 0.0, expected, expected]))


def test_tracking_slip_pose_and_hip_knee_limit_terms(clean):
    env = clean
    qpos, qvel = home_state(env)
    qvel[:, 0], qvel[:, 1] = 0.5, 0.2  # root velocity in the world frame (= the pelvis frame at yaw 0)
    qvel[:, 3] = 0.3  # roll rate
    qpos[:, 7 + 1] += 0.1  # left hip roll
    qpos[:, 7 + 2] += 0.05  # left hip yaw
    qpos[:, 7 + 3] += 0.2  # left knee
    qpos[:, 7 + 11] = ANKLE_ROLL_HIGH * 0.95 + 0.1  # right ankle roll 0.1 rad beyond its soft limit
    command = double([[1.0, 0.2, 0.5], [1.0, -0.2, 0.5], [0.0, 0.0, 0.0], [0.0, 0.05, 0.0]])
    env.reset_to(qpos, qvel, task_state={"command": command})
    contact = torch.tensor([[True, True], [True, False], [False, False], [True, True]])
    terms = terms_at(env, contact=contact)
    # The pelvis IMU sits 0.08339 m below the root: the roll rate adds 0.3 * 0.08339 m/s to its sideways speed.
    vy = 0.2 + 0.3 * PELVIS_IMU_DEPTH
    # exp(-|c_xy - v_xy|^2 / 0.25): the vx error is 0.5 in every world.
    lin = [math.exp(-(0.25 + (c - vy) ** 2) / 0.25) for c in (0.2, -0.2, 0.0, 0.05)]
    torch.testing.assert_close(terms["tracking_lin_vel"], double(lin), atol=1e-6, rtol=0)
    torch.testing.assert_close(terms["tracking_ang_vel"][:2], double([math.exp(-0.25 / 0.25)] * 2), atol=1e-6, rtol=0)
    torch.testing.assert_close(terms["ang_vel_xy"], double([0.09] * 4), atol=1e-9, rtol=0)  # the torso's
    speed = math.hypot(0.5, vy)  # the pelvis IMU's, times the feet on the floor
    torch.testing.assert_close(terms["feet_slip"], double([2 * speed, speed, 0.0, 2 * speed]))
    # Hip roll counts unless the lateral command |vy| exceeds 0.1 (either way); hip yaw always counts.
    torch.testing.assert_close(terms["joint_deviation_hip"], double([0.05, 0.05, 0.15, 0.15]))
    torch.testing.assert_close(terms["joint_deviation_knee"], double([0.2] * 4))
    ankle = ANKLE_ROLL_HIGH * 0.95 + 0.1
    offsets = 0.1**2 + 0.05**2 + 0.2**2 + ankle**2  # every joint weighs 1
    torch.testing.assert_close(terms["pose"], double([offsets] * 4))
    torch.testing.assert_close(terms["dof_pos_limits"], double([0.1] * 4))
    # Zero command away from home: |q - q0|_1.
    torch.testing.assert_close(terms["stand_still"], double([0.0, 0.0, 0.1 + 0.05 + 0.2 + ankle, 0.0]))
    # The pelvis moves faster than 0.1 m/s: the gait reward pays even at the zero command of world 2.
    assert (terms["feet_phase"] > 0).all()


def test_feet_air_time_pays_landings_up_to_half_a_second_at_any_command(clean):
    env = clean
    qpos, qvel = home_state(env)
    command = double([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    air_time = double([[0.3, 0.7], [0.1, 0.4], [0.3, 0.3], [0.3, 0.3]])
    env.reset_to(qpos, qvel, task_state={"command": command, "feet_air_time": air_time})
    landing = torch.tensor([[True, True], [True, False], [True, True], [False, False]])
    terms = terms_at(env, landing=landing)
    # (air - 0.2) per landing foot, each capped at 0.3; Playground's G1 pays at a zero command too.
    torch.testing.assert_close(terms["feet_air_time"], double([0.1 + 0.3, -0.1, 0.2, 0.0]))


def test_contact_force_collision_and_self_contact_termination(clean):
    env = clean
    qpos, qvel = home_state(env)
    env.reset_to(qpos, qvel, task_state={"command": torch.zeros(4, 3)})
    write_sensor(env, "left_foot_force", [10.0, 0.0, -700.0])  # 200 N over the 500 N allowance
    write_sensor(env, "right_foot_force", [900.0, 0.0, 450.0])  # only the normal (z) part counts
    write_sensor(env, "right_hand_right_thigh_found", [1.0])
    terms = terms_at(env)
    torch.testing.assert_close(terms["contact_force"], double([200.0] * 4))
    torch.testing.assert_close(terms["collision"], double([1.0] * 4))
    assert not env.task.terminated(env.physics).any()
    write_sensor(env, "right_foot_left_foot_found", [1.0])
    assert env.task.terminated(env.physics).all()


def test_reset_distribution():
    env = make_task_env(FLAT, num_envs=2)
    generator = torch.Generator().manual_seed(0)
    num = 20_000
    start = env.task.sample_start(generator, num, env.physics)
    home = double(HOME_JOINTS)
    bent = home != 0
    ratio = start.qpos[:, 7:][:, bent] / home[bent]
    assert ratio.min() >= 0.5 and ratio.max() < 1.5 and (start.qpos[:, 7:][:, ~bent] == 0).all()
    torch.testing.assert_close(ratio.mean(0), torch.ones(int(bent.sum()), dtype=torch.float64), atol=0.01, rtol=0)
    assert (start.qpos[:, 2] == HOME_HEIGHT).all() and start.qpos[:, :2].abs().max() <= 0.5
    assert start.qvel[:, :6].abs().max() <= 0.5 and (start.qvel[:, 6:] == 0).all()
    pool = env.start_states  # ctrl = the (scaled) joint angles
    assert torch.equal(pool["ctrl"], pool["qpos"][:, 7:])
    state = env.task.initial_state(generator, num, env.physics)
    assert (state["phase"] == double([0.0, math.pi])).all() and (state["step"] == 0).all()
    frequency = state["phase_dt"] / (2 * math.pi * 0.02)
    assert frequency.min() >= 1.25 and frequency.max() < 1.5
    zero = (state["command"] == 0).all(-1)
    assert zero.double().mean().item() == pytest.approx(0.1, abs=0.01)
    moving = state["command"][~zero].abs()
    half_widths = double([1.0, 0.5, 1.0])  # vx, vy, yaw rate
    assert (moving.max(0).values <= half_widths).all()
    torch.testing.assert_close(moving.mean(0), half_widths / 2, atol=0.01, rtol=0)
    interval = state["push_interval_steps"]
    assert interval.min() >= 250 and interval.max() <= 500  # U(5, 10) s in 20 ms steps


def test_command_clock_and_pushes():
    env = make_task_env(FLAT, num_envs=2, obs_noise_level=0.0)
    qpos, qvel = home_state(env)
    command = double([[0.5, 0.0, 0.0]]).repeat(2, 1)
    state = {"command": command, "step": torch.tensor([500, 10]), "push_interval_steps": torch.tensor([1, 1000])}
    env.reset_to(qpos, qvel, task_state=state)
    td = env.step(torch.zeros(2, 29))
    assert not td["terminated"].any()
    state = env.task_state
    assert state["step"].tolist() == [0, 11]  # step 501 > 500: a new command, the count restarts
    assert (state["command"][0] != command[0]).any() and (state["command"][1] == command[1]).all()
    push = state["push"]  # world 0 is pushed every step, world 1 not yet
    assert push[0].norm().item() == pytest.approx(1.0) and (push[1] == 0).all()


def test_fall_terminates_and_autoreset_replaces_task_state_only_there():
    env = make_task_env(FLAT, num_envs=3, obs_noise_level=0.0, perturbations=False)
    qpos, qvel = home_state(env)
    qpos[0, 2], qpos[0, 3:7] = 0.6, torch.tensor([0.0, 1.0, 0.0, 0.0])  # world 0 upside down
    command = double([[1.0, 0.5, 0.25]]).repeat(3, 1)
    env.reset_to(qpos, qvel, task_state={"command": command, "step": torch.full((3,), 40)})
    action = torch.full((3, 29), 0.2)
    td = env.step(action)
    assert td["terminated"].tolist() == [True, False, False]
    # -100 per termination, unclipped: the fall's reward is negative.
    assert td["reward"][0].item() < -100 * 0.02 + 0.1
    state = env.task_state
    assert (state["command"][1:] == command[1:]).all() and (state["step"][1:] == 41).all()
    assert (state["last_act"][1:] == action[1:].double()).all() and (state["last_act"][0] == 0).all()
    assert (state["phase"][0] == double([0.0, math.pi])).all() and state["step"][0] == 0


def test_step_makes_no_host_sync_across_pushes_command_changes_and_episode_ends():
    check_humanoid_step_makes_no_host_sync(FLAT, home_state)


def test_training_smoke_run(tmp_path):
    check_training_smoke_run(FLAT, tmp_path)


@pytest.mark.slow
@pytest.mark.warp
def test_warp_matches_native_for_one_step(monkeypatch):
    converge_solver(monkeypatch, G1JoystickFlatTerrain, 30)
    qpos, qvel = home_state(make_task_env(FLAT, num_envs=2))
    qvel[:, 0] = 0.3
    check_humanoid_warp_matches_native(FLAT, qpos, qvel)

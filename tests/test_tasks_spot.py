"""The three Boston Dynamics Spot tasks: sizes and layouts, the joint-error history against a worked sequence,
the observed tilt, reward terms on hand-built states, the gait clock and swing-height targets, command
resampling, getup resets and terminations, graph safety, warp parity and a training smoke run."""

import math

import mujoco
import numpy as np
import pytest
import torch

from pqn_torch.cuda_graph import forbid_host_syncs
from pqn_torch.envs.tasks.locomotion.spot import GAIT_PHASES, SpotTask
from pqn_torch.envs.tasks.reward_terms import swing_height_curve
from pqn_torch.envs.tasks.robots import quat_multiply

from task_testing import converge_solver, double, make_task_env, random_actions, standing_state
from training_testing import check_training_smoke_run

SPOT_TASKS = {  # obs, critic obs, episode length, Kp, Kd, actuator kv (Playground 0.2.0)
    "SpotFlatTerrainJoystick": (81, 167, 1000, 300.0, 1.0, 20.0),
    "SpotGetup": (30, 30, 300, 400.0, 20.0, 0.0),
    "SpotJoystickGaitTracking": (69, 69, 1000, 400.0, 10.0, 20.0),
}
HOME_JOINTS = [0.0, 1.04, -1.8] * 4
HOME_HEIGHT = 0.46
FEET = ("FL", "FR", "HL", "HR")
DT = 0.02


def home_state(env):
    return standing_state(env, HOME_JOINTS, HOME_HEIGHT)


def pitched(qpos: torch.Tensor, pitch: float, yaw: float = 0.0) -> None:
    """Pitch the trunk of every world by ``pitch`` about the y-axis, then turn it by ``yaw`` about the world
    z-axis (in place)."""
    pitch_quat = double([math.cos(pitch / 2), 0.0, math.sin(pitch / 2), 0.0])
    yaw_quat = double([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])
    qpos[:, 3:7] = quat_multiply(yaw_quat, pitch_quat).to(qpos.dtype)


def sites_relative_to_imu(env, qpos: torch.Tensor) -> torch.Tensor:
    """Each foot site's world position minus the IMU site's at ``qpos`` (MuJoCo's forward kinematics), [4, 3]."""
    model = env.physics.mj_model
    data = mujoco.MjData(model)
    data.qpos[:] = qpos.numpy()
    mujoco.mj_kinematics(model, data)
    imu = data.site("imu").xpos
    return torch.tensor(np.stack([data.site(foot).xpos - imu for foot in FEET]))


@pytest.fixture(scope="module")
def joystick():
    return make_task_env("SpotFlatTerrainJoystick", num_envs=4, obs_noise_level=0.0)


@pytest.mark.parametrize("name", sorted(SPOT_TASKS))
def test_sizes_timing_gains_and_action_space(name):
    env = make_task_env(name, num_envs=2)
    obs_dim, critic_dim, episode_length, kp, kd, kv = SPOT_TASKS[name]
    assert (env.obs_dim, env.critic_obs_dim, env.action_dim) == (obs_dim, critic_dim, 12)
    assert env.episode_length == episode_length and env.ctrl_dt == DT and env.task.substeps == 5
    model = env.physics.mj_model
    assert (model.nq, model.nv, model.nu, model.nmesh) == (19, 18, 12, 0)  # visual meshes dropped
    assert model.opt.timestep == 0.004 and model.opt.iterations == 1 and model.opt.ls_iterations == 5
    assert (model.actuator_gainprm[:, 0] == kp).all() and (model.actuator_biasprm[:, 1] == -kp).all()
    assert (model.dof_damping[6:] == kd).all()
    # Playground edits Kp and the joint damping only: the feet-only model's actuator damping (kv 20) stays.
    assert (model.actuator_biasprm[:, 2] == -kv).all()
    torch.testing.assert_close(env.action_low, -torch.ones(12))
    torch.testing.assert_close(env.action_high, torch.ones(12))
    td = env.reset()
    assert td["obs"].shape == (2, obs_dim) and td["critic_obs"].shape == (2, critic_dim)
    assert sum(size for _, size in env.task.observation_layout) == obs_dim
    if name != "SpotGetup":  # Playground's joystick resets: the home keyframe at rest, targets 0
        pool = env.start_states
        home = torch.as_tensor(model.keyframe("home").qpos).expand(16, -1)
        assert torch.equal(pool["qpos"], home) and (pool["qvel"] == 0).all() and (pool["ctrl"] == 0).all()


def test_joystick_observation_layout_at_a_known_state(joystick):
    env = joystick
    qpos, qvel = home_state(env)
    qpos[:, 9] += 0.2  # FL knee
    qvel[:, 7] = -1.5  # FL hip pitch speed
    command = double([[0.5, -0.2, 0.3]]).repeat(4, 1)
    td = env.reset_to(qpos, qvel, task_state={"command": command})
    obs, critic = td["obs"][0].double(), td["critic_obs"][0].double()
    home = double(HOME_JOINTS)
    offset = torch.zeros(12, dtype=torch.float64)
    offset[2] = 0.2
    torch.testing.assert_close(obs[0:3], torch.zeros(3, dtype=torch.float64), atol=1e-6, rtol=0)  # gyro
    torch.testing.assert_close(obs[3:6], double([0.0, 0.0, 1.0]), atol=1e-6, rtol=0)  # up axis, IMU frame
    torch.testing.assert_close(obs[6:18], offset, atol=1e-6, rtol=0)  # joints - home
    # The history's newest frame: joint angles minus the targets, which are 0 at a reset (as Playground).
    torch.testing.assert_close(obs[18:30], home + offset, atol=1e-6, rtol=0)
    assert (obs[30:54] == 0).all()
    feet = sites_relative_to_imu(env, qpos[0])
    torch.testing.assert_close(obs[54:66], feet.flatten(), atol=1e-6, rtol=0)
    assert feet[0, 2] < -0.4  # the feet are below the trunk
    assert (obs[66:78] == 0).all()  # last action
    torch.testing.assert_close(obs[78:81], command[0], atol=1e-6, rtol=0)
    assert torch.equal(critic[:81], obs)
    torch.testing.assert_close(critic[87:90], double([0.0, 0.0, 1.0]), atol=1e-6, rtol=0)  # clean up axis
    torch.testing.assert_close(critic[96:108], offset, atol=1e-6, rtol=0)
    torch.testing.assert_close(critic[108:120], feet.flatten(), atol=1e-6, rtol=0)
    assert critic[120 + 1] == -1.5 and critic[120:132].abs().sum() == 1.5  # joint velocities
    assert critic[144:148].tolist() == [0, 0, 0, 0]  # last contacts
    assert (critic[160:] == 0).all()  # air time, push force


def test_observed_tilt_is_the_up_axis_in_the_imu_frame_whatever_the_heading(joystick):
    """Deviation from Playground (which observes the IMU's up axis in world coordinates, turning with the
    heading): pitched nose-down by 0.3 rad, the world's up axis in the IMU frame is (-sin 0.3, 0, cos 0.3)
    at every heading."""
    env = joystick
    readings = []
    for yaw in (0.0, 1.2):
        qpos, qvel = home_state(env)
        qpos[:, 2] = 1.0  # in the air
        pitched(qpos, 0.3, yaw)
        obs = env.reset_to(qpos, qvel)["obs"]
        readings.append(obs[:, 3:6].double())
    expected = double([-math.sin(0.3), 0.0, math.cos(0.3)]).expand(4, 3)
    for reading in readings:
        torch.testing.assert_close(reading, expected, atol=1e-6, rtol=0)
    world_up_axis = env.task.read(env.physics, "upvector")[0]  # Playground's reading differs at yaw 1.2
    assert (world_up_axis[:2] - torch.as_tensor(expected[0, :2])).abs().max() > 0.1


def test_joint_error_history_follows_a_worked_sequence(joystick):
    """Playground's roll: after each step the newest frame is that step's joint angles minus its targets, the
    older frames shift back one place and the oldest drops out; the reset frame has targets 0."""
    env = joystick
    qpos, qvel = home_state(env)
    env.reset_to(qpos, qvel)
    home = double(HOME_JOINTS)
    frames = [home.expand(4, 12)]  # the reset frame: joints - 0
    history = [env.task_state["qpos_error_history"].clone()]
    observed = []
    for action in random_actions(env, 4, seed=1):
        td = env.step(action)
        targets = (home + 0.3 * action.double()).clamp(env.task.ctrl_low, env.task.ctrl_high)
        torch.testing.assert_close(env.physics.ctrl, targets)
        frames.append(env.physics.qpos[:, 7:] - targets)
        history.append(env.task_state["qpos_error_history"].clone())
        observed.append(td["obs"][:, 18:54].double())
    zeros = torch.zeros(4, 12, dtype=torch.float64)
    torch.testing.assert_close(history[0], torch.cat([frames[0], zeros, zeros], -1))
    torch.testing.assert_close(history[1], torch.cat([frames[1], frames[0], zeros], -1))
    torch.testing.assert_close(history[2], torch.cat([frames[2], frames[1], frames[0]], -1))
    torch.testing.assert_close(history[4], torch.cat([frames[4], frames[3], frames[2]], -1))
    for step in range(4):
        torch.testing.assert_close(observed[step], history[step + 1], atol=1e-6, rtol=1e-6)


def test_autoreset_seeds_the_history_only_in_the_reset_worlds():
    env = make_task_env("SpotFlatTerrainJoystick", num_envs=3, obs_noise_level=0.0)
    qpos, qvel = home_state(env)
    qpos[0, 2] = 1.0
    pitched(qpos[:1], math.pi)  # world 0 upside down: it terminates and restarts
    state = {"qpos_error_history": torch.full((3, 36), 0.5, dtype=torch.float64)}
    env.reset_to(qpos, qvel, task_state=state)
    td = env.step(torch.zeros(3, 12))
    assert td["terminated"].tolist() == [True, False, False]
    history = env.task_state["qpos_error_history"]
    # The restarted world: the pool's start (home at rest, targets 0), then two zero frames.
    torch.testing.assert_close(history[0, :12], double(HOME_JOINTS))
    assert (history[0, 12:] == 0).all()
    # The others rolled: this step's error first, then the frames they had.
    targets = double(HOME_JOINTS)
    torch.testing.assert_close(history[1:, :12], env.physics.qpos[1:, 7:] - targets)
    assert (history[1:, 12:] == 0.5).all()
    torch.testing.assert_close(td["obs"][0, 18:54].double(), history[0], atol=1e-6, rtol=0)


def test_noise_scales_and_independent_feet_axes():
    """Uniform noise with Playground's scales; the observed joint angles and the history's newest frame are the
    same noisy reading; each foot's three position errors are drawn independently (a deviation: Playground
    draws one number per foot, so its x, y and z errors are proportional, correlation 1)."""
    n = 4096
    noisy = make_task_env("SpotFlatTerrainJoystick", num_envs=n)
    clean = make_task_env("SpotFlatTerrainJoystick", num_envs=n, obs_noise_level=0.0)
    qpos, qvel = home_state(noisy)
    command = {"command": torch.full((n, 3), 0.5, dtype=torch.float64)}
    observations = [env.reset_to(qpos, qvel, task_state=command)["obs"].double() for env in (noisy, clean)]
    error = observations[0] - observations[1]
    for columns, scale in ((slice(0, 3), 0.1), (slice(3, 6), 0.03), (slice(6, 18), 0.05)):
        part = error[:, columns]
        assert part.abs().max() <= scale + 1e-6 and part.abs().max() > 0.95 * scale
        assert part.std().item() == pytest.approx(scale / math.sqrt(3), rel=0.05)
    torch.testing.assert_close(error[:, 18:30], error[:, 6:18], atol=1e-6, rtol=0)  # the same reading
    assert (error[:, 30:54] == 0).all() and (error[:, 66:] == 0).all()
    feet = error[:, 54:66].reshape(n, 4, 3)
    for axis, scale in enumerate((0.01, 0.005, 0.02)):
        assert feet[..., axis].abs().max() <= scale + 1e-6
        assert feet[..., axis].std().item() == pytest.approx(scale / math.sqrt(3), rel=0.05)
    correlation = torch.corrcoef(torch.stack([feet[..., 0].flatten(), feet[..., 2].flatten()]))[0, 1]
    assert abs(correlation.item()) < 0.05


def test_joystick_reward_terms_on_hand_built_states(joystick):
    env, task = joystick, joystick.task
    qpos, qvel = home_state(env)
    qpos[:, 7] += 0.1  # FL hip abduction 0.1 rad off home
    qvel[:, 0], qvel[:, 2] = 0.3, 0.5  # forward and upward trunk speed
    command = double([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 0.0], [0.5, 0.0, 0.0]])
    air_time = double([0.3, 0.0, 0.05, 0.0]).repeat(4, 1)
    swing_peak = double([0.06, 0.0, 0.0, 0.0]).repeat(4, 1)
    last_act, last_last_act = torch.zeros(4, 12, dtype=torch.float64), torch.zeros(4, 12, dtype=torch.float64)
    last_act[:, 0], last_last_act[:, 0] = 0.2, 0.1
    given = {"command": command, "feet_air_time": air_time, "swing_peak": swing_peak, "last_act": last_act}
    env.reset_to(qpos, qvel, task_state={**given, "last_last_act": last_last_act})
    action = torch.zeros(4, 12, dtype=torch.float64)
    action[:, 0] = 0.5
    landing = torch.tensor([[True, False, False, False]]).repeat(4, 1)
    contact = task.feet_contact(env.physics)
    terms = task.reward_terms(env.physics, action, env.task_state, contact, landing, torch.zeros(4, dtype=torch.bool))
    # Tracking: exp(-(0 - 0.3)^2 / 0.25) standing, exp(-(0.5 - 0.3)^2 / 0.25) moving; yaw rate 0 = command.
    expected = double([math.exp(-0.36), math.exp(-0.16), math.exp(-0.36), math.exp(-0.16)])
    torch.testing.assert_close(terms["tracking_lin_vel"], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(terms["tracking_ang_vel"], torch.ones(4, dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(terms["lin_vel_z"], torch.full((4,), 0.25, dtype=torch.float64), atol=1e-9, rtol=0)
    # Posture: exp(-10 * 0.1^2) for a zero command, 1 while moving.
    torch.testing.assert_close(terms["posture"], double([math.exp(-0.1), 1.0, math.exp(-0.1), 1.0]))
    # Action rate: (0.5 - 0.2)^2 + (0.5 - 0.4 + 0.1)^2.
    torch.testing.assert_close(terms["action_rate"], torch.full((4,), 0.09 + 0.04, dtype=torch.float64))
    # The FL foot lands after 0.3 s in the air with a 0.06 m peak: paid and charged only while moving.
    torch.testing.assert_close(terms["feet_air_time"], double([0.0, 0.2, 0.0, 0.2]))
    torch.testing.assert_close(terms["feet_height"], double([0.0, 0.25, 0.0, 0.25]))
    for name in ("orientation", "termination", "ang_vel_xy"):
        torch.testing.assert_close(terms[name], torch.zeros(4, dtype=torch.float64), atol=1e-9, rtol=0)
    force = task.actuator_force(env.physics)
    torch.testing.assert_close(terms["torques"], force.norm(dim=-1) + force.abs().sum(-1))


def test_joystick_terminates_when_tilted_past_the_threshold_and_resamples_commands_every_201_steps():
    env = make_task_env("SpotFlatTerrainJoystick", num_envs=3, obs_noise_level=0.0)
    qpos, qvel = home_state(env)
    qpos[:, 2] = 1.0
    for world, pitch in enumerate((0.5, 0.6, 0.0)):  # cos 0.5 = 0.878 stays, cos 0.6 = 0.825 falls
        pitched(qpos[world : world + 1], pitch)
    env.reset_to(qpos, qvel)
    assert env.task.fallen(env.physics).tolist() == [False, True, False]

    qpos, qvel = home_state(env)
    command = double([[0.3, 0.2, 0.1]]).repeat(3, 1)
    env.reset_to(qpos, qvel, task_state={"command": command, "step": torch.tensor([199, 0, 200])})
    env.step(torch.zeros(3, 12))
    assert env.task_state["step"].tolist() == [200, 1, 0]  # world 2 passed 200: a new command
    assert torch.equal(env.task_state["command"][:2], command[:2])
    assert not torch.equal(env.task_state["command"][2], command[2])
    env.step(torch.zeros(3, 12))
    assert env.task_state["step"].tolist() == [0, 2, 1] and not torch.equal(env.task_state["command"][0], command[0])

    commands = env.task.sample_command(torch.Generator().manual_seed(0), 20_000, env.physics.qpos)
    zero = (commands == 0).all(-1)
    assert zero.double().mean().item() == pytest.approx(0.1, abs=0.01)
    for axis, half_range in enumerate((1.0, 0.8, 1.0)):
        values = commands[~zero, axis]
        assert values.abs().max() <= half_range and values.abs().max() > 0.99 * half_range


def test_joystick_pushes_the_trunk_when_perturbations_are_on():
    env = make_task_env("SpotFlatTerrainJoystick", num_envs=2, obs_noise_level=0.0, perturbations=True)
    qpos, qvel = home_state(env)
    schedule = {
        "steps_until_next_pert": torch.tensor([1, 1000]),
        "pert_duration_seconds": torch.full((2,), 0.1, dtype=torch.float64),
        "pert_duration": torch.tensor([5, 5]),
        "pert_mag": torch.full((2,), 2.0),
    }
    env.reset_to(qpos, qvel, task_state=schedule)
    trunk = env.physics.mj_model.body("body").id
    forces = []
    for _ in range(4):
        td = env.step(torch.zeros(2, 12))
        forces.append(td["critic_obs"][:, 164:167].double())
        torch.testing.assert_close(forces[-1], env.physics.xfrc_applied[:, trunk, :3])
    mass = env.physics.mj_model.body_subtreemass[trunk]
    peak = 0.5 * math.sin(math.pi * 2 * DT / 0.1) * mass * 2.0 / 0.1  # the push's third step (pert_steps 2)
    assert forces[3][0].norm().item() == pytest.approx(peak, rel=1e-6) and (forces[3][1] == 0).all()


def test_gait_tracking_draws_gaits_and_advances_the_phase_clock():
    env = make_task_env("SpotJoystickGaitTracking", num_envs=2, obs_noise_level=0.0)
    state = env.task.initial_state(torch.Generator().manual_seed(0), 10_000, env.physics)
    counts = torch.bincount(state["gait"], minlength=5).double() / 10_000
    torch.testing.assert_close(counts, torch.full((5,), 0.2, dtype=torch.float64), atol=0.015, rtol=0)
    torch.testing.assert_close(state["phase"], double(GAIT_PHASES)[state["gait"]])
    frequency = state["gait_freq"]
    assert frequency.min() >= 0.5 and frequency.max() < 4.0
    torch.testing.assert_close(state["phase_dt"], 2 * math.pi * DT * frequency)
    assert state["foot_height"].min() >= 0.08 and state["foot_height"].max() < 0.4

    qpos, qvel = home_state(env)
    trot = {"gait": torch.tensor([0, 4]), "phase": double([GAIT_PHASES[0], GAIT_PHASES[4]])}
    clock = {"gait_freq": double([2.5, 1.0]), "phase_dt": double([0.1 * math.pi, 0.04 * math.pi])}
    height = {"foot_height": double([0.1, 0.3])}
    td = env.reset_to(qpos, qvel, task_state={**trot, **clock, **height})
    pi = math.pi
    torch.testing.assert_close(td["obs"][0, 58:62].double(), double([1.0, -1.0, -1.0, 1.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(td["obs"][:, 66:69].double(), double([[2.5, 0.0, 0.1], [1.0, 4.0, 0.3]]))
    td = env.step(torch.zeros(2, 12))
    # The step observes the phase it started with, then moves it on by 2 pi dt f, wrapped into [-pi, pi).
    torch.testing.assert_close(td["obs"][0, 58:62].double(), double([1.0, -1.0, -1.0, 1.0]), atol=1e-6, rtol=0)
    expected = double([[0.1 * pi, -0.9 * pi, -0.9 * pi, 0.1 * pi], [0.04 * pi] * 4])
    torch.testing.assert_close(env.task_state["phase"], expected)
    contact = env.task.feet_contact(env.physics).double()
    torch.testing.assert_close(td["obs"][:, 54:58].double(), contact)


def test_swing_height_targets_worked_by_hand():
    # x = (phase + pi) / 2 pi = 0, 0.1, 0.25, 0.5, 0.75: s = 2x rising, 2x - 1 falling; s^3 + 3 s^2 (1 - s).
    phase = double([[-math.pi, -0.8 * math.pi, -0.5 * math.pi, 0.0, 0.5 * math.pi]]).repeat(2, 1)
    heights = double([[0.1], [0.3]])
    expected = double([[0.0, 0.104, 0.5, 1.0, 0.5]]) * heights
    torch.testing.assert_close(swing_height_curve(phase, heights), expected)


def test_gait_reward_is_the_positive_terms_times_the_cost_factor():
    """Worked by hand, with the vertical-velocity cost applied to trot (a deviation: Playground's code applies it
    to bound and pronk only, against its own comment)."""
    env = make_task_env("SpotJoystickGaitTracking", num_envs=3, obs_noise_level=0.0)
    task = env.task
    qpos, qvel = home_state(env)
    qpos[:, 7] += 0.2  # FL hip abduction 0.2 rad off home: hip splay 0.04
    qvel[:, 2], qvel[:, 3] = 0.5, 0.2  # trunk rising at 0.5 m/s, rolling at 0.2 rad/s
    gait = torch.tensor([0, 3, 4])  # trot, bound, pronk
    state = {
        "gait": gait,
        "phase": double(GAIT_PHASES)[gait],
        "foot_height": double([0.1, 0.2, 0.3]),
        "command": double([[0.0, 0.0, 0.0]]).repeat(3, 1),
    }
    env.reset_to(qpos, qvel, task_state=state)
    terms = task.reward_terms(env.physics, env.task_state)
    torch.testing.assert_close(terms["costs"][:, 0], torch.full((3,), 0.04, dtype=torch.float64))  # 0.2^2
    torch.testing.assert_close(terms["costs"][:, 1], double([0.25, 0.0, 0.0]))
    torch.testing.assert_close(terms["costs"][:, 2], torch.full((3,), 0.04, dtype=torch.float64))
    feet_z = torch.stack([task.feet_height(env.physics)[i] for i in range(3)])
    targets = torch.stack(
        [
            torch.as_tensor([0.0 if offset == math.pi else h for offset in GAIT_PHASES[g]], dtype=torch.float64)
            for g, h in zip(gait.tolist(), (0.1, 0.2, 0.3), strict=True)
        ]
    )  # phase 0: the peak, phase pi: the floor
    torch.testing.assert_close(terms["feet_phase"], torch.exp(-((feet_z - targets) ** 2).sum(-1) / 0.1))
    reward, shares = task.total_reward(terms)
    positive = 0.5 * terms["tracking_lin_vel"] + 0.5 * terms["tracking_ang_vel"] + 2.0 * terms["feet_phase"]
    factor = torch.exp(0.2 * -0.5 * double([0.04 + 0.25 + 0.04, 0.08, 0.08]))
    torch.testing.assert_close(reward, DT * positive * factor)
    torch.testing.assert_close(sum(shares.values()), reward)
    assert (
        list(shares) == list(task.reward_term_names) == ["tracking_lin_vel", "tracking_ang_vel", "feet_phase", "costs"]
    )
    assert (shares["costs"] < 0).all()


def test_getup_reset_drops_sixty_percent_from_a_metre_and_settles():
    env = make_task_env("SpotGetup", num_envs=8, reset_pool_size=32)
    start = env.task.sample_start(torch.Generator().manual_seed(0), 20_000, env.physics)
    dropped = start.qpos[:, 2] == 1.0
    assert dropped.double().mean().item() == pytest.approx(0.6, abs=0.015)
    norms = start.qpos[dropped, 3:7].norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-5, rtol=0)
    # Uniform rotations: w is a coordinate of a uniform point on the 3-sphere, E|w| = 4 / (3 pi).
    assert start.qpos[dropped, 3].abs().mean().item() == pytest.approx(4 / (3 * math.pi), abs=0.01)
    home = start.qpos[~dropped]
    assert (home[:, 7:] == double(HOME_JOINTS)).all() and (home[:, 2] == HOME_HEIGHT).all()
    low, high = torch.as_tensor(env.physics.mj_model.actuator_ctrlrange).T
    assert ((start.qpos[dropped, 7:] >= low) & (start.qpos[dropped, 7:] <= high)).all()
    assert (start.qvel == 0).all()
    pool = env.start_states
    # The pool holds settled starts: clock at 0, every trunk below its start, targets at the initial joints
    # (home for the home starts, which stand still).
    assert (pool["time"] == 0).all() and (pool["qpos"][:, 2] < 0.95).all()
    standing = (pool["ctrl"] == double(HOME_JOINTS)).all(-1)
    assert 0 < standing.sum() < 32
    assert (pool["qpos"][standing, 2] - HOME_HEIGHT).abs().max() < 0.05
    assert ((pool["ctrl"] >= low) & (pool["ctrl"] <= high)).all()


def test_getup_reward_terms_and_termination():
    env = make_task_env("SpotGetup", num_envs=3, obs_noise_level=0.0)
    task = env.task
    qpos, qvel = home_state(env)
    qpos[1, 2] = 0.40
    roll = np.zeros(4)
    mujoco.mju_axisAngle2Quat(roll, np.array([1.0, 0.0, 0.0]), 0.2)
    qpos[1, 3:7] = torch.as_tensor(roll)
    low = float(env.physics.mj_model.actuator_ctrlrange[2, 0])
    qpos[2, 9] = low - 0.05  # FL knee past its lower limit
    env.reset_to(qpos, qvel)
    action = torch.zeros(3, 12, dtype=torch.float64)
    action[:, 0] = 0.5
    terms = task.reward_terms(env.physics, action)
    tilt = 2 - 2 * math.cos(0.2)  # |[0, 0, 1] - (0, sin 0.2, cos 0.2)|^2
    torch.testing.assert_close(terms["orientation"][:2], double([1.0, math.exp(-2 * tilt)]), atol=1e-9, rtol=0)
    torch.testing.assert_close(terms["torso_height"][:2], double([1.0, 1 - 0.06 / 0.46]))
    torch.testing.assert_close(terms["posture"][:2], double([1.0, 0.0]))  # tilted: not upright
    torch.testing.assert_close(terms["stand_still"][:2], double([math.exp(-0.125), 0.0]))
    assert terms["posture"][2].item() == pytest.approx(math.exp(-0.5 * (low - 0.05 + 1.8) ** 2))
    assert task.joints_out_of_range(env.physics).tolist() == [False, False, True]
    reward, shares = task.total_reward(terms)
    torch.testing.assert_close(reward[0], torch.tensor(DT * (3 + math.exp(-0.125)), dtype=torch.float64))
    transition = task.transition(env.physics, action, env.task_state, env.generator)
    assert transition.terminated.tolist() == [False, False, True]
    torch.testing.assert_close(transition.reward, reward)


@pytest.mark.parametrize("name", sorted(SPOT_TASKS))
def test_step_and_reset_make_no_host_sync(name):
    """Steps across a command change, pushes and episode ends, and a full reset, under ``forbid_host_syncs``."""
    options = {"perturbations": True} if name == "SpotFlatTerrainJoystick" else {}
    env = make_task_env(name, num_envs=2, episode_length=4, **options)
    env.host_shortcuts = False
    qpos, qvel = home_state(env)
    state = {"step": torch.tensor([200, 0])} if name != "SpotGetup" else {}
    if options:
        state["steps_until_next_pert"] = torch.tensor([1, 2])
    env.reset_to(qpos, qvel, task_state=state)
    with forbid_host_syncs():
        for action in random_actions(env, 6):
            env.step(action)
        env.reset()
    assert int(env.stats["episodes"]) == 2 * (6 // 4)


@pytest.mark.slow
@pytest.mark.warp
def test_warp_matches_native_on_spot_joystick(monkeypatch):
    """MuJoCo Warp (float32, CPU) vs native MuJoCo (float64), converged solver, from the same state, ctrl and task
    state before each of 10 steps: observations (with the history), rewards and task state agree."""
    converge_solver(monkeypatch, SpotTask, 30)
    options = {"num_envs": 2, "obs_noise_level": 0.0}
    native = make_task_env("SpotFlatTerrainJoystick", **options)
    warp = make_task_env("SpotFlatTerrainJoystick", backend="warp", **options)
    qpos, qvel = home_state(native)
    native.reset_to(qpos, qvel, task_state={"command": double([[0.5, 0.0, 0.2]]).repeat(2, 1)})
    for action in random_actions(native, 10, seed=2):
        state = {name: value.clone() for name, value in native.task_state.items()}
        physics = native.physics
        start = (physics.qpos.clone(), physics.qvel.clone(), physics.ctrl.clone())
        for env in (native, warp):
            env.reset_to(*start, task_state=state)
        after = [env.step(action * 0.5) for env in (native, warp)]
        assert (after[1]["reward"] - after[0]["reward"]).abs().max() < 1e-5
        relative = (after[1]["critic_obs"] - after[0]["critic_obs"]).abs() / (1 + after[0]["critic_obs"].abs())
        assert relative.max() < 1e-3, relative.max()
        for key in ("qpos_error_history", "feet_air_time", "last_contact", "swing_peak", "command"):
            torch.testing.assert_close(
                warp.task_state[key].double(), native.task_state[key].double(), atol=1e-4, rtol=0
            )


def test_training_smoke_run_on_spot_joystick(tmp_path):
    check_training_smoke_run("SpotFlatTerrainJoystick", tmp_path)

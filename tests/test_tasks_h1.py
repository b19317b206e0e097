"""The Unitree H1 gait-tracking tasks: sizes and model, the swing-height curve and the gait clock against values
worked by hand, observation histories against a recorded sequence, the feet's floor contact (Playground's
sensor-id defect fixed), reward terms on hand-built states, terminations, the command clock, graph safety, warp
parity and a training smoke run."""

import math

import mujoco
import pytest
import torch

from pqn_torch.cuda_graph import forbid_host_syncs
from pqn_torch.envs.physics.base import sensor_slice
from pqn_torch.envs.tasks import reward_terms
from pqn_torch.envs.tasks.locomotion.h1 import H1InplaceGaitTracking, gated_reward
from pqn_torch.envs.tasks.robots import quat_multiply

from task_testing import converge_solver, double, make_task_env, random_actions, standing_state
from training_testing import check_training_smoke_run

INPLACE, JOYSTICK = "H1InplaceGaitTracking", "H1JoystickGaitTracking"
# The "home" keyframe: legs (hip yaw, roll, pitch, knee, ankle) x 2, torso, arms (shoulder pitch, roll, yaw,
# elbow) x 2.
HOME_JOINTS = [0.0, 0.0, -0.267, 0.8, -0.543] * 2 + [0.0] + [0.0, 0.2, 0.0, 1.14] + [0.0, -0.2, 0.0, 1.14]
HOME_HEIGHT = 0.97
DT = 0.02
# Observation columns, inplace (186) and joystick (113, the command after the last action).
INPLACE_HISTORIES, INPLACE_TAIL = slice(63, 177), 177
JOYSTICK_COMMAND, JOYSTICK_HISTORIES, JOYSTICK_TAIL = slice(63, 66), slice(66, 104), 104


def home_state(env, height=HOME_HEIGHT):
    """Every world at the home pose, level, at rest ([N, 26], [N, 25] in the physics dtype)."""
    return standing_state(env, HOME_JOINTS, height)


def tilted_about_x(qpos: torch.Tensor, angle: float) -> None:
    """Turn the root of every world in ``qpos`` by ``angle`` about the world x axis, in place."""
    qpos[:, 3:7] = double([math.cos(angle / 2), math.sin(angle / 2), 0.0, 0.0])


@pytest.fixture(scope="module")
def inplace():
    return make_task_env(INPLACE, num_envs=4, obs_noise_level=0.0)


@pytest.fixture(scope="module")
def joystick():
    return make_task_env(JOYSTICK, num_envs=4, obs_noise_level=0.0)


@pytest.mark.parametrize(("name", "obs_dim"), [(INPLACE, 186), (JOYSTICK, 113)])
def test_sizes_timing_and_model(name, obs_dim):
    env = make_task_env(name, num_envs=2)
    assert (env.obs_dim, env.critic_obs_dim, env.action_dim) == (obs_dim, obs_dim, 19)
    assert sum(size for _, size in env.task.observation_layout) == obs_dim
    assert env.episode_length == 1000 and env.ctrl_dt == 0.02 and env.task.substeps == 5
    model = env.physics.mj_model
    assert (model.nq, model.nv, model.nu, model.nmesh) == (26, 25, 19, 0)  # visual meshes dropped
    assert model.opt.timestep == 0.004 and (model.opt.iterations, model.opt.ls_iterations) == (1, 5)
    # The model's own gains (legs 800, torso and arms 400), joint damping 1 and armature 0.1; no edits in code.
    assert model.actuator_gainprm[:, 0].tolist() == [800.0] * 10 + [400.0] * 9
    assert model.dof_damping[6:].tolist() == [1.0] * 19 and model.dof_armature[6:].tolist() == [0.1] * 19
    assert env.task.config.contacts_per_world == 12
    torch.testing.assert_close(env.action_low, -torch.ones(19))
    torch.testing.assert_close(env.action_high, torch.ones(19))
    mapping = env.task.action_mapping
    expected_mapping = (0.6, "home") if name == INPLACE else (0.3, "ctrl")
    assert (mapping.scale, mapping.reference, mapping.clip) == (*expected_mapping, True)
    assert env.task.config.obs_noise_level == (1.0 if name == INPLACE else 0.6)
    # In place: ctrl 0 at the start, as Playground (its targets do not read it). Joystick: the home joint angles.
    expected_ctrl = torch.zeros(19, dtype=torch.float64) if name == INPLACE else double(HOME_JOINTS)
    assert (env.start_states["ctrl"] == expected_ctrl).all()


@pytest.mark.parametrize("name", [INPLACE, JOYSTICK])
def test_observation_layout_at_a_known_state(name):
    env = make_task_env(name, num_envs=2, obs_noise_level=0.0)
    qpos, qvel = home_state(env)
    qpos[:, 7 + 3] += 0.2  # left knee
    qvel[:, 6 + 4] = -1.5  # left ankle
    qvel[:, 3] = 0.4  # rolling
    last = torch.linspace(-0.9, 0.9, 19, dtype=torch.float64).expand(2, 19)
    state = {
        "last_act": last,
        "phase": double([[0.3, -2.0]]).expand(2, 2),
        "gait_freq": double([1.5, 1.5]),
        "gait": torch.tensor([1, 1]),
        "foot_height": double([0.25, 0.25]),
        "command": double([[0.5, -0.2, 0.3]]).expand(2, 3),
    }
    if name == INPLACE:
        del state["command"]
    obs = env.reset_to(qpos, qvel, task_state=state)["obs"][0].double()
    torch.testing.assert_close(obs[0:3], double([0.4, 0.0, 0.0]), atol=1e-6, rtol=0)  # gyro
    torch.testing.assert_close(obs[3:6], double([0.0, 0.0, 1.0]), atol=1e-6, rtol=0)  # world up axis, IMU frame
    offset, velocities = torch.zeros(19, dtype=torch.float64), torch.zeros(19, dtype=torch.float64)
    offset[3], velocities[4] = 0.2, -1.5
    torch.testing.assert_close(obs[6:25], offset, atol=1e-6, rtol=0)
    torch.testing.assert_close(obs[25:44], velocities, atol=1e-6, rtol=0)
    torch.testing.assert_close(obs[44:63], last[0], atol=1e-6, rtol=0)
    tail = INPLACE_TAIL if name == INPLACE else JOYSTICK_TAIL
    if name == JOYSTICK:
        torch.testing.assert_close(obs[JOYSTICK_COMMAND], double([0.5, -0.2, 0.3]), atol=1e-6, rtol=0)
    phase = double([0.3, -2.0])
    torch.testing.assert_close(obs[tail : tail + 2], double([0.0, 1.0]))  # the left foot is lifted by the knee
    torch.testing.assert_close(
        obs[tail + 2 : tail + 6], torch.cat([torch.cos(phase), torch.sin(phase)]), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(obs[tail + 6 :], double([1.5, 1.0, 0.25]), atol=1e-6, rtol=0)
    assert tail + 9 == env.obs_dim


def test_observed_tilt_is_the_up_axis_in_the_imu_frame_whatever_the_heading(inplace):
    """Deviation from Playground (which observes the IMU's up axis in world coordinates, turning with the
    heading): pitched nose-down by 0.3 rad, the world's up axis in the IMU frame is (-sin 0.3, 0, cos 0.3) at
    every heading."""
    env = inplace
    pitch = torch.tensor([math.cos(0.15), 0.0, math.sin(0.15), 0.0], dtype=torch.float64)
    for yaw in (0.0, 1.2):
        qpos, qvel = home_state(env, height=1.2)  # in the air
        heading = torch.tensor([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)], dtype=torch.float64)
        qpos[:, 3:7] = quat_multiply(heading, pitch)
        obs = env.reset_to(qpos, qvel)["obs"]
        torch.testing.assert_close(
            obs[:, 3:6].double(), double([[-math.sin(0.3), 0.0, math.cos(0.3)]] * 4), atol=1e-6, rtol=0
        )
        world_axis = env.task.read(env.physics, "upvector")[0]  # Playground's reading
        expected_world = double([math.sin(0.3) * math.cos(yaw), math.sin(0.3) * math.sin(yaw), math.cos(0.3)])
        torch.testing.assert_close(world_axis, expected_world, atol=1e-9, rtol=0)


def test_noise_is_uniform_with_playgrounds_scales():
    scales = [0.2] * 3 + [0.05] * 3 + [0.01] * 19 + [1.5] * 19  # gyro, up axis, joint angles, joint velocities
    for name, level in ((INPLACE, 1.0), (JOYSTICK, 0.6)):
        noisy, clean = (make_task_env(name, num_envs=512, **options) for options in ({}, {"obs_noise_level": 0.0}))
        ones = torch.ones(512)
        state = {"gait": ones.long(), "gait_freq": ones, "foot_height": ones, "phase": torch.zeros(512, 2)}
        if name == JOYSTICK:
            state["command"] = torch.ones(512, 3)
        noisy_obs, clean_obs = (env.reset_to(*home_state(env), task_state=state)["obs"] for env in (noisy, clean))
        error = noisy_obs - clean_obs
        for column, scale in enumerate(scales):
            part = error[:, column]
            assert part.abs().max() <= level * scale + 1e-6 and part.abs().max() > 0.9 * level * scale, column
            assert part.std().item() == pytest.approx(level * scale / math.sqrt(3), rel=0.15), column  # U(-s, s)
        assert (error[:, 44:63] == 0).all() and (error[:, 66 if name == JOYSTICK else 63 :] == 0).all()


def test_swing_height_curve_matches_values_worked_by_hand():
    # x = (phase + pi) / 2pi; rising half: h (s^3 + 3 s^2 (1 - s)), s = 2x; falling half: h (1 - same), s = 2x - 1.
    phase = double([[-math.pi, -math.pi / 2], [0.0, math.pi / 2], [-math.pi / 3, 2 * math.pi / 3]])
    height = double([[0.3], [0.1], [0.27]])  # one height per world
    # s = 1/2 gives 1/8 + 3/8 = 1/2; s = 2/3 gives 8/27 + 12/27 = 20/27.
    expected = double([[0.0, 0.15], [0.1, 0.05], [0.27 * 20 / 27, 0.27 * 7 / 27]])
    torch.testing.assert_close(reward_terms.swing_height_curve(phase, height), expected)


def test_gait_phase_advances_and_wraps_every_step(inplace):
    env = inplace
    qpos, qvel = home_state(env)
    frequency = double([2.0, 2.0, 0.5, 4.0])
    state = {
        "gait": torch.tensor([0, 1, 0, 1]),
        "phase": double([[0.0, math.pi], [0.0, 0.0], [0.0, math.pi], [0.0, 0.0]]),
        "gait_freq": frequency,
        "phase_dt": 2 * math.pi * DT * frequency,
    }
    env.reset_to(qpos, qvel, task_state=state)
    observed = []
    for _ in range(13):
        observed.append(env.step(torch.zeros(4, 19))["obs"][:, INPLACE_TAIL + 2 : INPLACE_TAIL + 6])
    # World 0: 2 Hz moves 0.08 pi per 20 ms step; after 13 steps the left foot is at 1.04 pi, wrapped to -0.96 pi,
    # and the right foot at 2.04 pi, wrapped to 0.04 pi. World 2 (0.5 Hz) moves 0.02 pi per step.
    expected = double(
        [
            [-0.96 * math.pi, 0.04 * math.pi],
            [-0.96 * math.pi] * 2,
            [0.26 * math.pi, -0.74 * math.pi],
            [0.08 * math.pi] * 2,
        ]
    )
    torch.testing.assert_close(env.task_state["phase"], expected)
    # The observation of step 13 shows the phase before that step's update: 12 steps on.
    before = double([[0.96 * math.pi, -0.04 * math.pi]])
    torch.testing.assert_close(observed[-1][0], torch.cat([torch.cos(before), torch.sin(before)], -1)[0].float())
    assert not env.task_state["phase"].abs().gt(math.pi).any()


@pytest.mark.parametrize("name", [INPLACE, JOYSTICK])
def test_gait_parameters_drawn_per_episode(name):
    env = make_task_env(name, num_envs=2)
    state = env.task.initial_state(torch.Generator().manual_seed(0), 20_000, env.physics)
    frequency, height, gait = state["gait_freq"], state["foot_height"], state["gait"]
    assert height.min() >= 0.08 and height.max() < 0.4 and height.mean().item() == pytest.approx(0.24, abs=0.005)
    torch.testing.assert_close(state["phase_dt"], 2 * math.pi * DT * frequency)
    walking = gait == 0
    assert (state["phase"][walking] == double([0.0, math.pi])).all() and (state["phase"][~walking] == 0).all()
    assert (state["qvel_history"] == 0).all() and (state["qpos_error_history"] == 0).all()
    if name == INPLACE:  # walk or jump, 0.5-4 Hz
        assert frequency.min() >= 0.5 and frequency.max() < 4.0 and frequency.max() > 3.99
        assert set(gait.tolist()) == {0, 1} and walking.double().mean().item() == pytest.approx(0.5, abs=0.01)
    else:  # walk only, 0.5-2 Hz; commands U(-r, r) with components below 0.1 zeroed
        assert frequency.min() >= 0.5 and frequency.max() < 2.0 and frequency.max() > 1.99 and walking.all()
        command = state["command"]
        assert ((command == 0) | (command.abs() >= 0.1)).all()
        assert (command.abs().max(0).values <= double([1.5, 0.5, 1.0])).all()
        zero_share = (command == 0).double().mean(0)  # 0.1 / half-width of each component
        torch.testing.assert_close(zero_share, double([0.1 / 1.5, 0.2, 0.1]), atol=0.01, rtol=0)


def test_histories_roll_newest_first_and_are_seeded_at_reset(inplace):
    env = inplace
    qpos, qvel = home_state(env)
    qvel[:, 6 + 3] = 0.7  # left knee moving
    tilted_about_x(qpos[:1], 0.8)  # world 0 falls over at its first step (up axis z = cos 0.8 < 0.85)
    td = env.reset_to(qpos, qvel)
    home = double(HOME_JOINTS)
    low, high = (double(limits) for limits in env.physics.mj_model.actuator_ctrlrange.T)
    # Per world, the frames newest first: the reset frame (joint velocities; joint errors q - ctrl, ctrl = 0).
    velocities = [[qvel[world, 6:]] for world in range(4)]
    errors = [[qpos[world, 7:]] for world in range(4)]

    def expected(frames):
        padded = [world[:3] + [torch.zeros(19, dtype=torch.float64)] * (3 - len(world[:3])) for world in frames]
        return torch.stack([torch.cat(world) for world in padded])

    for step, action in enumerate([None, *random_actions(env, 3, seed=1)]):
        if action is not None:
            td = env.step(action)
            assert td["terminated"].tolist() == [step == 1, False, False, False]
            q, qd = env.physics.qpos[:, 7:], env.physics.qvel[:, 6:]
            targets = (home + 0.6 * action.double()).clamp(low, high)
            for world in range(4):
                if td["terminated"][world]:  # restarted at home, at rest, ctrl 0: a fresh history
                    velocities[world], errors[world] = [torch.zeros(19, dtype=torch.float64)], [home]
                else:
                    velocities[world].insert(0, qd[world].clone())
                    errors[world].insert(0, q[world] - targets[world])
        torch.testing.assert_close(env.task_state["qvel_history"], expected(velocities))
        torch.testing.assert_close(env.task_state["qpos_error_history"], expected(errors))
        observed = td["obs"][:, INPLACE_HISTORIES].double()
        torch.testing.assert_close(observed, torch.cat([expected(velocities), expected(errors)], -1), atol=1e-6, rtol=0)


def test_after_reset_seeds_only_the_reset_rows(inplace):
    env = inplace
    qpos, qvel = home_state(env)
    qvel[:, 6:] = torch.arange(19, dtype=torch.float64)
    env.reset_to(qpos, qvel)
    state = env.task_state
    for name in ("qvel_history", "qpos_error_history"):
        state[name].fill_(7.0)
    reset = torch.tensor([True, False, True, False])
    env.task.after_reset(env.physics, state, reset, env.generator)
    tail = torch.zeros(38, dtype=torch.float64)
    for world in (0, 2):
        torch.testing.assert_close(state["qvel_history"][world], torch.cat([qvel[world, 6:], tail]))
        torch.testing.assert_close(state["qpos_error_history"][world], torch.cat([qpos[world, 7:], tail]))
    assert (state["qvel_history"][[1, 3]] == 7.0).all() and (state["qpos_error_history"][[1, 3]] == 7.0).all()


def test_feet_contact_reads_the_contact_sensors(inplace):
    """Playground's step reads ``sensordata[sensor_id]`` (ids 11-16: the IMU's height, up axis and forward axis),
    which says both feet touch the floor whenever the robot is upright; the contact sensors' own entries say
    whether they do."""
    env = inplace
    qpos, qvel = home_state(env)
    qpos[2:, 2] += 0.3  # worlds 2 and 3 in the air
    qpos[1, 7 + 2], qpos[1, 7 + 3] = -0.8, 1.6  # world 1 lifts its left foot (hip pitch and knee bent)
    td = env.reset_to(qpos, qvel)
    # MuJoCo's own contact list: which floor contacts each world has.
    model, data = env.physics.mj_model, mujoco.MjData(env.physics.mj_model)
    floor = model.geom("floor").id
    feet = [[model.geom(f"{side}_foot{i}").id for i in (1, 2, 3)] for side in ("left", "right")]
    expected = []
    for world in range(4):
        data.qpos[:], data.qvel[:] = qpos[world].numpy(), qvel[world].numpy()
        mujoco.mj_forward(model, data)
        touching = {
            int(g) for c in data.contact[: data.ncon] for g in (c.geom1, c.geom2) if floor in (c.geom1, c.geom2)
        }
        expected.append([any(g in touching for g in foot) for foot in feet])
    assert expected == [[True, True], [False, True], [False, False], [False, False]]
    assert env.task.feet_contact(env.physics).tolist() == expected
    torch.testing.assert_close(td["obs"][:, INPLACE_TAIL : INPLACE_TAIL + 2], torch.tensor(expected).float())
    # The defective reading, for the record: every entry it reads is positive in every world.
    ids = [model.sensor(f"{side}_foot{i}_floor_found").id for side in ("left", "right") for i in (1, 2, 3)]
    assert ids == list(range(11, 17)) and ids != [
        sensor_slice(model, f"left_foot{i}_floor_found").start for i in (1, 2, 3)
    ]
    defective = env.physics.sensordata[:, ids].view(4, 2, 3).gt(0).any(-1)
    assert defective.all()


def test_gated_reward_and_its_shares_worked_by_hand():
    positive = double([2.0, 2.0])
    costs = {"a": double([-1.0, 0.0]), "b": double([-3.0, 0.0])}
    reward, shares = gated_reward(0.02, positive, costs)
    paid = 0.04
    torch.testing.assert_close(reward, double([paid * math.exp(-0.8), paid]))
    taken = paid * math.exp(-0.8) - paid  # what the costs take off, split 1 : 3
    torch.testing.assert_close(shares["a"], double([taken / 4, 0.0]))
    torch.testing.assert_close(shares["b"], double([3 * taken / 4, 0.0]))


def test_inplace_reward_terms_on_hand_built_states(inplace):
    env = inplace
    qpos, qvel = home_state(env)
    qvel[1, :2] = double([0.3, 0.4])  # world 1 slides: lin_vel 0.25
    qvel[2, 5] = 0.5  # world 2 turns about z: ang_vel 0.25
    qpos[3, 7 + 1], qpos[3, 7 + 10], qpos[3, 7 + 3] = 0.1, 0.2, 0.3  # world 3: hip roll (5), torso (2), knee (0)
    phase = double([[-math.pi, -math.pi]]).repeat(4, 1)  # both feet at the bottom of the cycle: target height 0
    env.reset_to(qpos, qvel, task_state={"phase": phase, "foot_height": double([0.2] * 4)})
    terms = env.task.reward_terms(env.physics, env.task_state)
    heights = env.task.feet_height(env.physics)
    feet_phase = torch.exp(-(heights**2).sum(-1) / 0.1)
    torch.testing.assert_close(terms["feet_phase"], feet_phase)
    assert heights[0].tolist() == pytest.approx([0.0207, 0.0207], abs=1e-4)  # the foot sites at home
    # Turning at 0.5 rad/s about z also moves the IMU, (-0.04452, -0.01891) m from the axis, at 0.5 * that radius.
    turning = (0.5 * 0.04452) ** 2 + (0.5 * 0.01891) ** 2
    torch.testing.assert_close(terms["lin_vel"], double([0.0, 0.25, turning, 0.0]), atol=1e-9, rtol=0)
    torch.testing.assert_close(terms["ang_vel"], double([0.0, 0.0, 0.25, 0.0]), atol=1e-9, rtol=0)
    torch.testing.assert_close(terms["pose"], double([0.0, 0.0, 0.0, 5 * 0.01 + 2 * 0.04]), atol=1e-9, rtol=0)
    # At the top of the swing the left foot should be at the foot height, the right one (half a cycle on) down.
    env.task_state["phase"].copy_(double([[0.0, -math.pi]]).repeat(4, 1))
    left, right = env.task.feet_height(env.physics)[0].tolist()
    expected = math.exp(-((left - 0.2) ** 2 + right**2) / 0.1)
    assert env.task.reward_terms(env.physics, env.task_state)["feet_phase"][0].item() == pytest.approx(expected)
    reward, shares = env.task.step_reward(env.physics, torch.zeros(4, 19), env.task_state)
    costs = -0.5 * (terms["ang_vel"] + terms["lin_vel"] + terms["pose"])
    fp = env.task.reward_terms(env.physics, env.task_state)["feet_phase"]
    torch.testing.assert_close(reward, DT * 2 * fp * torch.exp(0.2 * costs))
    torch.testing.assert_close(sum(shares.values()), reward)
    assert list(shares) == list(env.task.reward_term_names) == ["feet_phase", "ang_vel", "lin_vel", "pose"]


def test_joystick_reward_terms_and_action_rate_order(joystick):
    env = joystick
    qpos, qvel = home_state(env)
    qvel[:, 0] = 0.5  # forward at 0.5 m/s
    command = double([[1.0, 0.2, 0.3], [0.5, 0.0, 0.0], [0.0, 0.0, 0.0], [0.5, 0.0, 0.0]])
    last, before_last = torch.zeros(4, 19, dtype=torch.float64), torch.zeros(4, 19, dtype=torch.float64)
    last[2, 0], before_last[2, 0] = 0.5, 0.25
    env.reset_to(qpos, qvel, task_state={"command": command, "last_act": last, "last_last_act": before_last})
    action = torch.zeros(4, 19, dtype=torch.float64)
    action[1, 0] = 1.0
    terms = env.task.reward_terms(env.physics, action, env.task_state)
    # exp(-|c_xy - v_xy|^2 / 0.5), exp(-(c_yaw - w_z)^2 / 0.5)
    torch.testing.assert_close(
        terms["tracking_lin_vel"], double([math.exp(-0.29 / 0.5), 1.0, math.exp(-0.25 / 0.5), 1.0]), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(terms["tracking_ang_vel"][:2], double([math.exp(-0.09 / 0.5), 1.0]), atol=1e-9, rtol=0)
    # |a - a1|^2 + |a - 2 a1 + a2|^2: world 1 (a = 1) 1 + 1; world 2 (a1 = 0.5, a2 = 0.25) 0.25 + 0.5625.
    # Playground's order, |a1 - a2|^2 + |a1 - 2 a2 + a|^2, would give 0 + 1 and 0.0625 + 0.
    torch.testing.assert_close(terms["action_rate"], double([0.0, 2.0, 0.8125, 0.0]))
    torch.testing.assert_close(terms["pose"], torch.zeros(4, dtype=torch.float64), atol=1e-9, rtol=0)
    heights = env.task.feet_height(env.physics)
    phase = env.task_state["phase"]
    target = reward_terms.swing_height_curve(phase, env.task_state["foot_height"].unsqueeze(-1))
    torch.testing.assert_close(terms["feet_phase"], torch.exp(-((heights - target) ** 2).sum(-1) / 0.01))
    # The sum is clipped at 0 from below only. World 0 is far from its command (standing, asked for the largest)
    # and from its gait (both feet due at 0.4 m): the action rate's cost outweighs what it earns.
    far = {"command": double([[1.5, 0.5, 1.0], [0.0, 0.0, 0.0]] * 2), "phase": torch.zeros(4, 2, dtype=torch.float64)}
    env.reset_to(*home_state(env), task_state={**far, "foot_height": torch.full((4,), 0.4, dtype=torch.float64)})
    reward, shares = env.task.step_reward(env.physics, -torch.ones(4, 19, dtype=torch.float64), env.task_state)
    paid = DT * (3.5 * math.exp(-2.5 / 0.5) + 0.75 * math.exp(-1.0 / 0.5))  # feet_phase: exp(-0.29 / 0.01) ~ 0
    assert paid - DT * 0.01 * 38 < 0  # |a - a1|^2 + |a - 2 a1 + a2|^2 = 19 + 19
    assert reward[0].item() == 0.0 and shares["clipping"][0].item() == pytest.approx(DT * 0.01 * 38 - paid, abs=1e-6)
    assert reward[1].item() > 0 and shares["clipping"][1].item() == 0.0
    torch.testing.assert_close(sum(shares.values()), reward)


@pytest.mark.parametrize("name", [INPLACE, JOYSTICK])
def test_termination_joint_range_and_tilt(name):
    env = make_task_env(name, num_envs=4, obs_noise_level=0.0)
    qpos, qvel = home_state(env)
    tilted_about_x(qpos[1:2], 0.5)  # up axis z = cos 0.5 = 0.878: still upright
    tilted_about_x(qpos[2:3], 0.6)  # cos 0.6 = 0.825 < 0.85: fallen
    qpos[3, 7 + 3] = 2.1  # left knee beyond its range (2.05)
    env.reset_to(qpos, qvel)
    assert env.task.terminated(env.physics).tolist() == [False, False, True, True]


def test_joystick_stands_at_zero_actions():
    """Deviation from Playground, whose H1 joystick starts its integrated targets at 0: with zero actions the
    robot then straightens its legs, hops and falls (measured: at step 26); from targets at the start's joint
    angles it stands."""
    env = make_task_env(JOYSTICK, num_envs=2, obs_noise_level=0.0)
    env.reset()
    for _ in range(50):
        td = env.step(torch.zeros(2, 19))
        assert not td["done"].any()
    torch.testing.assert_close(env.physics.ctrl, double(HOME_JOINTS).expand(2, 19))
    assert env.task.read(env.physics, "upvector")[:, 2].min() > 0.99


def test_joystick_command_clock():
    env = make_task_env(JOYSTICK, num_envs=2, obs_noise_level=0.0)
    qpos, qvel = home_state(env)
    command = double([[0.5, 0.0, 0.0]]).repeat(2, 1)
    env.reset_to(qpos, qvel, ctrl=qpos[:, 7:], task_state={"command": command, "step": torch.tensor([500, 10])})
    td = env.step(torch.zeros(2, 19))
    assert not td["terminated"].any()
    torch.testing.assert_close(td["obs"][:, JOYSTICK_COMMAND], command.float())  # the command before the update
    state = env.task_state
    assert state["step"].tolist() == [0, 11]  # step 501 > 500: a new command, the count restarts
    assert (state["command"][0] != command[0]).any() and (state["command"][1] == command[1]).all()


@pytest.mark.parametrize("name", [INPLACE, JOYSTICK])
def test_step_and_reset_make_no_host_sync(name):
    env = make_task_env(name, num_envs=2, episode_length=3)
    env.host_shortcuts = False
    qpos, qvel = home_state(env)
    env.reset_to(qpos, qvel, task_state={"step": torch.tensor([499, 0])} if name == JOYSTICK else None)
    with forbid_host_syncs():
        for action in random_actions(env, 5):  # a command change (joystick) and an episode end with autoreset
            env.step(action)
        env.reset()
    assert int(env.stats["episodes"]) == 2


def test_training_smoke_run(tmp_path):
    check_training_smoke_run(INPLACE, tmp_path)


@pytest.mark.slow
@pytest.mark.warp
def test_warp_matches_native_on_inplace_for_two_steps(monkeypatch):
    """MuJoCo Warp (float32, CPU) and native MuJoCo (float64) from the same state, ctrl and task state: two steps
    agree on rewards, observations and task state (histories included)."""
    converge_solver(monkeypatch, H1InplaceGaitTracking, 30)
    native, warp = (make_task_env(INPLACE, 2, backend, obs_noise_level=0.0, seed=3) for backend in ("mujoco", "warp"))
    qpos, qvel = home_state(native)
    qvel[:, 0] = 0.3  # walking forward onto the feet
    state = {
        "gait": torch.tensor([0, 1]),
        "phase": double([[0.0, math.pi], [0.0, 0.0]]),
        "phase_dt": double([0.2, 0.3]),
    }
    for env in (native, warp):
        env.reset_to(qpos, qvel, task_state=state)
    for action in random_actions(native, 2, seed=4):
        after = [env.step(action * 0.5) for env in (native, warp)]
        reward_gap = (after[1]["reward"] - after[0]["reward"]).abs().max().item()
        relative = (after[1]["obs"] - after[0]["obs"]).abs() / (1 + after[0]["obs"].abs())
        assert reward_gap < 1e-4 and relative.max() < 1e-3, (reward_gap, relative.max())
    for key in ("phase", "last_act", "qvel_history", "qpos_error_history", "gait", "foot_height"):
        torch.testing.assert_close(warp.task_state[key].double(), native.task_state[key].double(), atol=1e-3, rtol=1e-3)

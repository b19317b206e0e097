"""BarkourJoystick: sizes and model edits, the home reset, the 15-frame observation history against a worked
sequence, reward terms on hand-built states (the stand_still fix), terminations, the command clock, kicks
worked by hand and their timing statistics, graph safety, warp parity and a training smoke run."""

import math

import pytest
import torch

from pqn_torch.envs.tasks.locomotion.barkour import NO_KICK, BarkourJoystick

from task_testing import (
    check_home_reset_with_an_empty_history,
    check_step_and_reset_make_no_host_sync,
    check_warp_follows_native,
    converge_solver,
    double,
    make_task_env,
    standing_state,
)
from training_testing import check_training_smoke_run

NAME = "BarkourJoystick"
HOME_JOINTS = [0.0, 0.5, 1.0] * 4
HOME_HEIGHT = 0.28
FRAME, HISTORY = 31, 15
DT = 0.02


def home_state(env):
    """Every world at the home keyframe, at rest ([N, 19], [N, 18] in the physics dtype)."""
    return standing_state(env, HOME_JOINTS, HOME_HEIGHT)


@pytest.fixture(scope="module")
def clean():
    return make_task_env(NAME, num_envs=3, obs_noise_level=0.0, perturbations=False)


def test_sizes_timing_and_model_edits():
    env = make_task_env(NAME, num_envs=2)
    assert (env.obs_dim, env.critic_obs_dim, env.action_dim) == (465, 465, 12)
    assert env.episode_length == 1000 and env.ctrl_dt == DT and env.task.substeps == 5
    assert env.task.config.perturbations  # Playground's kicks are always on
    model = env.physics.mj_model
    assert (model.nq, model.nv, model.nu, model.nmesh) == (19, 18, 12, 0)
    # The floor and the four foot spheres (named in code) are all the geoms left.
    assert [model.geom(i).name for i in range(model.ngeom)] == ["floor", *BarkourJoystick.feet]
    assert (model.actuator_gainprm[:, 0] == 35).all() and (model.actuator_biasprm[:, 1] == -35).all()
    assert (model.actuator_biasprm[:, 2] == -0.5).all()  # the actuators' own damping term is kept
    assert (model.dof_damping[6:] == 0.5239).all() and (model.dof_damping[:6] == 0).all()
    assert sum(size for _, size in env.task.observation_layout) == 465


def test_reset_is_the_home_keyframe_at_rest_with_an_empty_history():
    check_home_reset_with_an_empty_history(NAME, home_state, FRAME)


def test_frame_layout_at_a_known_state(clean):
    qpos, qvel = home_state(clean)
    qpos[:, 7 + 2] += 0.2  # front-left knee
    qvel[:, 5] = 0.8  # yaw rate
    command = double([[0.5, -0.2, 0.4]]).repeat(3, 1)
    obs = clean.reset_to(qpos, qvel, task_state={"command": command})["obs"][0]
    torch.testing.assert_close(obs[0], torch.tensor(0.8 * 0.25))
    torch.testing.assert_close(obs[1:4], torch.tensor([0.0, 0.0, 1.0]))  # the torso's up axis
    torch.testing.assert_close(obs[4:7], torch.tensor([1.0, -0.4, 0.1]))  # command * (2, 2, 0.25)
    offset = torch.zeros(12)
    offset[2] = 0.2
    torch.testing.assert_close(obs[7:19], offset, atol=1e-6, rtol=0)
    assert (obs[19:] == 0).all()  # last action, then the empty history


def test_history_shifts_one_frame_per_step_newest_first(clean):
    """A worked sequence: reset frame f0, then steps with actions 0.1, 0.2, 0.3; each frame shows the action
    before its step, so after three steps the stack is [f3 (0.2), f2 (0.1), f1 (0), f0 (0), 0, ...]."""
    qpos, qvel = home_state(clean)
    command = double([[1.0, 0.0, 0.0]]).repeat(3, 1)
    observations = [clean.reset_to(qpos, qvel, task_state={"command": command})["obs"]]
    for value in (0.1, 0.2, 0.3):
        observations.append(clean.step(torch.full((3, 12), value))["obs"])
    final = observations[-1].view(3, HISTORY, FRAME)
    for slot, last_action in enumerate((0.2, 0.1, 0.0, 0.0)):
        torch.testing.assert_close(final[:, slot, 19:], torch.full((3, 12), last_action))
        torch.testing.assert_close(final[:, slot, 4:7], torch.tensor([[2.0, 0.0, 0.0]]).expand(3, 3))
        assert torch.equal(final[:, slot], observations[3 - slot][:, :FRAME])  # frames move on unchanged
    assert (final[:, 4:] == 0).all()


def test_history_is_full_after_fifteen_steps_and_drops_the_oldest(clean):
    qpos, qvel = home_state(clean)
    clean.reset_to(qpos, qvel, task_state={"command": double([[1.0, 0.0, 0.0]]).repeat(3, 1)})
    for step in range(16):
        obs = clean.step(torch.full((3, 12), 0.01 * (step + 1)))["obs"].view(3, HISTORY, FRAME)
    # After 16 steps the oldest slot holds frame 2 (the action of step 1), the reset frame is gone.
    torch.testing.assert_close(obs[:, -1, 19:], torch.full((3, 12), 0.01))
    torch.testing.assert_close(obs[:, 0, 19:], torch.full((3, 12), 0.15))


def test_autoreset_seeds_only_the_finished_worlds_history(clean):
    qpos, qvel = home_state(clean)
    qpos[0, 2], qpos[0, 3:7] = 0.5, double([0.0, 1.0, 0.0, 0.0])  # world 0 upside down: terminates
    before = clean.reset_to(qpos, qvel)["obs"]
    td = clean.step(torch.full((3, 12), 0.1))
    assert td["terminated"].tolist() == [True, False, False]
    obs = td["obs"].view(3, HISTORY, FRAME)
    assert (obs[0, 1:] == 0).all() and (obs[0, 0, 19:] == 0).all()  # a fresh history: one frame, no action yet
    assert torch.equal(obs[1:, 1], before[1:, :FRAME])  # the others shifted on
    assert torch.equal(clean.task_state["obs_history"].float(), td["obs"])


def test_noise_is_uniform_on_every_entry_of_the_frame():
    env = make_task_env(NAME, num_envs=1024, perturbations=False)
    clean = make_task_env(NAME, num_envs=1024, perturbations=False, obs_noise_level=0.0)
    qpos, qvel = home_state(env)
    command = {"command": double([[0.5, 0.1, 0.2]]).repeat(1024, 1)}
    error = env.reset_to(qpos, qvel, task_state=command)["obs"] - clean.reset_to(qpos, qvel, task_state=command)["obs"]
    frame = error[:, :FRAME]
    assert frame.abs().max() <= 0.05 + 1e-6 and frame.abs().max() > 0.049
    assert frame.std().item() == pytest.approx(0.05 / math.sqrt(3), rel=0.05)  # U(-0.05, 0.05)
    assert (error[:, FRAME:] == 0).all()


def terms_at(env, action=None, first_contact=None, terminated=None):
    num = env.num_envs
    return env.task.reward_terms(
        env.physics,
        torch.zeros(num, 12, dtype=torch.float64) if action is None else action,
        env.task_state,
        env.task.feet_contact(env.physics),
        torch.zeros(num, 4, dtype=torch.bool) if first_contact is None else first_contact,
        torch.zeros(num, dtype=torch.bool) if terminated is None else terminated,
    )


def test_reward_terms_on_a_hand_built_state(clean):
    qpos, qvel = home_state(clean)
    qpos[:, 7 + 2] += 0.2  # front-left knee 0.2 rad off home
    qvel[:, 0], qvel[:, 2], qvel[:, 5] = 0.5, 0.2, 0.3  # forward, up, yaw rate
    command = double([[1.0, 0.0, 0.3], [0.0, 0.0, 0.0], [0.03, 0.03, 0.3]])
    air_time = double([[0.3, 0.0, 0.0, 0.0]]).repeat(3, 1)
    state = {"command": command, "feet_air_time": air_time, "last_act": torch.full((3, 12), 0.1)}
    clean.reset_to(qpos, qvel, ctrl=double(HOME_JOINTS).repeat(3, 1), task_state=state)
    landing = torch.zeros(3, 4, dtype=torch.bool)
    landing[:, 0] = True
    terms = terms_at(clean, action=torch.full((3, 12), 0.3, dtype=torch.float64), first_contact=landing)

    def expect(name, values):
        torch.testing.assert_close(terms[name], double(values), atol=1e-6, rtol=0)

    # The local velocity is in the torso frame, x toward the head: 0.5 m/s forward.
    expect("tracking_lin_vel", [math.exp(-0.25 / 0.25), math.exp(-0.25 / 0.25), math.exp(-(0.47**2 + 0.03**2) / 0.25)])
    expect("tracking_ang_vel", [1.0, math.exp(-0.09 / 0.25), 1.0])
    expect("lin_vel_z", [0.04] * 3)
    expect("ang_vel_xy", [0.0] * 3)
    expect("orientation", [0.0] * 3)
    expect("torques", [14.0] * 3)  # 35 * 0.2 on one knee: |tau|_2 + |tau|_1
    expect("action_rate", [12 * 0.2**2] * 3)
    # Charged when |c_xy| < 0.1 (Playground's gate, (c_xy / |c_xy|)_y < 0.1, would give [0.2, 0, 0]).
    expect("stand_still", [0.0, 0.2, 0.2])
    expect("termination", [0.0] * 3)
    expect("feet_air_time", [0.3 - 0.1, 0.0, 0.0])  # no pay at |c_xy| <= 0.05 (0.042)


def test_termination_and_its_cost_before_the_command_change():
    env = make_task_env(NAME, num_envs=4, obs_noise_level=0.0, perturbations=False)
    qpos, qvel = home_state(env)
    qpos[1, 3:7] = double([0.0, 1.0, 0.0, 0.0])  # upside down
    qpos[2, 7 + 1] = 2.2  # a hip inside its joint range (3.03) but beyond the targets' clip (2.1)
    qpos[3, 2] = 0.15  # torso below 0.18 m
    env.reset_to(qpos, qvel, task_state={"step": torch.tensor([0, 10, 499, 500])})
    terminated = env.task.terminated(env.physics)
    assert terminated.tolist() == [False, True, True, True]
    costs = env.task.termination_cost(env.task_state, terminated)
    assert costs.tolist() == [0.0, 1.0, 1.0, 0.0]


def test_targets_are_home_plus_three_tenths_of_the_action(clean):
    qpos, qvel = home_state(clean)
    clean.reset_to(qpos, qvel)
    action = double([1.0, -1.0, 0.5] * 4).repeat(3, 1)
    clean.task.control(clean.physics, action, clean.task_state, clean.generator)
    # Inside the clip box [-0.7, -1, 0.05] .. [0.52, 2.1, 2.1] for every action in [-1, 1].
    torch.testing.assert_close(clean.physics.ctrl, double([0.3, 0.2, 1.15] * 4).repeat(3, 1))


def test_command_is_redrawn_after_500_steps_and_the_counter_restarts(clean):
    qpos, qvel = home_state(clean)
    command = double([[9.0, 9.0, 9.0]]).repeat(3, 1)  # outside every range: any redraw shows
    clean.reset_to(qpos, qvel, task_state={"command": command, "step": torch.tensor([499, 500, 3])})
    clean.step(torch.zeros(3, 12))
    state = clean.task_state
    assert state["step"].tolist() == [500, 0, 4]
    assert (state["command"][[0, 2]] == 9.0).all() and (state["command"][1] != 9.0).all()
    low, high = double([-0.6, -0.8, -0.7]), double([1.5, 0.8, 0.7])
    assert ((state["command"][1] >= low) & (state["command"][1] < high)).all()


def test_command_and_kick_draws_have_playgrounds_distributions(clean):
    generator, like = torch.Generator().manual_seed(1), clean.physics.qpos
    command = clean.task.sample_command(generator, 200_000, like)
    state = clean.task.kicks.initial_state(generator, 200_000, like)
    torch.testing.assert_close(command.mean(0), double([0.45, 0.0, 0.0]), atol=0.01, rtol=0)
    torch.testing.assert_close(command.amin(0), double([-0.6, -0.8, -0.7]), atol=1e-3, rtol=0)
    torch.testing.assert_close(command.amax(0), double([1.5, 0.8, 0.7]), atol=1e-3, rtol=0)
    wait, length = state["kick_wait_steps"], state["kick_duration_steps"]
    assert (wait.min().item(), wait.max().item(), length.min().item(), length.max().item()) == (50, 149, 1, 9)
    assert wait.double().mean().item() == pytest.approx(99.5, rel=0.01)
    counts = torch.bincount(length, minlength=10)[1:].double() / length.numel()
    torch.testing.assert_close(counts, torch.full((9,), 1 / 9, dtype=torch.float64), atol=0.005, rtol=0)
    speed = state["vel_kick"]
    assert speed.min() >= 0.1 and speed.max() < 1.0 and speed.mean().item() == pytest.approx(0.55, rel=0.01)
    assert (state["last_kick_step"] == NO_KICK).all() and (state["kick_dir"] == 0).all()


def test_kicks_follow_the_half_sine_worked_by_hand():
    """Wait 5, length 3, 0.5 m/s: kicks start at counter 5 and 10; within a kick, i = 0, 1, 2 steps after
    its start the force is 0.5 sin(pi i / 3) m v / (3 dt), then nothing until the next one."""
    env = make_task_env(NAME, num_envs=2, obs_noise_level=0.0)
    qpos, qvel = home_state(env)
    schedule = {
        "kick_wait_steps": torch.tensor([5, 200]),
        "kick_duration_steps": torch.tensor([3, 3]),
        "vel_kick": torch.full((2,), 0.5),
    }
    env.reset_to(qpos, qvel, task_state=schedule)
    torso = env.physics.mj_model.body("torso").id
    mass = env.physics.mj_model.body_subtreemass[torso]
    assert mass == pytest.approx(6.04352 + 4 * (0.787 + 1.155 + 0.171238))  # the whole robot
    forces, directions = [], []
    for _ in range(12):  # counter values 0 .. 11 when the kick is applied
        env.step(torch.zeros(2, 12))
        forces.append(env.physics.xfrc_applied[:, torso].clone())
        directions.append(env.task_state["kick_dir"][0].clone())
    peak = mass * 0.5 / (3 * DT)
    expected = [0.0] * 5 + [0.0, 0.5 * math.sin(math.pi / 3), 0.5 * math.sin(2 * math.pi / 3)] + [0.0, 0.0]
    expected += [0.0, 0.5 * math.sin(math.pi / 3)]
    for counter, fraction in enumerate(expected):
        magnitude = forces[counter][0, :3].norm().item()
        assert magnitude == pytest.approx(fraction * peak, abs=1e-9), counter
        assert (forces[counter][0, 3:] == 0).all() and (forces[counter][1] == 0).all()
    first, second = directions[5], directions[10]
    assert first[2] == 0 and first.norm().item() == pytest.approx(1.0) and not torch.equal(first, second)
    torch.testing.assert_close(forces[6][0, :3] / forces[6][0, :3].norm(), first)
    assert env.task_state["last_kick_step"][0] == 10 and env.task_state["last_kick_step"][1] == NO_KICK


def test_no_kicks_without_perturbations(clean):
    qpos, qvel = home_state(clean)
    clean.reset_to(qpos, qvel, task_state={"kick_wait_steps": torch.tensor([1, 1, 1])})
    for _ in range(4):
        clean.step(torch.zeros(3, 12))
        assert (clean.physics.xfrc_applied == 0).all()


def test_step_and_reset_make_no_host_sync():
    """Across a kick, a command change and an episode end (4-step episodes) without host shortcuts."""
    state = {"kick_wait_steps": torch.tensor([2, 3]), "step": torch.tensor([499, 0])}
    check_step_and_reset_make_no_host_sync(NAME, home_state, state)


def test_training_smoke_run(tmp_path):
    check_training_smoke_run(NAME, tmp_path)


@pytest.mark.slow
@pytest.mark.warp
def test_warp_matches_native(monkeypatch):
    """Five steps on both backends with a converged solver; world 0's kick starts at counter 3 and pushes in the
    next two steps (counters 4 and 5), world 1 is not kicked."""
    converge_solver(monkeypatch, BarkourJoystick, 30)
    env = make_task_env(NAME, num_envs=2)
    qpos, qvel = home_state(env)
    state = {
        "command": double([[0.5, 0.0, 0.2]]).repeat(2, 1),
        "kick_wait_steps": torch.tensor([3, 200]),
        "kick_duration_steps": torch.tensor([5, 5]),
        "step": torch.tensor([2, 0]),
    }
    check_warp_follows_native(NAME, qpos, qvel, state, steps=5)

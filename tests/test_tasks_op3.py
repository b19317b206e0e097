"""Op3Joystick: sizes and model edits (only the foot boxes collide), the home reset, the 3-frame observation
history against a worked sequence, reward terms on hand-built states, terminations, the command draw with its
zero command, graph safety, warp parity and a training smoke run."""

import math
import re

import pytest
import torch

from pqn_torch.envs.tasks.locomotion.op3 import Op3Joystick
from pqn_torch.envs.tasks.robots import PLAYGROUND_DIR

from task_testing import (
    check_home_reset_with_an_empty_history,
    check_step_and_reset_make_no_host_sync,
    check_warp_follows_native,
    converge_solver,
    double,
    make_task_env,
    standing_state,
    tetrahedron_stl,
)
from training_testing import check_training_smoke_run

NAME = "Op3Joystick"
# The "stand_bent_knees" keyframe: head (pan, tilt), arms (shoulder pitch, roll, elbow) x 2, legs (hip yaw, roll,
# pitch, knee, ankle pitch, roll) x 2.
HOME_JOINTS = [0.0, 0.0, -0.534072, 0.879648, -0.62832, 0.534072, -0.879648, 0.62832]
HOME_JOINTS += [0.0, 0.0, -0.596904, 1.13098, 0.534072, 0.0, 0.0, 0.0, 0.596904, -1.13098, -0.534072, 0.0]
HOME_HEIGHT = 0.243584
FRAME, HISTORY = 49, 3


def home_state(env):
    """Every world at the home keyframe, at rest ([N, 27], [N, 26] in the physics dtype)."""
    return standing_state(env, HOME_JOINTS, HOME_HEIGHT)


@pytest.fixture(scope="module")
def clean():
    return make_task_env(NAME, num_envs=3, obs_noise_level=0.0)


def test_sizes_timing_and_model_edits():
    env = make_task_env(NAME, num_envs=2)
    assert (env.obs_dim, env.critic_obs_dim, env.action_dim) == (147, 147, 20)
    assert env.episode_length == 1000 and env.ctrl_dt == 0.02 and env.task.substeps == 5
    model = env.physics.mj_model
    assert (model.nq, model.nv, model.nu, model.nmesh) == (27, 26, 20, 0)
    # The simplified convex "collision" meshes never collided: only the floor and the four foot boxes are left.
    assert [model.geom(i).name for i in range(model.ngeom)] == ["floor", "l_foot1", "l_foot2", "r_foot1", "r_foot2"]
    assert model.opt.ccd_iterations == 10 and model.opt.timestep == 0.004
    assert (model.actuator_gainprm[:, 0] == 21.1).all() and (model.actuator_biasprm[:, 1] == -21.1).all()
    assert (model.dof_damping[6:] == 1.084).all()
    assert (model.actuator_ctrlrange == [-3.141592, 3.141592]).all()
    assert sum(size for _, size in env.task.observation_layout) == 147


def test_reset_is_the_bent_knees_keyframe_at_rest_with_an_empty_history():
    check_home_reset_with_an_empty_history(NAME, home_state, FRAME)


def test_frame_layout_at_a_known_state(clean):
    qpos, qvel = home_state(clean)
    qpos[:, 7 + 11] += 0.2  # left knee
    qvel[:, 3], qvel[:, 5] = 0.4, -0.6  # roll and yaw rates (body frame)
    command = double([[0.5, -0.2, 0.4]]).repeat(3, 1)
    obs = clean.reset_to(qpos, qvel, task_state={"command": command})["obs"][0]
    torch.testing.assert_close(obs[0:3], torch.tensor([0.4, 0.0, -0.6]), atol=1e-6, rtol=0)  # gyro
    torch.testing.assert_close(obs[3:6], torch.tensor([0.0, 0.0, 1.0]), atol=1e-6, rtol=0)  # up axis
    torch.testing.assert_close(obs[6:9], torch.tensor([0.5, -0.2, 0.4]))  # the command, unscaled
    offset = torch.zeros(20)
    offset[11] = 0.2
    torch.testing.assert_close(obs[9:29], offset, atol=1e-6, rtol=0)
    assert (obs[29:] == 0).all()


def test_history_keeps_three_frames_newest_first(clean):
    """A worked sequence: reset frame f0, then actions 0.01, 0.02, 0.03, 0.04; after four steps the stack is
    [f4 (0.03), f3 (0.02), f2 (0.01)]: f1 and the reset frame have dropped out."""
    qpos, qvel = home_state(clean)
    command = double([[1.0, 0.0, 0.0]]).repeat(3, 1)
    observations = [clean.reset_to(qpos, qvel, task_state={"command": command})["obs"]]
    for value in (0.01, 0.02, 0.03, 0.04):
        observations.append(clean.step(torch.full((3, 20), value))["obs"])
    second = observations[2].view(3, HISTORY, FRAME)
    assert torch.equal(second[:, 2], observations[0][:, :FRAME])  # the reset frame, two steps on
    final = observations[4].view(3, HISTORY, FRAME)
    for slot, last_action in enumerate((0.03, 0.02, 0.01)):
        torch.testing.assert_close(final[:, slot, 29:], torch.full((3, 20), last_action))
        assert torch.equal(final[:, slot], observations[4 - slot][:, :FRAME])


def terms_at(env, action, terminated=None):
    return env.task.reward_terms(
        env.physics,
        action,
        env.task_state,
        torch.zeros(env.num_envs, dtype=torch.bool) if terminated is None else terminated,
    )


def test_reward_terms_on_a_hand_built_state(clean):
    qpos, qvel = home_state(clean)
    qvel[:, 0], qvel[:, 2] = 0.5, 0.2  # forward and up
    qvel[:, 6 + 11] = 2.0  # left knee turning
    command = double([[1.0, 0.0, 0.0], [0.05, 0.05, 0.05], [0.0, 0.0, 0.0]])
    state = {"command": command, "last_act": torch.full((3, 20), 0.1), "last_last_act": torch.full((3, 20), 0.3)}
    ctrl = double(HOME_JOINTS).repeat(3, 1)
    ctrl[:, 11] += 0.1  # the left knee's target 0.1 rad ahead: 2.11 N m
    clean.reset_to(qpos, qvel, ctrl=ctrl, task_state=state)
    action = torch.full((3, 20), 0.2, dtype=torch.float64)
    terms = terms_at(clean, action)

    def expect(name, values, atol=1e-6):
        torch.testing.assert_close(terms[name], double(values), atol=atol, rtol=0)

    expect("tracking_lin_vel", [math.exp(-0.25 / 0.25), math.exp(-(0.45**2 + 0.05**2) / 0.25), math.exp(-1.0)])
    expect("tracking_ang_vel", [1.0, math.exp(-(0.05**2) / 0.25), 1.0])
    expect("lin_vel_z", [0.04] * 3)
    expect("orientation", [0.0] * 3)
    # Knee force 21.1 * 0.1 - damping lives in the joint, not the actuator: tau = 2.11, power 2 * 2.11.
    expect("torques", [2 * 2.11] * 3)
    expect("energy", [2.0 * 2.11] * 3)
    # First and second differences: 20 (0.1)^2 + 20 (0.2 - 0.2 + 0.3)^2.
    expect("action_rate", [20 * 0.01 + 20 * 0.09] * 3)
    expect("zero_cmd", [0.0, 20 * 0.04, 20 * 0.04])  # |c| = 0.087 and 0 are below 0.1
    expect("termination", [0.0] * 3)
    feet_speed = torch.linalg.vector_norm(clean.task.feet_velocity(clean.physics)[..., :2], dim=-1)
    contact = clean.task.feet_contact(clean.physics)
    assert contact.all()  # both feet stand on the floor at home
    torch.testing.assert_close(terms["feet_slip"], (feet_speed**2).sum(-1))
    assert feet_speed[0, 1].item() == pytest.approx(0.5)  # the right foot moves with the torso only


def test_terminations_and_the_command_clock():
    env = make_task_env(NAME, num_envs=4, obs_noise_level=0.0)
    qpos, qvel = home_state(env)
    tilt = 0.6  # rad about x: up axis z = cos 0.6 = 0.825 < 0.85
    qpos[1, 3:7] = double([math.cos(tilt / 2), math.sin(tilt / 2), 0.0, 0.0])
    qpos[2, 7] = 3.2  # head pan beyond the control range (+-pi)
    qpos[3, 2] = 0.2  # torso below 0.21 m
    env.reset_to(qpos, qvel, task_state={"step": torch.tensor([0, 499, 500, 10])})
    terminated = env.task.terminated(env.physics)
    assert terminated.tolist() == [False, True, True, True]
    assert env.task.termination_cost(env.task_state, terminated).tolist() == [0.0, 1.0, 0.0, 1.0]
    command = double([[9.0, 9.0, 9.0]]).repeat(4, 1)
    env.reset_to(*home_state(env), task_state={"command": command, "step": torch.tensor([500, 499, 0, 0])})
    env.step(torch.zeros(4, 20))
    assert env.task_state["step"].tolist() == [0, 500, 1, 1]
    assert (env.task_state["command"][0] != 9.0).all() and (env.task_state["command"][1:] == 9.0).all()


def test_command_draw_is_zero_one_time_in_ten(clean):
    command = clean.task.sample_command(torch.Generator().manual_seed(2), 200_000, clean.physics.qpos)
    zero = (command == 0).all(-1)
    assert zero.double().mean().item() == pytest.approx(0.1, abs=0.003)
    moving = command[~zero]
    torch.testing.assert_close(moving.mean(0), double([0.45, 0.0, 0.0]), atol=0.01, rtol=0)
    torch.testing.assert_close(moving.amax(0), double([1.5, 0.8, 0.7]), atol=1e-3, rtol=0)


def test_step_and_reset_make_no_host_sync():
    """Across a command change and an episode end (4-step episodes) without host shortcuts."""
    check_step_and_reset_make_no_host_sync(NAME, home_state, {"step": torch.tensor([499, 0])})


def test_training_smoke_run(tmp_path):
    check_training_smoke_run(NAME, tmp_path)


@pytest.mark.slow
@pytest.mark.warp
def test_warp_matches_native(monkeypatch):
    """Five steps on both backends with a converged solver, from the home pose."""
    converge_solver(monkeypatch, Op3Joystick, 30)
    env = make_task_env(NAME, num_envs=2)
    qpos, qvel = home_state(env)
    check_warp_follows_native(NAME, qpos, qvel, {"command": double([[0.5, 0.0, 0.2]]).repeat(2, 1)}, steps=5)


def test_meshes_from_a_menagerie_checkout_keep_their_subfolders(tmp_path, monkeypatch):
    """OP3's simplified convex meshes live in ``assets/simplified_convex/`` beside visual meshes of the same file
    names: each mesh must load its own file (stand-in tetrahedra here, 10 mm visual, 50 mm simplified)."""
    assets = tmp_path / "robotis_op3" / "assets"
    (assets / "simplified_convex").mkdir(parents=True)
    scene = (PLAYGROUND_DIR / "locomotion/op3/xmls/op3_mjx_feetonly.xml").read_text()
    for file in re.findall(r'file="([^"]+\.stl)"', scene):
        (assets / file).write_bytes(tetrahedron_stl(50.0 if file.startswith("simplified_convex/") else 10.0))
    monkeypatch.setenv("MENAGERIE_ROOT", str(tmp_path))
    model = make_task_env(NAME, num_envs=1).physics.mj_model
    assert model.nmesh == 48

    def extent(mesh: str) -> float:
        mesh_id = model.mesh(mesh).id
        start, count = model.mesh_vertadr[mesh_id], model.mesh_vertnum[mesh_id]
        vertices = model.mesh_vert[start : start + count]
        return float((vertices.max(0) - vertices.min(0)).max())

    # MuJoCo moves each mesh to its principal axes, alike for the two shapes: only their sizes tell them apart.
    assert extent("bodyc") / extent("body") == pytest.approx(5.0)

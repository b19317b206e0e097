"""The Franka Emika Panda pick tasks: sizes and model, observation layout at a hand-built state (against MuJoCo's
own kinematics), reward terms against hand-computed values, the reached-box latch, reset distributions,
ctrl integration and clipping, termination, warp parity and a training smoke run."""

import math

import mujoco
import numpy as np
import pytest
import torch

from pqn_torch.envs.tasks import robots
from pqn_torch.training import run_training

from task_testing import make_task_env, seeded_run
from training_testing import tiny_config

PICK, ORIENTATION = "PandaPickCube", "PandaPickCubeOrientation"
HOME_CTRL = [0.0, 0.3, 0.0, -1.57079, 0.0, 2.0, -0.7853, 0.04]  # the home keyframe's ctrl (Playground)
BOX_HOME = (0.7, 0.0, 0.03)
BOX_QPOS, TARGET = slice(9, 16), 0  # the box's free joint in qpos; the target's mocap index
SCALES = {"gripper_box": 4.0, "box_target": 8.0, "no_floor_collision": 0.25, "robot_target_qpos": 0.3}


def double(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def home_state(env) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every world at the home keyframe, at rest, the target upright 0.2 m above the box's home position."""
    qpos = torch.as_tensor(env.physics.mj_model.keyframe("home").qpos).repeat(env.num_envs, 1)
    mocap_pos = double([[BOX_HOME[0], BOX_HOME[1], BOX_HOME[2] + 0.2]]).repeat(env.num_envs, 1, 1)
    mocap_quat = double([[[1.0, 0.0, 0.0, 0.0]]]).repeat(env.num_envs, 1, 1)
    return qpos, torch.zeros_like(env.physics.qvel), mocap_pos, mocap_quat


def kinematics(model: mujoco.MjModel, qpos, mocap_pos=None, mocap_quat=None) -> mujoco.MjData:
    """MuJoCo's forward pass of one world (positions, rotations, contacts), for independent expectations."""
    data = mujoco.MjData(model)
    data.qpos[:] = np.asarray(qpos)
    if mocap_pos is not None:
        data.mocap_pos[:], data.mocap_quat[:] = np.asarray(mocap_pos), np.asarray(mocap_quat)
    mujoco.mj_forward(model, data)
    return data


def gripper_at_home(env) -> torch.Tensor:
    qpos = env.physics.mj_model.keyframe("home").qpos
    return torch.as_tensor(kinematics(env.physics.mj_model, qpos).site("gripper").xpos.copy())


@pytest.fixture(scope="module")
def pick():
    return make_task_env(PICK, num_envs=4)


@pytest.mark.parametrize("name", [PICK, ORIENTATION])
def test_sizes_timing_model_and_action_space(name):
    env = make_task_env(name, num_envs=2)
    assert (env.obs_dim, env.critic_obs_dim, env.action_dim) == (66, 66, 8)
    assert env.episode_length == 150 and env.ctrl_dt == 0.02 and env.task.substeps == 4
    assert env.task.config.contacts_per_world == 24 and env.task.config.njmax == 128
    model = env.physics.mj_model
    assert (model.nq, model.nv, model.nu, model.nmocap, model.nmesh) == (16, 15, 8, 1, 0)  # visual meshes dropped
    assert model.opt.timestep == 0.005 and (model.opt.iterations, model.opt.ls_iterations) == (5, 8)
    assert model.opt.integrator == mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    colliding = {model.geom(i).name for i in range(model.ngeom) if model.geom_contype[i] or model.geom_conaffinity[i]}
    assert colliding == {"floor", "box", "hand_capsule", "left_finger_pad", "right_finger_pad"}
    torch.testing.assert_close(env.action_low, -torch.ones(8))
    torch.testing.assert_close(env.action_high, torch.ones(8))
    assert env.task.reward_term_names == (*SCALES, "clipping")
    mapping = env.task.control_mapping()
    assert (mapping.mode, mapping.scale) == ("ctrl_increment", 0.04)


def test_observation_layout_at_a_known_state(pick):
    env = pick
    qpos, qvel, mocap_pos, mocap_quat = home_state(env)
    qpos[:, 0] = 0.3  # joint1
    yaw = 0.5
    qpos[:, BOX_QPOS] = double([0.6, 0.1, 0.05, math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])
    qvel[:, 1], qvel[:, 9] = -0.7, 0.2  # joint2, box x velocity
    mocap_pos[:, TARGET] = double([0.65, -0.05, 0.3])
    mocap_quat[:, TARGET] = double([math.cos(0.2), math.sin(0.2), 0.0, 0.0])  # 0.4 rad about x
    ctrl = double(HOME_CTRL).repeat(4, 1)
    ctrl[:, 3] += 0.1
    obs = env.reset_to(qpos, qvel, ctrl, mocap_pos, mocap_quat)["obs"][0].double()
    data = kinematics(env.physics.mj_model, qpos[0], mocap_pos[0], mocap_quat[0])
    gripper, box = data.site("gripper"), data.body("box")
    target_matrix = np.zeros(9)
    mujoco.mju_quat2Mat(target_matrix, mocap_quat[0, TARGET].numpy())
    expected = np.concatenate(
        [
            qpos[0].numpy(),
            qvel[0].numpy(),
            gripper.xpos,
            gripper.xmat[3:],
            box.xmat[3:],
            box.xpos - gripper.xpos,
            mocap_pos[0, TARGET].numpy() - box.xpos,
            target_matrix[:6] - box.xmat[:6],
            (ctrl[0] - qpos[0, :8]).numpy(),
        ]
    )
    torch.testing.assert_close(obs, torch.as_tensor(expected), atol=1e-6, rtol=0)
    assert obs[-5].item() == pytest.approx(0.1)  # ctrl - q of joint 4


def test_reward_terms_gripper_at_the_box_and_box_at_the_target(pick):
    """At home with the box held at the gripper and the target on the box: every term at its best."""
    env = pick
    qpos, qvel, mocap_pos, mocap_quat = home_state(env)
    gripper = gripper_at_home(env)
    qpos[:, 9:12] = gripper
    mocap_pos[:, TARGET] = gripper
    env.reset_to(qpos, qvel, None, mocap_pos, mocap_quat, task_state={"reached_box": double([1, 1, 0, 0])})
    terms = env.task.reward_terms(env.physics, env.task_state)
    ones = torch.ones(4, dtype=torch.float64)
    for name in ("gripper_box", "no_floor_collision", "robot_target_qpos"):
        torch.testing.assert_close(terms[name], ones, atol=1e-9, rtol=0)
    torch.testing.assert_close(terms["box_target"], double([1, 1, 0, 0]), atol=1e-9, rtol=0)  # paid once reached
    reward, shares = env.task.total_reward(terms)
    torch.testing.assert_close(reward, double([12.55, 12.55, 4.55, 4.55]))  # no dt: Playground's plain sum
    assert (shares["clipping"] == 0).all()


def test_reward_terms_at_known_errors(pick):
    env = pick
    qpos, qvel, mocap_pos, mocap_quat = home_state(env)
    qpos[:, 0], qpos[:, 2] = 0.3, -0.4  # arm 0.5 away from home (joint1, joint3: the gripper stays above the floor)
    qpos[:, 9:12] = double([0.6, 0.1, 0.03])
    quarter = math.pi / 4  # the box turned by 90 degrees about z in worlds 2 and 3
    qpos[2:, 12:16] = double([math.cos(quarter), 0.0, 0.0, math.sin(quarter)])
    mocap_pos[:, TARGET] = double([0.6, 0.1, 0.23])  # 0.2 m above the box
    env.reset_to(qpos, qvel, None, mocap_pos, mocap_quat, task_state={"reached_box": torch.ones(4)})
    terms = env.task.reward_terms(env.physics, env.task_state)
    data = kinematics(env.physics.mj_model, qpos[0])
    distance = float(np.linalg.norm(data.body("box").xpos - data.site("gripper").xpos))
    expected_gripper_box = 1 - math.tanh(5 * distance)
    torch.testing.assert_close(terms["gripper_box"], torch.full((4,), expected_gripper_box, dtype=torch.float64))
    torch.testing.assert_close(terms["robot_target_qpos"], torch.full((4,), 1 - math.tanh(0.5), dtype=torch.float64))
    # |R_target - R_box| over the first two rows is 2 sqrt(1 - cos(angle)) for a turn about z: 2 at 90 degrees.
    upright, turned = 1 - math.tanh(5 * 0.9 * 0.2), 1 - math.tanh(5 * (0.9 * 0.2 + 0.1 * 2.0))
    torch.testing.assert_close(terms["box_target"], double([upright, upright, turned, turned]))


def test_no_floor_collision_follows_the_hand_contacts(pick):
    """With the arm leaning forward (joint2 0.9) the finger pads reach into the floor: MuJoCo's own contacts
    list a pad-floor pair there and none at home."""
    env = pick
    qpos, qvel, mocap_pos, mocap_quat = home_state(env)
    qpos[2:, 1] = 0.9
    env.reset_to(qpos, qvel, None, mocap_pos, mocap_quat)
    model = env.physics.mj_model
    hand = {model.geom(name).id for name in ("left_finger_pad", "right_finger_pad", "hand_capsule")}
    floor = model.geom("floor").id
    for world, expected in ((0, 1.0), (2, 0.0)):
        data = kinematics(model, qpos[world])
        pairs = [{int(c.geom1), int(c.geom2)} for c in data.contact[: data.ncon]]
        touching = any(floor in pair and pair & hand for pair in pairs)
        assert touching == (expected == 0.0)
        term = env.task.reward_terms(env.physics, env.task_state)["no_floor_collision"][world].item()
        assert term == expected


def test_reached_box_latches_within_an_episode(pick):
    """Worlds 0 and 1 start with the gripper at the box, 2 and 3 with the box 5 cm away; 0 and 2 have already
    reached it. After a step the latch is set where the gripper is within 12 mm or was before, and box_target
    pays only there."""
    env = pick
    qpos, qvel, mocap_pos, mocap_quat = home_state(env)
    gripper = gripper_at_home(env)
    qpos[:, 9:12] = gripper
    qpos[2:, 9] += 0.05
    env.reset_to(qpos, qvel, None, mocap_pos, mocap_quat, task_state={"reached_box": double([1, 0, 1, 0])})
    td = env.step(torch.zeros(4, 8))
    assert env.task_state["reached_box"].tolist() == [1, 1, 1, 0]
    box_target = td["episode_reward_terms"][:, env.task.reward_term_names.index("box_target")]
    assert (box_target[:3] > 0).all() and box_target[3] == 0


def test_ctrl_integrates_actions_and_clips_to_the_ctrl_range(pick):
    """``ctrl += 0.04 a``, clipped to ctrlrange and stored clipped: joint2 from 1.70 (limit 1.7628) by +1, +1, -1
    gives 1.74, 1.7628, 1.7228 (1.78, 1.74 without the clip); the gripper from 0.04 by -1, -1, +1 gives 0, 0,
    0.04; joint7 by 0.5 per step adds 0.02."""
    env = pick
    qpos, qvel, mocap_pos, mocap_quat = home_state(env)
    env.reset_to(qpos, qvel, None, mocap_pos, mocap_quat)
    torch.testing.assert_close(env.physics.ctrl, double(HOME_CTRL).repeat(4, 1))  # the keyframe's ctrl
    ctrl = double(HOME_CTRL).repeat(4, 1)
    ctrl[:, 1] = 1.70
    env.reset_to(qpos, qvel, ctrl, mocap_pos, mocap_quat)
    expected = {1: [1.74, 1.7628, 1.7228], 6: [-0.7653, -0.7453, -0.7253], 7: [0.0, 0.0, 0.04]}
    for step, sign in enumerate((1.0, 1.0, -1.0)):
        action = torch.zeros(4, 8)
        action[:, 1], action[:, 6], action[:, 7] = sign, 0.5, -sign
        env.step(action)
        for column, values in expected.items():
            torch.testing.assert_close(env.physics.ctrl[:, column], torch.full((4,), values[step], dtype=torch.float64))
    torch.testing.assert_close(env.physics.ctrl[:, [0, 2, 3, 4, 5]], double(HOME_CTRL)[[0, 2, 3, 4, 5]].repeat(4, 1))


@pytest.mark.parametrize("name", [PICK, ORIENTATION])
def test_reset_distribution(name):
    env = make_task_env(name, num_envs=2)
    starts = env.task.sample_start(torch.Generator().manual_seed(0), 4000, env.physics)
    home = torch.as_tensor(env.physics.mj_model.keyframe("home").qpos)
    torch.testing.assert_close(starts.qpos[:, :9], home[:9].repeat(4000, 1))  # the arm at home
    torch.testing.assert_close(starts.qpos[:, 11:], home[11:].repeat(4000, 1))  # box height and upright
    assert (starts.qvel == 0).all()
    box = starts.qpos[:, 9:11] - double(BOX_HOME[:2])
    target = starts.mocap_pos[:, TARGET] - double(BOX_HOME)
    for values, low, high in ((box, (-0.2, -0.2), (0.2, 0.2)), (target, (-0.2, -0.2, 0.2), (0.2, 0.2, 0.4))):
        low, high = double(low), double(high)
        assert (values >= low).all() and (values <= high).all()
        assert ((values.min(0).values - low) < 0.01).all() and ((high - values.max(0).values) < 0.01).all()
        torch.testing.assert_close(values.mean(0), (low + high) / 2, atol=0.01, rtol=0)
    quat = starts.mocap_quat[:, TARGET]
    torch.testing.assert_close(quat.norm(dim=-1), torch.ones(4000, dtype=torch.float64))
    angle = 2 * torch.acos(quat[:, 0].clamp(max=1.0))
    if name == PICK:
        assert (angle == 0).all()
    else:  # U(0, 45 degrees) about a direction spread over the sphere
        assert angle.max() <= math.radians(45) + 1e-9 and angle.min() < 0.01
        assert angle.mean().item() == pytest.approx(math.radians(22.5), abs=0.01)
        axis = quat[:, 1:] / torch.sin(angle / 2).unsqueeze(-1)
        assert (axis.mean(0).abs() < 0.05).all() and (axis.abs().max(0).values > 0.95).all()
    td = env.reset()  # the worlds take pool entries: their observed target - box is the drawn one
    drawn = env.physics.mocap_pos[:, TARGET] - env.physics.qpos[:, 9:12]
    torch.testing.assert_close(td["obs"][:, 49:52].double(), drawn, atol=1e-6, rtol=0)


def test_termination_when_the_box_leaves_the_workspace_and_the_latch_after_it(pick):
    env = pick
    qpos, qvel, mocap_pos, mocap_quat = home_state(env)
    qpos[:, 9:12] = double([[0.7, 0.0, 0.03], [1.05, 0.0, 0.03], [0.5, -1.1, 0.03], [0.5, 0.0, 1.1]])
    env.reset_to(qpos, qvel, None, mocap_pos, mocap_quat)
    assert env.step(torch.zeros(4, 8))["terminated"].tolist() == [False, True, True, True]
    qpos[:, 9:12] = double([[0.7, 0.0, 0.03], [0.7, 0.0, -0.001], [0.7, 0.0, 0.99], [-0.99, 0.99, 0.5]])
    env.reset_to(qpos, qvel, None, mocap_pos, mocap_quat)
    assert env.task.out_of_bounds(env.physics).tolist() == [False, True, False, False]

    # A terminated world starts its next episode without the latch; the others keep theirs.
    qpos[:, 9:12] = double([[0.7, 0.0, 0.03], [1.05, 0.0, 0.03], [0.7, 0.1, 0.03], [0.7, -0.1, 0.03]])
    env.reset_to(qpos, qvel, None, mocap_pos, mocap_quat, task_state={"reached_box": torch.ones(4)})
    assert env.step(torch.zeros(4, 8))["done"].tolist() == [False, True, False, False]
    assert env.task_state["reached_box"].tolist() == [1, 0, 1, 1]


def test_seeded_run_across_autoresets_does_not_depend_on_host_shortcuts():
    """The CUDA code path (masked autoreset, no host checks) gives the CPU path's results bit for bit, and makes
    no host sync, across episode ends of 4 steps."""
    fast, masked = (seeded_run(ORIENTATION, shortcuts, 3, ("reached_box",)) for shortcuts in (True, False))
    assert fast["done"].sum() == 6
    for key in ("obs", "reward", "terminated", "truncated", "final_obs", "reached_box"):
        assert torch.equal(fast[key], masked[key]), key


@pytest.mark.slow
@pytest.mark.warp
def test_warp_matches_native_for_one_step():
    """MuJoCo Warp (float32, CPU) vs native MuJoCo (float64) for one step from the same state, ctrl and target,
    with the gripper at the box in two worlds (the latch) and the box resting on the floor in the others.

    Measured: rewards (0.8-7) within 1e-6, observations within 5e-6 relative (float32 precision), with
    Playground's 5 solver iterations.
    """
    options = {"num_envs": 4, "seed": 3}
    native = make_task_env(ORIENTATION, **options)
    warp = make_task_env(ORIENTATION, backend="warp", **options)
    qpos, qvel, mocap_pos, mocap_quat = home_state(native)
    qpos[:2, 9:12] = gripper_at_home(native)
    mocap_quat[:, TARGET] = double([math.cos(0.2), 0.0, math.sin(0.2), 0.0])
    before = [env.reset_to(qpos, qvel, None, mocap_pos, mocap_quat)["obs"] for env in (native, warp)]
    torch.testing.assert_close(before[1].double(), before[0].double(), atol=1e-5, rtol=1e-5)
    action = (torch.rand(4, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1) * 0.5
    after = [env.step(action) for env in (native, warp)]
    reward_gap = (after[1]["reward"] - after[0]["reward"]).abs().max().item()
    relative = (after[1]["obs"] - after[0]["obs"]).abs() / (1 + after[0]["obs"].abs())
    assert reward_gap < 1e-4 and relative.max() < 1e-4, (reward_gap, relative.max())
    assert warp.task_state["reached_box"].tolist() == native.task_state["reached_box"].tolist() == [1, 1, 0, 0]


def test_training_smoke_run(tmp_path):
    """A few PQN updates on PandaPickCube with a tiny config run and write checkpoints and evaluations."""
    config = tiny_config(task=PICK, num_envs=4, episode_length=8, eval_envs=2, total_timesteps=128)
    run_training(config, tmp_path, show_progress=False)
    assert list((tmp_path / "checkpoints").glob("*.pt"))
    assert len((tmp_path / "eval.csv").read_text().strip().splitlines()) >= 3


PADDLE_SCENE = """<mujoco>
  <asset><mesh name="tetra" vertex="0 0 0  1 0 0  0 1 0  0 0 1"/></asset>
  <worldbody>
    <geom name="floor" type="plane" size="1 1 0.1"/>
    <body name="paddle"><freejoint/><geom name="blade" type="box" size="0.1 0.1 0.1"/>
      <geom name="{mesh}" type="mesh" mesh="tetra" contype="0" conaffinity="0"/></body>
  </worldbody>
  {contacts}
</mujoco>"""


@pytest.mark.parametrize(
    "contacts",
    [
        '<contact><pair geom1="shell" geom2="floor"/></contact>',
        '<sensor><contact name="shell_floor" geom1="floor" geom2="shell" data="found"/></sensor>',
    ],
)
def test_scene_loading_refuses_to_drop_a_mesh_geom_that_takes_part_in_contacts(contacts, tmp_path, monkeypatch):
    """A mesh geom without collision bits still collides through a <pair>, and a contact sensor reads it:
    dropping it would change the physics."""
    monkeypatch.setattr(robots, "PLAYGROUND_DIR", tmp_path)
    monkeypatch.delenv(robots.MENAGERIE_ROOT_VARIABLE, raising=False)
    (tmp_path / "visual.xml").write_text(PADDLE_SCENE.format(mesh="shell", contacts=""))
    spec = robots.load_playground_scene("visual.xml", "no_such_robot")
    assert [geom.name for geom in spec.geoms] == ["floor", "blade"] and not spec.meshes
    (tmp_path / "in_contacts.xml").write_text(PADDLE_SCENE.format(mesh="shell", contacts=contacts))
    with pytest.raises(ValueError, match="mesh geom 'shell' collides"):
        robots.load_playground_scene("in_contacts.xml", "no_such_robot")

"""The joystick tasks' shared command option and readout (``JoystickTask``): ``fixed_command`` holds a command for
whole episodes without touching the physics, and ``command_tracking_error`` compares the command with the
readings the tracking rewards use."""

import dataclasses
import math

import pytest
import torch

from pqn_torch.cuda_graph import forbid_host_syncs
from pqn_torch.envs.tasks import TASKS, get_task_class

from task_testing import make_task_env, random_actions

JOYSTICK_TASKS = sorted(
    name
    for name in TASKS
    if any(f.name == "fixed_command" for f in dataclasses.fields(get_task_class(name).default_config))
)
COMMAND_ENTRY = "command: vx, vy, yaw rate"


def test_every_joystick_task_takes_a_fixed_command():
    assert {name for name in TASKS if "Joystick" in name} <= set(JOYSTICK_TASKS)
    assert len(JOYSTICK_TASKS) == 14


def observed_command(env) -> slice | None:
    """The columns of the newest command in the task's observation, if it observes the command unscaled."""
    start = 0
    for name, size in env.task.observation_layout:
        if name.endswith(COMMAND_ENTRY):
            return slice(start, start + size)
        start += size
    return None


@pytest.mark.parametrize("name", JOYSTICK_TASKS)
def test_a_fixed_command_holds_through_a_resampling_and_an_autoreset_and_leaves_the_physics_unchanged(name):
    """``fixed_command`` replaces every drawn command but draws the same random numbers, so under the same actions
    the worlds move exactly as with the task's own commands (the command enters only observations and rewards;
    gait tracking does not even observe it, but it is what the reward tracks). The held run steps as a captured
    graph would (no host shortcuts, no host syncs)."""
    options = dict(num_envs=2, seed=5, episode_length=5, obs_noise_level=0.0, reset_pool_size=4, num_threads=1)
    held = make_task_env(name, fixed_command=[0.5, 0, -0.25], **options)
    drawn = make_task_env(name, **options)
    fixed = torch.tensor([0.5, 0.0, -0.25], dtype=held.task_state["command"].dtype)
    held.host_shortcuts = False
    held.reset(), drawn.reset()
    assert (held.task_state["command"] == fixed).all() and not (drawn.task_state["command"] == fixed).all()
    for env in (held, drawn):  # the command is due at the first step
        if "steps_until_next_cmd" in env.task_state:
            env.task_state["steps_until_next_cmd"].fill_(1)
        else:
            env.task_state["step"].fill_(10_000)
    columns = observed_command(held)
    resets = resampled = 0
    for action in random_actions(held, 7):
        before = drawn.task_state["command"].clone()
        with forbid_host_syncs():
            td = held.step(action)
        drawn_td = drawn.step(action)
        resets += int(td["done"].sum())
        resampled += int((drawn.task_state["command"] != before).any(-1)[~drawn_td["done"]].sum())
        assert (held.task_state["command"] == fixed).all()
        torch.testing.assert_close(held.physics.qpos, drawn.physics.qpos, rtol=0, atol=0)
        torch.testing.assert_close(held.physics.qvel, drawn.physics.qvel, rtol=0, atol=0)
        if columns is not None:
            torch.testing.assert_close(td["obs"][:, columns], fixed.to(td["obs"].dtype).expand(2, 3))
    assert resets >= 2 and resampled >= 1


def test_fixed_command_must_be_three_finite_numbers():
    with pytest.raises(
        ValueError, match=r"fixed_command must be \[vx, vy, yaw rate\]: three finite numbers, got \[1.0, 0.0\]"
    ):
        make_task_env("Op3Joystick", fixed_command=[1.0, 0.0])
    with pytest.raises(ValueError, match="three finite numbers, got \\[nan, 0, 0\\]"):
        make_task_env("SpotJoystickGaitTracking", fixed_command=[math.nan, 0, 0])


def yawed(yaw: float) -> tuple[float, float, float, float]:
    """The quaternion of a turn by ``yaw`` about the world z axis."""
    return (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))


# The root moves at (0.5, 0.2, 0) m/s in the world and turns at 0.5 rad/s about z, in its home pose turned by yaw.
# A velocimeter at r from the root reads v + w x r = (0.5 - 0.5 r_y, 0.2 + 0.5 r_x) in the root's frame (yaw 0).
@pytest.mark.parametrize(
    ("name", "yaw", "measured"),
    [
        # G1's IMU site sits at r = (0.04525, 0, -0.08339) m in the pelvis: (0.5, 0.2 + 0.0226250).
        ("G1JoystickFlatTerrain", 0.0, (0.5, 0.222625, 0.5)),
        # H1's IMU site sits on the torso link (at the pelvis origin, torso joint 0 at home) at
        # r = (-0.04452, -0.01891, 0.27756) m: (0.5 + 0.009455, 0.2 - 0.02226).
        ("H1JoystickGaitTracking", 0.0, (0.509455, 0.17774, 0.5)),
        # Spot's IMU is at the trunk origin; turned by 90 degrees, the world's (0.5, 0.2) is (0.2, -0.5) ahead/left.
        ("SpotFlatTerrainJoystick", math.pi / 2, (0.2, -0.5, 0.5)),
        # Barkour's velocimeter is at the torso origin; its gyro site is turned by 180 degrees about z, which keeps
        # the yaw rate's sign.
        ("BarkourJoystick", math.pi / 2, (0.2, -0.5, 0.5)),
    ],
)
def test_tracking_error_is_the_command_minus_the_imu_velocities(name, yaw, measured):
    env = make_task_env(name, num_envs=2, reset_pool_size=2, num_threads=1)
    qpos = env.task.home_qpos.repeat(2, 1)
    qpos[:, 3:7] = torch.tensor(yawed(yaw), dtype=qpos.dtype)
    qvel = torch.zeros_like(env.physics.qvel)
    qvel[:, 0], qvel[:, 1], qvel[:, 5] = 0.5, 0.2, 0.5
    command = torch.tensor([[1.0, 0.2, 0.5], [-1.0, 0.0, 1.0]])
    env.reset_to(qpos, qvel, task_state={"command": command})
    expected = (command.double() - torch.tensor(measured, dtype=torch.float64)).abs()
    error = env.task.command_tracking_error(env.physics, env.task_state)
    torch.testing.assert_close(error.double(), expected, atol=1e-5, rtol=0)

"""The robot-task API in the env core: the reset hook (task state seeded from the state a world resets to) and
the reward terms (summed per episode, logged to tensorboard, printed by the evaluation)."""

import re

import mujoco
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pqn_torch.cuda_graph import forbid_host_syncs
from pqn_torch.envs import BatchedEnv
from pqn_torch.envs.physics import PhysicsConfig, make_physics
from pqn_torch.envs.tasks.base import StartStates, Task, TaskConfig, TaskState, Transition
from pqn_torch.envs.tasks.common import uniform
from pqn_torch.envs.tasks.robot_task import ActionMapping
from pqn_torch.training import evaluate, run_training
from pqn_torch.training.evaluation import format_return
from pqn_torch.training.playback import evaluate_checkpoint

from task_testing import make_task_env, random_actions
from training_testing import tiny_config

SLIDER = """
<mujoco>
  <worldbody>
    <body name="block">
      <joint name="slide" type="slide" axis="1 0 0"/>
      <geom type="box" size="0.1 0.1 0.1" mass="1"/>
    </body>
  </worldbody>
  <actuator><motor joint="slide" ctrlrange="-1 1" ctrllimited="true"/></actuator>
</mujoco>
"""
HISTORY = 3
STEP_KEYS = ("obs", "done", "reward", "episode_return", "episode_reward_terms")


class SliderWithHistory(Task):
    """A block on a rail whose observation is its last three positions, as Spot's or Barkour's histories are.

    ``after_reset`` fills the history with the position a world resets to; ``initial_state`` records the
    start position (it runs after the start state is copied in). Reward terms: ``position`` = -x^2 and
    ``effort`` = -0.1 a^2, the reward their sum.
    """

    name = "SliderWithHistory"
    default_config = TaskConfig(ctrl_dt=0.01, sim_dt=0.01, episode_length=4)
    reward_term_names = ("position", "effort")

    def build_spec(self) -> mujoco.MjSpec:
        return mujoco.MjSpec.from_string(SLIDER)

    def sample_start(self, generator: torch.Generator, num: int, physics) -> StartStates:
        qpos = uniform(generator, (num, 1), -0.5, 0.5, like=physics.qpos)
        return StartStates(qpos=qpos, qvel=torch.zeros_like(qpos))

    def initial_state(self, generator: torch.Generator, num: int, physics) -> TaskState:
        return {"history": physics.qpos.new_zeros(num, HISTORY), "start": physics.qpos[:, 0].clone()}

    def after_reset(self, physics, state: TaskState, reset: torch.Tensor, generator: torch.Generator) -> None:
        frame = physics.qpos[:, :1].expand(-1, HISTORY)
        state["history"].copy_(torch.where(reset.unsqueeze(-1), frame, state["history"]))

    def transition(self, physics, action: torch.Tensor, state: TaskState, generator: torch.Generator) -> Transition:
        state["history"].copy_(torch.cat([state["history"][:, 1:], physics.qpos[:, :1]], dim=-1))
        terms = {"position": -(physics.qpos[:, 0] ** 2), "effort": -0.1 * (action**2).sum(-1)}
        obs, critic_obs = self.observe(physics, state, generator)
        never = torch.zeros(physics.num_worlds, dtype=torch.bool, device=physics.device)
        return Transition(sum(terms.values()), obs, critic_obs, never, reward_terms=terms)  # type: ignore[arg-type]

    def observe(self, physics, state: TaskState, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return state["history"].clone(), state["history"].clone()


def slider_env(num_envs: int = 4, host_shortcuts: bool = True, **overrides) -> BatchedEnv:
    task = SliderWithHistory(**overrides)
    model = task.build_spec().compile()
    config = PhysicsConfig(substeps=task.substeps, naconmax=None, njmax=None, num_threads=1)
    physics = make_physics("mujoco", model, num_envs, torch.device("cpu"), config)
    task.bind(model, physics.device, physics.dtype)
    return BatchedEnv(task, physics, seed=2, reset_pool_size=16, host_shortcuts=host_shortcuts)


def run_slider(host_shortcuts: bool) -> list[dict[str, torch.Tensor]]:
    """Staggered episodes (worlds reset in different steps) with recorded positions, state and results."""
    env = slider_env(host_shortcuts=host_shortcuts)
    first = env.reset(staggered=True)
    records = [{"obs": first["obs"], "qpos": env.physics.qpos[:, 0].clone(), "start": env.task_state["start"].clone()}]
    for action in random_actions(env, 12):
        result = env.step(action)
        records.append(
            {
                **{key: result[key] for key in STEP_KEYS if key in result.keys()},
                "qpos": env.physics.qpos[:, 0].clone(),
                "start": env.task_state["start"].clone(),
                "totals": torch.stack(list(env.reward_term_totals.values())),
            }
        )
    return records


def test_reset_hook_seeds_the_history_with_the_state_each_world_resets_to():
    records = run_slider(host_shortcuts=True)
    first = records[0]
    torch.testing.assert_close(first["obs"], first["qpos"].float().unsqueeze(-1).expand(-1, HISTORY))
    reset_worlds = 0
    for before, after in zip(records, records[1:], strict=False):
        done = after["done"]
        reset_worlds += int(done.sum())
        # A world that just reset sees only its new start position; the others shifted in their new position.
        started = after["qpos"].float().unsqueeze(-1).expand(-1, HISTORY)
        continued = torch.cat([before["obs"][:, 1:], after["qpos"].float().unsqueeze(-1)], dim=-1)
        torch.testing.assert_close(after["obs"], torch.where(done.unsqueeze(-1), started, continued))
        # initial_state ran after the copy: the recorded start is the position the world restarted from.
        torch.testing.assert_close(after["start"][done], after["qpos"][done])
        torch.testing.assert_close(after["start"][~done], before["start"][~done])
    assert 4 < reset_worlds < 4 * 12  # staggered: worlds reset in different steps


def test_reset_hook_draws_the_same_with_or_without_host_shortcuts_and_makes_no_host_sync():
    fast, masked = run_slider(host_shortcuts=True), run_slider(host_shortcuts=False)
    for a, b in zip(fast, masked, strict=True):
        for key in a:
            assert torch.equal(a[key], b[key]), key
    env = slider_env(host_shortcuts=False)
    env.reset()
    with forbid_host_syncs():
        for action in random_actions(env, 6):  # crosses the end of the 4-step episodes
            env.step(action)
    assert int(env.stats["episodes"]) == 4


def test_reset_to_keeps_the_given_task_state_over_what_the_hook_seeds():
    env = slider_env(num_envs=2)
    history = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=torch.float64)
    qpos = torch.tensor([[0.25], [-0.25]], dtype=torch.float64)
    seeded = env.reset_to(qpos, torch.zeros(2, 1))["obs"]
    torch.testing.assert_close(seeded, qpos.float().expand(-1, HISTORY))
    given = env.reset_to(qpos, torch.zeros(2, 1), task_state={"history": history})["obs"]
    torch.testing.assert_close(given, history.float())


def test_reward_terms_add_up_to_the_returns_per_episode_and_over_finished_episodes():
    records = run_slider(host_shortcuts=True)
    finished = torch.zeros(2, dtype=torch.float64)
    returns = 0.0
    for record in records[1:]:
        terms = record["episode_reward_terms"]
        torch.testing.assert_close(terms.sum(-1), record["episode_return"])
        done = record["done"]
        finished += terms[done].double().sum(0)
        returns += float(record["episode_return"][done].sum())
        torch.testing.assert_close(record["totals"], finished)
    assert finished.sum().item() == pytest.approx(returns, rel=1e-6) and returns < 0
    # The effort term of the first step, by hand: -0.1 a^2 (a single actuator).
    action = random_actions(slider_env(), 1)[0]
    effort = records[1]["episode_reward_terms"][:, 1]
    torch.testing.assert_close(effort, -0.1 * action[:, 0] ** 2)


def test_reward_terms_must_match_the_declared_names():
    env = slider_env()
    env.task.reward_term_names = ("effort", "position")
    env.reward_term_names = env.task.reward_term_names
    env.reset()
    with pytest.raises(ValueError, match=r"reported reward terms \['position', 'effort'\], but its reward_term_names"):
        env.step(torch.zeros(4, 1))


@pytest.mark.parametrize("name", ["Go1JoystickFlatTerrain", "Go1Getup", "Go1Handstand"])
def test_go1_reward_term_shares_add_up_to_the_step_rewards(name):
    """Each Go1 term's share dt * scale * term, plus what the [0, 1e4] clip changed, sums to the reward."""
    env = make_task_env(name, num_envs=4, episode_length=6)
    assert env.reward_term_names == (*env.task.reward_scales, "clipping")
    env.reset()
    for action in random_actions(env, 8):
        result = env.step(action)
        sums = result["episode_reward_terms"].sum(-1)
        torch.testing.assert_close(sums, result["episode_return"], atol=1e-6, rtol=1e-5)
    evaluated = evaluate(lambda obs: torch.zeros(obs.shape[0], 12), env)
    assert evaluated.episodes == 4
    assert sum(evaluated.mean_reward_terms.values()) == pytest.approx(evaluated.mean_return, abs=1e-5)


def test_go1_share_of_each_term_is_dt_times_scale_times_term():
    env = make_task_env("Go1Handstand", num_envs=2, obs_noise_level=0.0)
    env.reset()
    action = torch.zeros(2, 12)
    result = env.step(action)
    terms = env.task.reward_terms(env.physics)  # the handstand's terms read only the physics state
    shares = result["episode_reward_terms"]
    for column, name in enumerate(env.task.reward_scales):
        expected = (0.02 * env.task.reward_scales[name] * terms[name]).float()
        torch.testing.assert_close(shares[:, column], expected)
    unclipped = sum(0.02 * scale * terms[name] for name, scale in env.task.reward_scales.items())
    torch.testing.assert_close(shares[:, -1], (unclipped.clamp(0, 1e4) - unclipped).float(), atol=1e-7, rtol=0)


def test_go1_step_with_reward_terms_and_autoreset_makes_no_host_sync():
    env = make_task_env("Go1JoystickFlatTerrain", num_envs=2, episode_length=2, perturbations=True)
    env.host_shortcuts = False
    env.reset()
    with forbid_host_syncs():
        for action in random_actions(env, 3):
            result = env.step(action)
    assert int(env.stats["episodes"]) == 2 and result["episode_reward_terms"].shape == (2, 17)


def test_training_logs_reward_term_means_that_add_up_to_the_episode_return(tmp_path):
    config = tiny_config(task="Go1JoystickFlatTerrain", num_envs=4, episode_length=8, eval_envs=2, total_timesteps=128)
    run_training(config, tmp_path, show_progress=False)
    events = EventAccumulator(str(next((tmp_path / "tensorboard").glob("events.*"))))
    events.Reload()
    term_tags = sorted(tag for tag in events.Tags()["scalars"] if tag.startswith("reward_terms/"))
    assert len(term_tags) == 17 and {"reward_terms/tracking_lin_vel", "reward_terms/clipping"} <= set(term_tags)
    returns = {event.step: event.value for event in events.Scalars("train/episode_return")}
    assert len(returns) >= 2
    for step, episode_return in returns.items():
        total = sum(next(e.value for e in events.Scalars(tag) if e.step == step) for tag in term_tags)
        assert total == pytest.approx(episode_return, abs=1e-4)
    report = evaluate_checkpoint(tmp_path, episodes=2)
    assert "over 2 episodes (mean length 8)" in report
    assert "\nreward terms (mean per episode): tracking_lin_vel " in report and ", clipping " in report
    assert "\nmilestones" not in report  # the Go1 pays no success term and has no stages
    slopes = r"\ntracking slope \(measured on commanded; 1 follows, 0 ignores\): vx \S+, vy \S+, yaw rate \S+\n"
    assert re.search(slopes, report), report  # two worlds with random commands: they vary
    tracking_tags = {f"eval/tracking_{kind}_{name}" for kind in ("error", "slope") for name in ("vx", "vy", "yaw_rate")}
    assert tracking_tags <= set(events.Tags()["scalars"])


class _GoalEnv:
    """Two worlds with a ``success`` reward term: world 0 pays it on step 2 of 3, the step before its episode ends;
    world 1 on step 4, in its second episode (its first ends at step 2), which does not count."""

    num_envs, device, episode_length = 2, torch.device("cpu"), 4
    reward_term_names = ("box_target", "success")
    lengths = torch.tensor([3, 2])
    paid_at = torch.tensor([2, 4])

    class task:  # noqa: N801 - stands in for a task object
        name = "Goal"

    def reset(self):
        self.t, self.terms = 0, torch.zeros(2, 2)
        return {"obs": torch.zeros(2, 1)}

    def step(self, action):
        self.t += 1
        step = torch.full((2,), self.t)
        self.terms += torch.stack([torch.full((2,), 0.5), 2.0 * (step == self.paid_at).float()], dim=-1)
        done = step == self.lengths
        return {
            "obs": torch.zeros(2, 1),
            "done": done,
            "episode_return": self.terms.sum(dim=-1),
            "episode_length": step,
            "episode_reward_terms": self.terms.clone(),
        }


def test_evaluation_counts_the_episodes_that_were_paid_a_success_term_as_a_milestone():
    result = evaluate(lambda obs: torch.zeros(2, 1), _GoalEnv())
    assert result.lengths.tolist() == [3, 2]
    assert result.reward_terms["success"].tolist() == [2.0, 0.0]
    assert result.milestones == {"success": result.milestones["success"]}
    assert result.milestones["success"].tolist() == [True, False]
    assert result.milestone_shares == {"success": 0.5}


class _JoystickEnv:
    """Two worlds with 4-step episodes whose command on step t (world w) is [t + w, -t, 0.5]; the robot does
    [0.5 vx + 0.1, 2 vy, 0.3]. Counted: steps 1-3 of each world (the last step shows the next episode's reset)."""

    num_envs, device, episode_length = 2, torch.device("cpu"), 4

    class task:  # noqa: N801 - stands in for a joystick task
        name = "Joystick"

        @staticmethod
        def commanded_and_measured(physics, state):
            command = state["command"]
            measured = torch.stack([0.5 * command[:, 0] + 0.1, 2.0 * command[:, 1], torch.full((2,), 0.3)], dim=-1)
            return command, measured

    physics = None

    def reset(self):
        self.t = 0
        return {"obs": torch.zeros(2, 1)}

    def step(self, action):
        self.t += 1
        t = torch.full((2,), float(self.t))
        self.task_state = {"command": torch.stack([t + torch.tensor([0.0, 1.0]), -t, torch.full((2,), 0.5)], dim=-1)}
        step = torch.full((2,), self.t)
        return {"obs": torch.zeros(2, 1), "done": step == 4, "episode_return": t, "episode_length": step}


def test_evaluation_measures_how_the_robot_follows_its_commands():
    """By hand over the six counted steps: vx commands 1, 2, 3, 2, 3, 4 (mean 2.5) give |c - (0.5 c + 0.1)| = 1.15
    on average and slope 0.5; vy commands -1, -2, -3 twice give |c - 2c| = 2 and slope 2; yaw rate 0.5 against
    0.3 gives 0.2 and no slope (the command never varied)."""
    result = evaluate(lambda obs: torch.zeros(2, 1), _JoystickEnv())
    assert result.tracking_error is not None and result.tracking_slope is not None
    assert result.tracking_error.tolist() == pytest.approx([1.15, 2.0, 0.2])
    assert result.tracking_slope[:2].tolist() == pytest.approx([0.5, 2.0])
    assert result.tracking_slope[2].isnan()


class _StagedEnv:
    """Three worlds with episodes of 3, 5 and 2 steps and a counter ``t`` of the steps taken in the current episode
    (reset to 0 when one ends, as an autoreset does); its task's stages: ``halfway`` at t >= 2, ``end`` at t >= 4."""

    num_envs, device, episode_length = 3, torch.device("cpu"), 6
    lengths = torch.tensor([3, 5, 2])

    class task:  # noqa: N801 - stands in for a task object
        name = "Staged"

        @staticmethod
        def episode_milestones(physics, state):
            return {"halfway": state["t"] >= 2, "end": state["t"] >= 4}

    physics = None

    def reset(self):
        self.task_state = {"t": torch.zeros(3, dtype=torch.int64)}
        return {"obs": torch.zeros(3, 1)}

    def step(self, action):
        t = self.task_state["t"] + 1
        done = t == self.lengths
        self.task_state["t"] = torch.where(done, 0, t)
        returns, lengths = t.float(), t
        return {"obs": torch.zeros(3, 1), "done": done, "episode_return": returns, "episode_length": lengths}


def test_returns_read_with_three_significant_digits_below_100():
    assert [format_return(x) for x in (0.00145, 0.2219, -3.614, 11.0, 17.95, 99.94, 417.86, -1234.0)] == [
        "0.00145",
        "0.222",
        "-3.61",
        "11.0",
        "17.9",
        "99.9",
        "417.9",
        "-1234.0",
    ]


def test_evaluation_counts_the_milestones_each_first_episode_reached():
    """World 0 reaches ``halfway`` (t = 2 of 3), not ``end``; world 1 both (t = 4 of 5); world 2 neither: its first
    episode ends at t = 2, the step that would reach ``halfway``, and its second episode does not count."""
    result = evaluate(lambda obs: torch.zeros(3, 1), _StagedEnv())
    assert result.lengths.tolist() == [3, 5, 2]
    assert result.milestones["halfway"].tolist() == [True, True, False]
    assert result.milestones["end"].tolist() == [False, True, False]


def test_the_report_of_a_task_with_a_goal_counts_its_successes(tmp_path):
    config = tiny_config(task="PandaPickCubeCartesian", num_envs=4, episode_length=8, eval_envs=2, total_timesteps=64)
    run_training(config, tmp_path, show_progress=False)
    report = evaluate_checkpoint(tmp_path, episodes=4)
    count = re.search(r"\nmilestones, episodes of 4 that reached each: success (\d) \((\d+) %\)\n", report)
    mean_share = re.search(r" success (-?[\d.]+),", report)
    assert count is not None and mean_share is not None, report
    assert int(count.group(2)) == 25 * int(count.group(1))
    assert float(mean_share.group(1)) == pytest.approx(2.0 * int(count.group(1)) / 4, abs=0.01)  # success pays 2
    events = EventAccumulator(str(next((tmp_path / "tensorboard").glob("events.*"))))
    events.Reload()
    assert "eval/milestone_success" in events.Tags()["scalars"]  # training logs the share at each evaluation


def test_action_mapping_names_one_of_the_three_references():
    assert ActionMapping(scale=0.3, reference="ctrl").reference == "ctrl"
    with pytest.raises(ValueError, match=r"action reference must be one of \('home', 'joints', 'ctrl'\), got 'pose'"):
        ActionMapping(scale=0.5, reference="pose")

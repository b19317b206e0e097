"""Deterministic evaluation: every env plays one episode with the noise-free actor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from pqn_torch.envs.interface import VecEnv


@dataclass
class EvalResult:
    """Undiscounted returns and lengths of the episodes that finished within the step budget, and the sums of
    each reward term over those episodes (tasks that report terms: ``env.reward_term_names``)."""

    returns: torch.Tensor
    lengths: torch.Tensor
    reward_terms: dict[str, torch.Tensor] = field(default_factory=dict)
    tracking_error: torch.Tensor | None = None
    """Joystick tasks (``task.commanded_and_measured``): mean |command - measured| per command component (vx, vy,
    yaw rate) over every step the worlds spent in their first episode; ``None`` for other tasks."""
    tracking_slope: torch.Tensor | None = None
    """Joystick tasks: per command component, the least-squares slope of the measured on the commanded value over
    the same steps (1: the robot does what it is told, 0: it ignores the command); NaN where the command did not
    vary (a held command); ``None`` for other tasks."""
    milestones: dict[str, torch.Tensor] = field(default_factory=dict)
    """Per stage, whether each episode reached it [episodes] (bool): ``success`` for the tasks that pay a ``success``
    reward term (the Panda Cartesian and Robotiq tasks, LeapCubeReorient: the term was positive in some step), then
    the stages of a task that defines ``task.episode_milestones`` (reached in a step before the episode's last);
    empty for other tasks."""

    @property
    def episodes(self) -> int:
        return int(self.returns.numel())

    @property
    def mean_return(self) -> float:
        return float(self.returns.mean()) if self.episodes else float("nan")

    @property
    def std_return(self) -> float:
        return float(self.returns.std(correction=0)) if self.episodes else float("nan")

    @property
    def mean_length(self) -> float:
        return float(self.lengths.float().mean()) if self.episodes else float("nan")

    @property
    def mean_reward_terms(self) -> dict[str, float]:
        """Each reward term's mean sum per episode (they add up to :attr:`mean_return`); empty without episodes."""
        return {name: float(sums.mean()) for name, sums in self.reward_terms.items()} if self.episodes else {}

    @property
    def milestone_shares(self) -> dict[str, float]:
        """Each stage's share of the episodes that reached it (:attr:`milestones`); empty without episodes."""
        return {name: float(hits.float().mean()) for name, hits in self.milestones.items()} if self.episodes else {}


def format_return(value: float) -> str:
    """A return for people to read: one decimal from 100 up, else three significant digits (the robot tasks pay
    0.002-20 per episode, where one decimal shows 0.0 for a policy that has learned something)."""
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:#.3g}"


class StepRecorder(Protocol):
    """Watches an evaluation (e.g. :class:`pqn_torch.training.video.VideoRecorder`)."""

    def start(self) -> None:
        """Called right after the env's reset."""

    def capture(self, result: Any) -> None:
        """Called with each step's result."""


@torch.no_grad()
def evaluate(
    policy: Callable[[torch.Tensor], torch.Tensor],
    env: VecEnv,
    num_steps: int | None = None,
    recorder: StepRecorder | None = None,
) -> EvalResult:
    """Reset ``env`` and run ``num_steps`` (default: one episode length) steps of ``policy``.

    ``policy`` maps raw observations to actions deterministically (``agent.act``, a
    :class:`pqn_torch.policy.Policy`). Each env contributes its first finished episode; the raw
    (un-normalized) reward is summed, and so is each reward term (``episode_reward_terms`` of an env with
    ``reward_term_names``). One host copy, at the end.
    """
    task = getattr(env, "task", None)
    trained_on, task_name = getattr(policy, "task", None), getattr(task, "name", None)
    if trained_on is not None and task_name is not None and trained_on != task_name:
        raise ValueError(
            f"the policy was trained on {trained_on} and cannot act in {task_name}; evaluate it in a {trained_on} env"
        )
    steps = env.episode_length if num_steps is None else num_steps
    observation = env.reset()["obs"]
    if recorder is not None:
        recorder.start()
    finished = torch.zeros(env.num_envs, dtype=torch.bool, device=env.device)
    returns = torch.zeros(env.num_envs, device=env.device)
    lengths = torch.zeros(env.num_envs, dtype=torch.int64, device=env.device)
    term_names = tuple(getattr(env, "reward_term_names", ()))
    terms = torch.zeros(env.num_envs, len(term_names), device=env.device)
    velocities = getattr(task, "commanded_and_measured", None)
    milestones = getattr(task, "episode_milestones", None)
    reached: dict[str, torch.Tensor] = {}
    # Per command component, sums over the steps of first episodes of: command, measured, |command - measured|,
    # command^2, command * measured (float64: 1e5-1e6 steps of values near 1).
    tracking_sums = torch.zeros(5, 3, dtype=torch.float64, device=env.device)
    tracking_steps = torch.zeros((), dtype=torch.float64, device=env.device)
    for _ in range(steps):
        result = env.step(policy(observation))
        if recorder is not None:
            recorder.capture(result)
        first = result["done"] & ~finished
        playing = ~result["done"] & ~finished  # worlds still in their first episode; a finished one shows its next
        if velocities is not None:
            command, measured = (v.double() for v in velocities(env.physics, env.task_state))  # type: ignore[attr-defined]
            parts = torch.stack([command, measured, (command - measured).abs(), command * command, command * measured])
            tracking_sums += torch.where(playing.unsqueeze(-1), parts, 0.0).sum(dim=1)
            tracking_steps += playing.sum()
        if milestones is not None:
            for name, hit in milestones(env.physics, env.task_state).items():  # type: ignore[attr-defined]
                reached[name] = reached.get(name, torch.zeros_like(hit)) | (hit & playing)
        returns = torch.where(first, result["episode_return"], returns)
        lengths = torch.where(first, result["episode_length"], lengths)
        if term_names:
            terms = torch.where(first.unsqueeze(-1), result["episode_reward_terms"], terms)
        finished |= first
        observation = result["obs"]
    finished = finished.cpu()
    terms = terms.cpu()[finished]
    reward_terms = {name: terms[:, column] for column, name in enumerate(term_names)}
    # A success term pays on the step the goal is met, which may end the episode (Panda): its sum counts that step,
    # where a stage read from the physics after the step would see the next episode's reset.
    succeeded = {"success": reward_terms["success"] > 0} if "success" in reward_terms else {}
    return EvalResult(
        returns=returns.cpu()[finished],
        lengths=lengths.cpu()[finished],
        reward_terms=reward_terms,
        **(_tracking(tracking_sums.cpu(), float(tracking_steps)) if velocities is not None else {}),
        milestones=succeeded | {name: hits.cpu()[finished] for name, hits in reached.items()},
    )


def _tracking(sums: torch.Tensor, steps: float) -> dict[str, torch.Tensor]:
    """``tracking_error`` and ``tracking_slope`` [3] (float32) from :func:`evaluate`'s sums over ``steps`` steps."""
    command, measured, error, command_sq, product = sums / max(steps, 1.0)
    variance = command_sq - command * command
    varied = variance > 1e-9  # a held command has none: no slope
    slope = torch.where(varied, (product - command * measured) / torch.where(varied, variance, 1.0), torch.nan)
    return {"tracking_error": error.float(), "tracking_slope": slope.float()}

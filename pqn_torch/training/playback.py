"""Using a finished checkpoint: evaluate its policy in a fresh env of its task, and record a video of it."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pqn_torch.envs import make_env, resolve_device
from pqn_torch.envs.physics import resolve_backend
from pqn_torch.envs.tasks import TASKS, get_task_class
from pqn_torch.envs.tasks.robot_task import checked_command
from pqn_torch.policy import Policy
from pqn_torch.training.evaluation import evaluate, format_return
from pqn_torch.training.run_dir import unwritable_reason
from pqn_torch.training.video import VIDEO_SIZE, VideoRecorder


def evaluate_checkpoint(
    location: str | Path,
    episodes: int = 10,
    device: str = "auto",
    backend: str = "auto",
    seed: int = 0,
    video: bool = False,
    video_path: Path | None = None,
    video_size: tuple[int, int] = VIDEO_SIZE,
    report: Callable[[str], None] | None = None,
    randomize: bool | None = None,
    command: list[float] | None = None,
) -> str:
    """Run ``episodes`` deterministic episodes (one per env) of the checkpoint's policy; report mean +- std return
    and, for tasks with reward terms, each term's mean per episode.

    With ``video``, world 0's first episode is rendered into an mp4 (default: ``eval_<step>.mp4``
    beside the checkpoint, or ``eval_<step>_2.mp4``, ... if taken; an existing file is never replaced).
    A checkpoint with non-finite weights (a diverged run) is refused. ``randomize``: evaluate in randomized
    (true) or nominal (false) worlds; ``None`` = as the policy was trained. ``command``: joystick tasks only,
    hold ``[vx, vy, yaw rate]`` for the whole episode (the report gives the mean tracking error per component,
    as it does for every joystick task). ``report`` gets a progress line every tenth of the episode (steps
    done; with a video, frames rendered) and one before the mp4 is finished.
    """
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if video_path is not None:
        _check_video_path(Path(video_path))
    torch_device = resolve_device(device)
    policy = Policy.from_checkpoint(location, device=torch_device)
    overrides = dict(policy.task_overrides)
    if randomize is not None:
        overrides.update(randomize=randomize, randomize_every_reset=False)  # each world's episode: one draw
    if command is not None:
        if not _has_joystick(policy.task):
            joystick_tasks = ", ".join(name for name in sorted(TASKS) if _has_joystick(name))
            raise ValueError(
                f"command= holds a joystick command; {policy.task} has none (joystick tasks: {joystick_tasks})"
            )
        overrides["fixed_command"] = checked_command(command, "command")
    env = make_env(policy.task, episodes, torch_device, resolve_backend(backend, torch_device), seed, **overrides)
    recorder = None
    if video:
        assert policy.checkpoint is not None  # from_checkpoint sets it
        path = (
            Path(video_path)
            if video_path
            else _free_name(Path(policy.checkpoint).with_name(f"eval_{policy.env_steps}.mp4"))
        )
        recorder = VideoRecorder(env, path, video_size)
    try:
        result = evaluate(policy, env, recorder=_Progress(env.episode_length, episodes, recorder, report))
    except BaseException:
        if recorder is not None:
            recorder.abort()
        raise
    if recorder is not None:
        if report is not None:
            report(f"finishing the mp4 ({recorder.writer.frames} frames)")
        recorder.close()
    lines = [f"warning: {path} is unreadable ({reason}); skipped it" for path, reason in policy.skipped]
    lines.append(
        f"{policy.task}{' (randomized worlds)' if env.task.config.randomize else ''}, checkpoint "
        f"{policy.checkpoint} (env step {policy.env_steps:,}): return "
        f"{format_return(result.mean_return)} ± {format_return(result.std_return)} over {result.episodes} episodes "
        f"(mean length {result.mean_length:.0f})"
    )
    if result.tracking_error is not None:
        held = f"held [{', '.join(f'{v:g}' for v in command)}]" if command is not None else "random commands"
        vx, vy, yaw = result.tracking_error.tolist()
        lines.append(
            f"tracking error ({held}), mean |command - measured|: "
            f"vx {vx:.3f} m/s, vy {vy:.3f} m/s, yaw rate {yaw:.3f} rad/s"
        )
        assert result.tracking_slope is not None  # set with the error
        if not result.tracking_slope.isnan().all():
            slopes = ", ".join(
                f"{name} {'-' if math.isnan(value) else f'{value:.2f}'}"
                for name, value in zip(("vx", "vy", "yaw rate"), result.tracking_slope.tolist(), strict=True)
            )
            lines.append(f"tracking slope (measured on commanded; 1 follows, 0 ignores): {slopes}")
    if result.milestone_shares:
        counts = ", ".join(
            f"{name} {int(result.milestones[name].sum())} ({100.0 * share:.0f} %)"
            for name, share in result.milestone_shares.items()
        )
        lines.append(f"milestones, episodes of {result.episodes} that reached each: {counts}")
    if result.mean_reward_terms:
        shares = ", ".join(f"{name} {value:.2f}" for name, value in result.mean_reward_terms.items())
        lines.append(f"reward terms (mean per episode): {shares}")
    if recorder is not None:
        lines.append(f"video: {recorder.path} ({recorder.writer.frames} frames at {recorder.fps:.3g} fps)")
    return "\n".join(lines)


def _has_joystick(task: str) -> bool:
    """Whether ``task`` takes a held joystick command (its config has ``fixed_command``)."""
    return "fixed_command" in {f.name for f in dataclasses.fields(get_task_class(task).default_config)}


def _check_video_path(path: Path) -> None:
    """A video file we may create: its folder exists and is writable, and nothing is there yet."""
    if path.exists():
        raise ValueError(
            f"video_path {path} exists already; choose another file (an existing file is never overwritten)"
        )
    folder = path.parent
    if not folder.is_dir() or unwritable_reason(folder):
        raise ValueError(
            f"video_path {path}: the folder {folder} does not exist or is not writable; "
            "give a file in a writable folder"
        )


def _free_name(path: Path) -> Path:
    """``path``, or ``<stem>_2<suffix>``, ``_3``, ... if taken."""
    candidate, number = path, 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.stem}_{number}{path.suffix}")
    return candidate


class _Progress:
    """An evaluation's step hook: drives the video recorder (if any) and reports every tenth of the episode."""

    def __init__(
        self, steps: int, episodes: int, recorder: VideoRecorder | None, report: Callable[[str], None] | None
    ) -> None:
        self.steps, self.episodes, self.recorder, self.report = steps, episodes, recorder, report
        self.every = max(1, steps // 10)
        self.done = 0

    def start(self) -> None:
        if self.recorder is not None:
            self.recorder.start()

    def capture(self, result: Any) -> None:
        if self.recorder is not None:
            self.recorder.capture(result)
        self.done += 1
        if self.report is not None and (self.done % self.every == 0 or self.done == self.steps):
            frames = f", {self.recorder.writer.frames} video frames rendered" if self.recorder is not None else ""
            self.report(f"step {self.done:,}/{self.steps:,} of {self.episodes} episodes{frames}")

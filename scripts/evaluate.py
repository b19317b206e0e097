"""Evaluate a trained PQN checkpoint: N deterministic episodes, optionally an mp4 of one of them (headless).

    python scripts/evaluate.py checkpoint=$RUN [episodes=10] [video=true] [video_path=FILE.mp4]
        [device=auto] [backend=auto] [seed=0] [randomize=true|false] [command=[VX,VY,YAW_RATE]]

``checkpoint`` is a checkpoint file or a run dir (its latest checkpoint is used). ``randomize``: evaluate in
domain-randomized (true) or nominal (false) worlds, tasks with a randomizer only; unset: as the policy trained.
``command`` (joystick tasks): hold this velocity command for the whole episode, e.g. ``command=[1.0,0,0]`` (1 m/s
forward); the report adds the mean tracking error per component (joystick tasks always report it).
Progress (steps done, video frames rendered) goes to stderr every tenth of the episode; the result to stdout.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

try:
    from pqn_torch.training.options import UsageError, parse_options
    from pqn_torch.training.playback import evaluate_checkpoint
    from pqn_torch.training.schema import checkpoint_option, option
    from pqn_torch.training.video import VideoUnavailable
except ImportError as import_error:  # e.g. MUJOCO_GL naming a backend this machine lacks
    print(f"evaluate.py: {import_error}", file=sys.stderr)
    sys.exit(2)


@dataclass
class EvaluateOptions:
    checkpoint: str = checkpoint_option()
    episodes: int = option(10, "a positive integer")
    video: bool = False
    video_path: str | None = option(None, "an .mp4 file to create")
    device: str = option("auto", "auto, cpu, cuda or cuda:<index>")
    backend: str = option("auto", "auto, warp or mujoco")
    seed: int = option(0, "an integer >= 0")
    randomize: bool | None = option(None, "true or false (unset: as trained)")
    command: list[float] | None = option(None, "[vx, vy, yaw rate], e.g. [1.0,0,0] (joystick tasks)")


def main(argv: list[str]) -> int:
    try:
        options = parse_options("evaluate.py", argv, EvaluateOptions)
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2
    try:
        report = evaluate_checkpoint(
            options.checkpoint,
            episodes=options.episodes,
            device=options.device,
            backend=options.backend,
            seed=options.seed,
            video_path=(Path(options.video_path) if options.video_path else None),
            video=options.video,
            report=lambda line: print(f"evaluate.py: {line}", file=sys.stderr, flush=True),
            randomize=options.randomize,
            command=options.command,
        )
    except (ValueError, FileNotFoundError, FileExistsError, VideoUnavailable) as error:
        print(f"evaluate.py: {error}", file=sys.stderr)
        return 2
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

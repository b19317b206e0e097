"""Evaluate a trained PQN checkpoint: N deterministic episodes, optionally an mp4 of one of them.

    python scripts/evaluate.py checkpoint=outputs/CheetahRun/<run dir> [episodes=10] [video=true]
        [video_path=<file.mp4>] [device=auto] [backend=auto] [seed=0]

``checkpoint`` is a checkpoint file or a run dir (its latest checkpoint is used).
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import OmegaConf

try:
    from pqn_torch.training.playback import VideoUnavailable, evaluate_checkpoint
except ImportError as import_error:  # e.g. MUJOCO_GL naming a backend this machine lacks
    print(f"evaluate.py: {import_error}", file=sys.stderr)
    sys.exit(2)

DEFAULTS = {"checkpoint": None, "episodes": 10, "video": False, "video_path": None, "device": "auto",
            "backend": "auto", "seed": 0}


def main(argv: list[str]) -> int:
    options = OmegaConf.merge(OmegaConf.create(DEFAULTS), OmegaConf.from_dotlist(argv))
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        print(f"evaluate.py: unknown option(s) {unknown}; valid: {sorted(DEFAULTS)}", file=sys.stderr)
        return 2
    if not isinstance(options.checkpoint, str) or not options.checkpoint:
        print(f"evaluate.py: checkpoint must be a checkpoint file or run dir (checkpoint=<path>), got "
              f"{options.checkpoint!r}", file=sys.stderr)
        return 2
    if not isinstance(options.video, bool):
        print(f"evaluate.py: video must be true or false, got {options.video!r}", file=sys.stderr)
        return 2
    try:
        report = evaluate_checkpoint(options.checkpoint, episodes=options.episodes, device=options.device,
                                     backend=options.backend, seed=options.seed,
                                     video_path=(Path(options.video_path) if options.video_path else None),
                                     video=options.video)
    except (ValueError, FileNotFoundError, VideoUnavailable) as error:
        print(f"evaluate.py: {error}", file=sys.stderr)
        return 2
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Checkpoint files: one ``torch.save`` dict per file, never overwritten, found again by step count.

A checkpoint holds the agent (networks, optimizers, normalizers, schedule counters), the RNG
states, the environment step counter and the run's config, everything ``train.py resume=...``
needs to continue where the run stopped.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_DIR = "checkpoints"
FORMAT_VERSION = 1
_NAME = re.compile(r"^step_(\d+)\.pt$")


def checkpoint_name(env_steps: int) -> str:
    """File name of the checkpoint taken after ``env_steps`` environment steps (sorts by step)."""
    return f"step_{env_steps:012d}.pt"


def prepare_checkpoint_dir(run_dir: Path) -> Path:
    """``run_dir/checkpoints``, created; refuses a folder that already holds checkpoints."""
    directory = Path(run_dir) / CHECKPOINT_DIR
    if directory.is_dir() and any(_NAME.match(p.name) for p in directory.iterdir()):
        raise FileExistsError(f"{directory} already holds checkpoints of another run; run in a new directory "
                              f"(the default) and pass resume={run_dir} to continue that run")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def save_checkpoint(directory: Path, env_steps: int, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as the checkpoint of ``env_steps``; an existing file is an error, never replaced."""
    path = Path(directory) / checkpoint_name(env_steps)
    if path.exists():
        raise FileExistsError(f"checkpoint {path} exists already; refusing to overwrite it")
    partial = path.with_suffix(".pt.partial")
    torch.save({"format": FORMAT_VERSION, "env_steps": env_steps, **payload}, partial)
    os.replace(partial, path)  # atomic: a crash mid-write never leaves a truncated checkpoint behind
    return path


def find_checkpoint(location: str | Path) -> Path:
    """The checkpoint file at ``location``: the file itself, or the latest one in a run dir or its checkpoints/."""
    path = Path(location).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"no checkpoint file or run directory at {path}")
    for directory in (path / CHECKPOINT_DIR, path):
        found = sorted(p for p in directory.glob("step_*.pt") if _NAME.match(p.name)) if directory.is_dir() else []
        if found:
            return found[-1]
    raise FileNotFoundError(f"no checkpoint (step_*.pt) in {path} or {path / CHECKPOINT_DIR}")


def load_checkpoint(location: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load the checkpoint at ``location`` (see :func:`find_checkpoint`) onto ``map_location``."""
    path = find_checkpoint(location)
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path} is not a pqn-torch checkpoint (format {FORMAT_VERSION})")
    payload["path"] = str(path)
    return payload

"""Checkpoint files: one ``torch.save`` dict per file, never overwritten, found again by step count.

A checkpoint holds the agent (networks, optimizers, normalizers, schedule counters), the RNG
states, the environment step counter and the run's config, everything ``train.py resume=...``
needs to continue where the run stopped. A run keeps only some of the checkpoints it wrote
(:func:`checkpoints_to_keep`): the latest few, which include the final one, and the best by evaluation return.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

CHECKPOINT_DIR = "checkpoints"
FORMAT_VERSION = 1
_NAME = re.compile(r"^step_(\d+)\.pt$")
REQUIRED_KEYS = ("format", "env_steps", "agent", "config")


class CheckpointReadError(ValueError):
    """A checkpoint file that cannot be loaded (truncated, corrupt, or not ours); one line, with the path."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class CheckpointWriteError(OSError):
    """A checkpoint that could not be written (disk full, read-only, ...); one line, with the path."""


def checkpoint_name(env_steps: int) -> str:
    """File name of the checkpoint taken after ``env_steps`` environment steps (sorts by step)."""
    return f"step_{env_steps:012d}.pt"


def save_checkpoint(directory: Path, env_steps: int, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as the checkpoint of ``env_steps``; an existing file is an error, never replaced.

    The checkpoint is serialized in memory first, so a full or read-only disk surfaces as one
    :class:`CheckpointWriteError` naming the file and the reason, with no partial file left behind.
    """
    path = Path(directory) / checkpoint_name(env_steps)
    if path.exists():
        raise FileExistsError(f"checkpoint {path} exists already; refusing to overwrite it")
    buffer = io.BytesIO()
    torch.save({"format": FORMAT_VERSION, "env_steps": env_steps, **payload}, buffer)
    partial = path.with_suffix(".pt.partial")
    try:
        with open(partial, "wb") as handle:
            handle.write(buffer.getbuffer())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)  # atomic: a crash mid-write never leaves a truncated checkpoint behind
    except OSError as error:
        raise CheckpointWriteError(f"could not write checkpoint {path}: {error.strerror or error}") from None
    finally:
        partial.unlink(missing_ok=True)
    return path


@dataclass(frozen=True)
class SavedCheckpoint:
    """A checkpoint this run wrote, with the evaluation return at its env step (None: no evaluation there)."""

    path: Path
    eval_return: float | None = None


def best_checkpoint(saved: Sequence[SavedCheckpoint]) -> SavedCheckpoint | None:
    """The checkpoint with the highest evaluation return (the later one on a tie; NaN never counts), if any."""
    evaluated = [
        (entry.eval_return, index, entry)
        for index, entry in enumerate(saved)
        if entry.eval_return is not None and entry.eval_return == entry.eval_return
    ]
    return max(evaluated, key=lambda item: item[:2])[2] if evaluated else None


def checkpoints_to_keep(saved: Sequence[SavedCheckpoint], keep_last: int | None) -> list[SavedCheckpoint]:
    """Of a run's checkpoints (oldest first), those it keeps: the latest ``keep_last`` and :func:`best_checkpoint`.

    The latest is the final (or the last good) checkpoint, which resume and evaluate pick from a run dir.
    ``keep_last=None`` keeps every checkpoint.
    """
    if keep_last is None:
        return list(saved)
    best = best_checkpoint(saved)
    latest = saved[max(0, len(saved) - keep_last) :]
    return [entry for entry in saved if entry in latest or entry == best]


def prune_checkpoints(saved: Sequence[SavedCheckpoint], keep_last: int | None) -> list[SavedCheckpoint]:
    """Delete the checkpoints of ``saved`` that :func:`checkpoints_to_keep` drops; returns the kept ones."""
    kept = checkpoints_to_keep(saved, keep_last)
    for entry in saved:
        if entry not in kept:
            entry.path.unlink(missing_ok=True)
    return kept


def checkpoint_files(location: str | Path) -> list[Path]:
    """The checkpoint file at ``location``, or a run dir's checkpoints (in it or its checkpoints/), newest first."""
    path = Path(location).expanduser()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"no checkpoint file or run directory at {path}")
    for directory in (path / CHECKPOINT_DIR, path):
        found = sorted(p for p in directory.glob("step_*.pt") if _NAME.match(p.name)) if directory.is_dir() else []
        if found:
            return found[::-1]
    raise FileNotFoundError(f"no checkpoint (step_*.pt) in {path} or {path / CHECKPOINT_DIR}")


def find_checkpoint(location: str | Path) -> Path:
    """The checkpoint file at ``location``: the file itself, or the latest one in a run dir or its checkpoints/."""
    return checkpoint_files(location)[0]


def load_checkpoint(location: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load the checkpoint at ``location`` onto ``map_location``; an unreadable file is one clear error.

    For a run dir, the newest readable checkpoint is loaded; the newer ones that could not be read
    are listed under ``"skipped"`` as ``(path, reason)`` pairs so the caller can say so.
    """
    files = checkpoint_files(location)
    skipped: list[tuple[str, str]] = []
    for path in files:
        try:
            payload = _read(path, map_location)
        except CheckpointReadError as error:
            if len(files) == 1:
                raise
            skipped.append((str(path), error.reason))
            continue
        payload["path"] = str(path)
        payload["skipped"] = skipped
        return payload
    raise CheckpointReadError(
        f"none of the {len(files)} checkpoints in {location} is readable (newest: {skipped[0][0]}: {skipped[0][1]})",
        skipped[0][1],
    )


def _read(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols; the error below says it all
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        reason = "it holds Python objects, not only tensors (not a pqn-torch checkpoint)"
        raise CheckpointReadError(f"{path} is not a readable checkpoint: {reason}", reason) from None
    except PermissionError as error:
        reason = f"cannot open it ({error.strerror})"
        raise CheckpointReadError(f"{path} is not a readable checkpoint: {reason}", reason) from None
    except Exception:  # torch.load fails on damaged files with assorted error types (EOF, zip, seek, key errors)
        reason = "the file is truncated or corrupt"
        raise CheckpointReadError(f"{path} is not a readable checkpoint: {reason}", reason) from None
    missing = [key for key in REQUIRED_KEYS if not isinstance(payload, dict) or key not in payload]
    if missing or payload.get("format") != FORMAT_VERSION:
        reason = f"not a pqn-torch checkpoint (format {FORMAT_VERSION})"
        raise CheckpointReadError(f"{path} is {reason}", reason)
    return payload


def weight_tensors(agent: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The agent's learned state: parameters and floating-point buffers (normalizer statistics), by name.

    Leaves out ``metric_sums``: logged metrics, checked separately, not weights.
    """
    buffers = [(name, b) for name, b in agent.named_buffers() if b.is_floating_point() and name != "metric_sums"]
    return [*agent.named_parameters(), *buffers]


def nonfinite_weights(agent: nn.Module) -> list[str]:
    """Names of the agent's weight tensors that hold NaN or inf (one host sync)."""
    tensors = weight_tensors(agent)
    flags = torch.stack([torch.isfinite(t).all() for _, t in tensors]).tolist()
    return [name for (name, _), finite in zip(tensors, flags, strict=True) if not finite]


def listed(names: list[str], limit: int = 3) -> str:
    """``a, b, c and 4 more``: a short list for a one-line message."""
    shown = ", ".join(names[:limit])
    return f"{shown} and {len(names) - limit} more" if len(names) > limit else shown

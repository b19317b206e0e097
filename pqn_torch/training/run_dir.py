"""The run directory: owned by exactly one run, checked before training starts, left clean by a failed start.

Two runs started in the same second with the same seed get the same default directory name; the
second one must neither crash at its first checkpoint nor mix its ``eval.csv`` and tensorboard
events into the first's. A run claims its directory by creating ``checkpoints/`` in it (an atomic
``mkdir``: exactly one process can succeed); a default-named directory that is taken is replaced by
the next free ``<name>_2``, ``<name>_3``, ... A run that fails before training starts removes what it
created, so a mistyped command line leaves nothing on disk; a refused multirun (``-m``) also removes the
``multirun.yaml`` hydra wrote into its sweep dir before the first job (:func:`remove_refused_sweep`).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from pqn_torch.training.checkpoint import CHECKPOINT_DIR

RUN_OUTPUTS = (CHECKPOINT_DIR, "tensorboard", "eval.csv", "config.yaml")
"""What a run writes into its directory; a directory holding any of these belongs to another run."""
MAX_RENAMES = 1000
SWEEP_RECORD = "multirun.yaml"
"""What hydra writes into a multirun's sweep dir before its first job starts."""
_sweep_dirs: list[Path] = []


class SweepDirs(Callback):
    """Hydra callback (``hydra.callbacks`` in configs/config.yaml) that notes each multirun's sweep dir."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        _sweep_dirs.append(Path(config.hydra.sweep.dir))


def remove_refused_sweep() -> None:
    """After a refused start: the noted sweep dirs' ``multirun.yaml`` where nothing else is left beside it.

    A sweep dir that holds any other file (an earlier job's outputs) is left as it is.
    """
    for sweep_dir in _sweep_dirs:
        record = sweep_dir / SWEEP_RECORD
        if not record.is_file() or [path for path in sweep_dir.rglob("*") if not path.is_dir()] != [record]:
            continue
        record.unlink()
        for directory in sorted(sweep_dir.rglob("*"), key=lambda path: len(path.parts), reverse=True):
            _remove_empty_dirs(directory)
        _remove_empty_dirs(sweep_dir)


class RunDirError(OSError):
    """The run directory cannot be used (not writable, full, taken); one line, with the path."""


def claim_run_dir(run_dir: str | Path, rename_if_taken: bool) -> Path:
    """Create ``run_dir`` (parents included) and claim it for this run; returns the directory claimed.

    A directory that already holds another run's outputs is refused, or, with ``rename_if_taken``
    (a default-named directory), replaced by the next free ``<name>_<n>``.
    """
    requested = Path(run_dir)
    for attempt in range(1, MAX_RENAMES + 1):
        candidate = requested if attempt == 1 else requested.with_name(f"{requested.name}_{attempt}")
        try:
            if any((candidate / name).exists() for name in RUN_OUTPUTS):
                raise FileExistsError(errno.EEXIST, "taken")
            candidate.mkdir(parents=True, exist_ok=True)
            (candidate / CHECKPOINT_DIR).mkdir()
            return candidate
        except FileExistsError:
            if candidate.exists() and not candidate.is_dir():
                raise RunDirError(
                    f"run dir {candidate} exists and is not a directory; choose another with hydra.run.dir=<dir>"
                ) from None
            if not rename_if_taken:
                raise RunDirError(_taken_reason(candidate)) from None
        except OSError as error:
            raise RunDirError(
                f"cannot create run dir {candidate}: {error.strerror or error}; choose a writable one "
                "with hydra.run.dir=<dir>"
            ) from None
    raise RunDirError(f"run dir {requested}: {MAX_RENAMES} taken variants of this name; choose another name")


def _taken_reason(run_dir: Path) -> str:
    """Why a chosen ``run_dir`` is refused, by what it holds: a run to resume, or only another run's claim."""
    found = [name for name in RUN_OUTPUTS if (run_dir / name).exists()]
    checkpoints = run_dir / CHECKPOINT_DIR
    if any(checkpoints.glob("step_*.pt")):
        return (
            f"run dir {run_dir} already holds the outputs of another run; run in a new directory (the default), "
            f"and to continue that run pass resume={run_dir}"
        )
    if found == [CHECKPOINT_DIR]:
        return (
            f"run dir {run_dir} holds an empty {CHECKPOINT_DIR}/ and nothing else: another run claimed it (one "
            f"starting now, or one stopped before it wrote anything); remove {checkpoints} if no run is using it, or "
            "choose another directory with hydra.run.dir=<dir>"
        )
    return (
        f"run dir {run_dir} holds another run's {', '.join(found)} but no checkpoint to resume from; remove them "
        "or choose another directory with hydra.run.dir=<dir>"
    )


def unwritable_reason(path: str | Path) -> str | None:
    """Why ``path`` (which may not exist yet) could not be created, judged by its nearest existing ancestor.

    The ancestor is tried for real (a directory made and removed in it): permission bits say nothing for
    root, nor for file systems such as /proc that refuse new entries to everyone.
    """
    existing = Path(path).absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".write_test_", dir=existing))
    except OSError as error:
        return f"{existing} is not writable ({error.strerror or error})"
    return None


def output_file_problem(option: str, path: Path) -> str | None:
    """One line naming ``option``, ``path`` and why the file could not be created there; ``None`` if it could."""
    reason = unwritable_reason(path.parent)
    return f"{option}={path}: {reason}; give a file in a writable folder" if reason else None


def check_writable(run_dir: Path, checkpoint_bytes: int, checkpoints: int) -> str | None:
    """Fail now, not at the first checkpoint, if ``run_dir`` cannot take a file or one checkpoint.

    Returns a warning line when the free space holds one checkpoint but not all ``checkpoints``.
    """
    probe = run_dir / CHECKPOINT_DIR / ".write_test"
    try:
        with open(probe, "wb") as handle:
            handle.write(b"\0" * 4096)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        raise RunDirError(
            f"run dir {run_dir} is not writable ({error.strerror or error}); choose another with hydra.run.dir=<dir>"
        ) from None
    finally:
        probe.unlink(missing_ok=True)
    free = shutil.disk_usage(run_dir).free
    needed = checkpoint_bytes * checkpoints
    if free < checkpoint_bytes:
        raise RunDirError(
            f"run dir {run_dir} has {_megabytes(free)} free, less than one checkpoint "
            f"({_megabytes(checkpoint_bytes)}); free some space or choose another dir with "
            "hydra.run.dir=<dir>"
        )
    if free < needed:
        return (
            f"warning: {run_dir} has {_megabytes(free)} free, less than the {checkpoints} checkpoints of this run "
            f"need ({_megabytes(needed)}); checkpoints that do not fit are reported and skipped"
        )
    return None


def remove_failed_start(claimed: Path | None, requested: Path) -> None:
    """Undo a start that failed before training: what this run created, then empty directories above it.

    Removes only ``checkpoints/`` (empty at that point) and ``config.yaml`` from the claimed dir, then
    every empty directory from the claimed and the requested dir up to (not including) the working
    directory; never a file it did not write.
    """
    if claimed is not None:
        (claimed / "config.yaml").unlink(missing_ok=True)
        _remove_empty_dirs(claimed / CHECKPOINT_DIR)
    for directory in {path for path in (claimed, requested) if path is not None}:
        _remove_empty_dirs(directory)


def _remove_empty_dirs(directory: Path) -> None:
    """``rmdir`` ``directory`` and its parents while they are empty, stopping at the working directory."""
    keep = {Path.cwd().resolve(), *Path.cwd().resolve().parents}
    current = directory.resolve()
    while current not in keep:
        try:
            current.rmdir()
        except OSError:
            return
        current = current.parent


def _megabytes(size: int) -> str:
    return f"{size / 2**20:,.1f} MB"

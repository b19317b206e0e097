"""The alg preset of a run whose command line names none: the task's own, or its CPU-sized twin on a CPU.

purejaxql's presets are sized for a GPU (the DM-suite one: 1024 envs, 5e7 steps, hours on a laptop; all
presets: ``docs/algorithm.md#settings-per-domain``).
``configs/config.yaml``'s ``cpu_presets`` maps each such preset to a CPU-sized one; ``train.py`` runs
that one when the run's device is the CPU, unless the command line chose ``alg=`` itself or resumes a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from pqn_torch.envs import resolve_device


@dataclass(frozen=True)
class PresetChoice:
    """The preset to run instead of the task's (``None``: keep it) and the line that says so (may be empty)."""

    preset: str | None
    message: str


def choose_preset(config: dict[str, Any], task_preset: str | None, alg_on_command_line: bool) -> PresetChoice:
    """Whether to swap ``task_preset`` (the composed config's ``alg`` choice) for its CPU-sized twin."""
    if alg_on_command_line or config.get("resume") or task_preset is None:
        return PresetChoice(None, "")
    device = resolve_device(config.get("device", "auto"))
    cpu_presets = config.get("cpu_presets") or {}
    if device.type != "cpu" or task_preset in cpu_presets.values():
        return PresetChoice(None, "")
    task = config["task"]["name"]
    twin = cpu_presets.get(task_preset)
    reason = "device cpu" if torch.cuda.is_available() else "no CUDA here"
    if twin is None:
        return PresetChoice(
            None,
            f"{reason}, and the '{task_preset}' preset of {task} has no CPU-sized twin "
            f"(cpu_presets in configs/config.yaml): running it as configured, sized for a GPU",
        )
    return PresetChoice(
        twin,
        f"{reason}: running {task} with the CPU-sized preset alg={twin} instead of its "
        f"GPU-sized '{task_preset}' preset; to run that one anyway: "
        f"python scripts/train.py task={task} alg={task_preset}",
    )

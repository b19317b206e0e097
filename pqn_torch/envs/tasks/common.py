"""Helpers shared by the DM Control Suite task files: loading the suite's MJCF and Playground's edits."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import mujoco
import torch


def _dm_suite_dir() -> Path:
    """dm_control's ``suite/`` folder, found without importing dm_control (whose import opens GL)."""
    spec = importlib.util.find_spec("dm_control")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("dm_control is not installed; it ships the DM Control Suite MJCF files: pip install dm_control")
    return Path(list(spec.submodule_search_locations)[0]) / "suite"


DM_SUITE_DIR = _dm_suite_dir()


def load_dm_suite_spec(
    xml_name: str,
    *,
    iterations: int,
    ls_iterations: int,
    solver: mujoco.mjtSolver | None = None,
    integrator: mujoco.mjtIntegrator = mujoco.mjtIntegrator.mjINT_EULER,
    disable: tuple[mujoco.mjtDisableBit, ...] = (),
    enable: tuple[mujoco.mjtEnableBit, ...] = (),
) -> mujoco.MjSpec:
    """The DM Control Suite model ``xml_name`` with MuJoCo Playground's faster solver settings.

    Playground replaces each suite model's ``<option>``: fewer solver iterations, Euler (or the
    given) integrator instead of RK4, ``eulerdamp`` disabled, and the energy flag dropped. The flags
    listed in ``disable``/``enable`` are set on top of that; every other flag is reset to default.
    """
    spec = mujoco.MjSpec.from_file(str(DM_SUITE_DIR / xml_name))
    option = spec.option
    option.iterations = iterations
    option.ls_iterations = ls_iterations
    option.integrator = integrator
    if solver is not None:
        option.solver = solver
    option.disableflags = int(mujoco.mjtDisableBit.mjDSBL_EULERDAMP)
    for flag in disable:
        option.disableflags |= int(flag)
    option.enableflags = 0
    for flag in enable:
        option.enableflags |= int(flag)
    return spec


def joint_ranges(mj_model: mujoco.MjModel, joint_names: list[str]) -> tuple[list[float], list[float]]:
    """Lower and upper limits of the named joints, in order."""
    lows = [float(mj_model.joint(name).range[0]) for name in joint_names]
    highs = [float(mj_model.joint(name).range[1]) for name in joint_names]
    return lows, highs


def uniform(
    generator: torch.Generator, shape: tuple[int, ...], low: torch.Tensor | float, high: torch.Tensor | float,
    like: torch.Tensor,
) -> torch.Tensor:
    """Uniform samples in [low, high) of ``shape`` on ``like``'s device and dtype, from ``generator``.

    Drawn in float32 whatever the physics dtype, so a seed gives the same states on every backend.
    """
    unit = torch.rand(shape, generator=generator, device=like.device, dtype=torch.float32).to(like.dtype)
    return low + (high - low) * unit

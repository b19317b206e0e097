"""Helpers shared by the DM Control Suite task files: loading the suite's MJCF and Playground's edits."""

from __future__ import annotations

import copy
import importlib.util
import math
from pathlib import Path

import mujoco
import torch

from pqn_torch.envs.tasks.rewards import tolerance


def _dm_suite_dir() -> Path:
    """dm_control's ``suite/`` folder, found without importing dm_control (whose import opens GL)."""
    spec = importlib.util.find_spec("dm_control")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "dm_control is not installed; it ships the DM Control Suite MJCF files: pip install dm_control"
        )
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


def uniform(
    generator: torch.Generator,
    shape: tuple[int, ...],
    low: torch.Tensor | float,
    high: torch.Tensor | float,
    like: torch.Tensor,
) -> torch.Tensor:
    """Uniform samples in [low, high) of ``shape`` on ``like``'s device and dtype, from ``generator``.

    Drawn in float32 whatever the physics dtype, so a seed gives the same states on every backend.
    """
    unit = torch.rand(shape, generator=generator, device=like.device, dtype=torch.float32).to(like.dtype)
    return low + (high - low) * unit


def normal(
    generator: torch.Generator,
    shape: tuple[int, ...],
    std: float,
    like: torch.Tensor,
    mean: float = 0.0,
) -> torch.Tensor:
    """Gaussian samples ``mean + std * N(0, 1)`` of ``shape`` on ``like``'s device and dtype.

    Drawn in float32 whatever the physics dtype, like :func:`uniform`, for backend-independent seeds.
    """
    unit = torch.randn(shape, generator=generator, device=like.device, dtype=torch.float32).to(like.dtype)
    return mean + std * unit


def add_body_sensor(
    spec: mujoco.MjSpec,
    name: str,
    sensor_type: mujoco.mjtSensor,
    body: str,
    *,
    inertial: bool = False,
    relative_to: str | None = None,
) -> None:
    """Add a frame sensor (framepos, framexaxis, framequat, ...) of ``body`` to ``spec``.

    Tasks read body poses through sensors so both backends expose them (the native backend has no
    ``xpos``/``xmat``). ``inertial`` measures the body's inertial frame (``xipos``/``ximat``) instead
    of its own frame (``xpos``/``xmat``); ``relative_to`` expresses the value in another body's frame.
    """
    objtype = mujoco.mjtObj.mjOBJ_BODY if inertial else mujoco.mjtObj.mjOBJ_XBODY
    reference = {}
    if relative_to is not None:
        reference = {"reftype": mujoco.mjtObj.mjOBJ_XBODY, "refname": relative_to}
    spec.add_sensor(name=name, type=sensor_type, objtype=objtype, objname=body, **reference)


def random_planar_qpos(
    generator: torch.Generator,
    num: int,
    joint_low: torch.Tensor,
    joint_high: torch.Tensor,
    like: torch.Tensor,
) -> torch.Tensor:
    """Poses of a planar body: root pitch (``qpos[2]``) uniform in [-pi, pi), hinges ``qpos[3:]`` in range.

    The reset of Playground's walker and hopper (dm_control's randomization of rotational and limited
    joints); the two root slides stay at 0. ``like`` is a qpos tensor giving width, device and dtype.
    """
    qpos = torch.zeros(num, like.shape[-1], dtype=like.dtype, device=like.device)
    qpos[:, 2] = uniform(generator, (num,), -math.pi, math.pi, like=qpos)
    low, high = joint_low.to(qpos), joint_high.to(qpos)
    qpos[:, 3:] = uniform(generator, (num, low.numel()), low, high, like=qpos)
    return qpos


def small_control(action: torch.Tensor) -> torch.Tensor:
    """dm_control's mild effort term: ``(4 + mean quadratic tolerance of each action) / 5``, in [0.8, 1]."""
    return (4 + tolerance(action, margin=1, value_at_margin=0, sigmoid="quadratic").mean(dim=-1)) / 5


_MOCAP_COPIED_FIELDS = {
    "geom": (
        "type",
        "size",
        "quat",
        "material",
        "rgba",
        "group",
        "contype",
        "conaffinity",
        "condim",
        "priority",
        "friction",
        "solmix",
        "solref",
        "solimp",
        "margin",
        "gap",
        "mass",
        "density",
    ),
    "site": ("type", "size", "quat", "material", "rgba", "group"),
}


def move_into_mocap_body(spec: mujoco.MjSpec, name: str) -> None:
    """Re-parent the world geom or site ``name`` into a new mocap body ``name`` placed where it was.

    Playground's edit for randomized targets: a target then moves by writing ``mocap_pos`` per world
    (which the env's start-state pool carries) instead of by editing the model all worlds share.
    """
    kind, element = "geom", spec.geom(name)
    if element is None:
        kind, element = "site", spec.site(name)
    if element is None or element.parent.name != "world":
        raise ValueError(f"model {spec.modelname!r} has no geom or site {name!r} attached to the world body")
    # Copies: array fields are views into the element, which is deleted before the copy is added.
    values = {field: copy.copy(getattr(element, field)) for field in _MOCAP_COPIED_FIELDS[kind]}
    body = spec.worldbody.add_body(name=name, pos=element.pos.copy(), mocap=True)
    spec.delete(element)
    moved = body.add_geom(name=name) if kind == "geom" else body.add_site(name=name)
    for field, value in values.items():
        setattr(moved, field, value)


def model_mocap_positions(mj_model: mujoco.MjModel) -> torch.Tensor:
    """[nmocap, 3] positions the model gives its mocap bodies; a reset moves targets from there.

    Read from the model, not from a world's current ``mocap_pos``, so a start state never inherits a
    target that ``reset_to`` placed earlier.
    """
    positions = torch.zeros(mj_model.nmocap, 3, dtype=torch.float64)
    for body, mocap in enumerate(mj_model.body_mocapid):
        if mocap >= 0:
            positions[mocap] = torch.as_tensor(mj_model.body_pos[body])
    return positions

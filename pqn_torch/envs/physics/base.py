"""The one torch-facing view of N batched MuJoCo worlds, shared by every physics backend.

Tasks and the env core only ever touch the tensors listed on :class:`Physics`; whether they live in
MuJoCo Warp arrays (zero-copy ``warp.to_torch`` views) or in numpy buffers stepped by MuJoCo C
(``torch.from_numpy`` views) is the backend's business. Everything a task reads that is not ``qpos``,
``qvel`` or ``mocap_*`` comes from model *sensors* (``sensordata``), so both backends expose exactly
the same quantities with the same timing: after ``step()`` the sensors hold the values MuJoCo computed
at the start of the last physics step (as ``mjx.step``/``mj_step`` leave ``xpos`` etc.), after
``forward()`` they match the current state.

Buffer overflows. MuJoCo Warp preallocates its contact and constraint buffers; what does not fit is dropped
from the step. :meth:`Physics.take_overflow` reports, per world and per kind (``OVERFLOW_KINDS``), whether
that happened since the last call, as a tensor op; the env counts it. Native MuJoCo has no such buffers
(its arena fills only far beyond these tasks, and says so through MuJoCo's own warnings), so it reports none.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import mujoco
import numpy as np
import torch

OVERFLOW_KINDS = ("constraints", "contacts", "broadphase", "hfield", "other", "solver_iterations")
"""What a step can run out of: constraint rows (``njmax``), contacts (narrowphase and CCD) and collision
candidates (broadphase), both held in the contact buffer, heightfield collisions, other MuJoCo Warp buffers
(EPA horizon, islands, contact-match and tactile sensors), and solver (or line-search) iterations. The last
is expected with Playground's capped iterations: counted apart, never warned about (``BUFFER_KINDS`` are)."""
BUFFER_KINDS = OVERFLOW_KINDS[:-1]


@dataclass(frozen=True)
class PhysicsConfig:
    """What a backend needs besides the compiled model.

    Attributes:
        substeps: physics steps per control step (``ctrl_dt / sim_dt``).
        naconmax: contact buffer size over all worlds (MuJoCo Warp only; ``None`` = backend default).
        contacts_per_world: contact buffer per world (MuJoCo Warp only); when set, it replaces ``naconmax``.
        njmax: constraint rows per world (MuJoCo Warp only; ``None`` = backend default).
        num_threads: worker threads (native MuJoCo backend only; ``None`` = all available cores).
        per_world_fields: ``MjModel`` array fields that get per-world values (domain randomization), see
            :meth:`Physics.model_field`; every other model field stays shared by all worlds.

    ``naconmax``, ``contacts_per_world`` and ``njmax`` are a task's ``TaskConfig`` fields of the same names.
    """

    substeps: int = 1
    naconmax: int | None = None
    contacts_per_world: int | None = None
    njmax: int | None = None
    num_threads: int | None = None
    per_world_fields: tuple[str, ...] = ()


class Physics(ABC):
    """N MuJoCo worlds of one model behind batched, writable torch tensors.

    Tensor views (first dim = world, dtype ``self.dtype``, on ``self.device``); writing into them
    in place changes the simulation state:

    - ``qpos`` [N, nq], ``qvel`` [N, nv], ``act`` [N, na], ``ctrl`` [N, nu]
    - ``mocap_pos`` [N, nmocap, 3], ``mocap_quat`` [N, nmocap, 4]
    - ``sensordata`` [N, nsensordata], ``time`` [N]
    - ``xfrc_applied`` [N, nbody, 6]: external force and torque per body (world frame, at the body's centre
      of mass), an input like ``ctrl``: it acts on every physics step until it is written again
    - ``qacc`` [N, nv]: read-only, the accelerations of the last physics step (as ``mj_step`` leaves them)
    """

    mj_model: mujoco.MjModel
    num_worlds: int
    device: torch.device
    dtype: torch.dtype
    config: PhysicsConfig

    qpos: torch.Tensor
    qvel: torch.Tensor
    act: torch.Tensor
    ctrl: torch.Tensor
    mocap_pos: torch.Tensor
    mocap_quat: torch.Tensor
    sensordata: torch.Tensor
    time: torch.Tensor
    xfrc_applied: torch.Tensor
    qacc: torch.Tensor
    _no_overflow: torch.Tensor | None = None

    @abstractmethod
    def step(self, num_substeps: int | None = None) -> None:
        """Advance every world by ``num_substeps`` physics steps (default ``config.substeps``) with ``ctrl``."""

    @abstractmethod
    def forward(self) -> None:
        """Recompute ``sensordata`` (and all derived quantities) for the current state, all worlds."""

    @abstractmethod
    def clear_warmstart(self, mask: torch.Tensor) -> None:
        """Forget solver warm-start for worlds where ``mask`` [N] is true (they were just reset).

        Must be a pure tensor op (no host sync) so it can live inside a captured CUDA graph.
        """

    def take_overflow(self) -> torch.Tensor:
        """[N, len(OVERFLOW_KINDS)] bool: which worlds overflowed what since the last call; then forgets it.

        A pure tensor op (no host sync, graph-safe). This default is the native backend's: never.
        """
        if self._no_overflow is None:
            self._no_overflow = torch.zeros(self.num_worlds, len(OVERFLOW_KINDS), dtype=torch.bool, device=self.device)
        return self._no_overflow

    def overflow_fix(self, kind: str) -> str:
        """What to change so that ``kind`` (one of ``BUFFER_KINDS``) stops overflowing, for a message."""
        return f"no {kind} buffer to overflow on this backend"

    @abstractmethod
    def model_field(self, name: str) -> torch.Tensor:
        """Writable per-world values [N, ...] of ``MjModel`` field ``name`` (one of ``config.per_world_fields``).

        A write changes that world's model from its next physics call; where MuJoCo derives constants from
        the field (``mj_setConst``: masses, ``qpos0``, armature, ...), call :meth:`recompute_constants` next.
        """

    @abstractmethod
    def recompute_constants(self, mask: torch.Tensor) -> None:
        """Recompute the model constants MuJoCo derives (``mj_setConst``) for the worlds in ``mask`` [N] from
        their per-world fields; the other worlds' constants stay bit for bit as they are."""

    def sensor(self, name: str) -> torch.Tensor:
        """The ``sensordata`` columns of the sensor called ``name`` ([N, dim] view)."""
        return self.sensordata[:, sensor_slice(self.mj_model, name)]


def sensor_slice(mj_model: mujoco.MjModel, name: str) -> slice:
    """Column range of a named sensor in ``sensordata``; one clear error if it does not exist."""
    try:
        sensor = mj_model.sensor(name)
    except KeyError:
        names = [mj_model.sensor(i).name for i in range(mj_model.nsensor)]
        raise KeyError(f"model has no sensor {name!r}; sensors: {names}") from None
    start = int(sensor.adr[0])
    return slice(start, start + int(sensor.dim[0]))


def check_per_world_fields(mj_model: mujoco.MjModel, names: tuple[str, ...]) -> None:
    """One clear error for a per-world field name that is not a numeric ``MjModel`` array."""
    for name in names:
        value = getattr(mj_model, name, None)
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            raise ValueError(f"per-world model field {name!r} is not a floating-point MjModel array")

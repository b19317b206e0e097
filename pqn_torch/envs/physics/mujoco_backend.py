"""Native MuJoCo (C, float64) on the CPU: N worlds stepped by ``mujoco.batch.Batch`` on a thread pool.

``mujoco.batch.Batch`` (MuJoCo >= 4) keeps every world as one float64 row of its
``mjSTATE_INTEGRATION`` state (time, qpos, qvel, act, solver warm-start, ctrl, mocap, ...), loads a row
into a per-thread ``MjData``, runs ``mj_step``/``mj_forward`` in C without the GIL, saves the row back
and copies the bound derived fields (here ``sensordata``) out. The torch tensors of :class:`Physics` are
``torch.from_numpy`` views of those rows and of that output buffer, so a step costs one C call and no
copy on the Python side, and writing into a view is the world's state at its next call.

Why not ``mujoco.rollout``: it takes and returns ``mjSTATE_FULLPHYSICS``, which lacks the solver
warm-start (``qacc_warmstart``), so consecutive calls could not continue a trajectory the way one
``MjData`` stepped with ``mj_step`` does; the batch's rows carry it, and results are bit-identical to
``mj_step`` on one ``MjData`` per world.
"""

from __future__ import annotations

import copy
import os

import mujoco
import numpy as np
import torch
from mujoco.batch import Batch

from pqn_torch.envs.physics.base import Physics, PhysicsConfig, check_per_world_fields


class MujocoPhysics(Physics):
    """``num_worlds`` worlds of ``mj_model`` in MuJoCo C (float64, CPU); see the module docstring.

    Simulated on a copy of ``mj_model`` with ``mjDSBL_AUTORESET`` set: MuJoCo C would otherwise
    silently reset an unstable world to the model's default pose mid-episode, whereas MuJoCo Warp lets
    the state go non-finite; with the flag both backends hand the instability to the env, which
    terminates and resets the world from its start-state pool.
    """

    def __init__(self, mj_model: mujoco.MjModel, num_worlds: int, device: torch.device, config: PhysicsConfig) -> None:
        device = torch.device(device)
        if device.type != "cpu":
            raise ValueError(f"MujocoPhysics runs on the CPU only, got device {device}; use the warp backend for CUDA")
        if not isinstance(num_worlds, int) or num_worlds < 1:
            raise ValueError(f"num_worlds must be a positive integer, got {num_worlds!r}")
        num_threads = config.num_threads if config.num_threads is not None else available_cores()
        if not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"num_threads must be a positive integer or None (all cores), got {config.num_threads!r}")
        _check_substeps(config.substeps)
        self.mj_model = mj_model
        self.num_worlds = num_worlds
        self.device = torch.device("cpu")
        self.dtype = torch.float64
        self.config = config
        self.num_threads = num_threads

        simulated = copy.copy(mj_model)
        simulated.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_AUTORESET)
        self._batch = Batch(simulated, num_worlds, nthread=num_threads)
        self._batch.reset(stage=mujoco.mjtStage.mjSTAGE_NONE)
        state = {
            name: torch.from_numpy(self._batch.bind(name))
            for name in (
                "qpos",
                "qvel",
                "act",
                "ctrl",
                "mocap_pos",
                "mocap_quat",
                "time",
                "qacc_warmstart",
                "xfrc_applied",
            )
        }
        self.qpos, self.qvel, self.act, self.ctrl = state["qpos"], state["qvel"], state["act"], state["ctrl"]
        self.mocap_pos, self.mocap_quat, self.time = state["mocap_pos"], state["mocap_quat"], state["time"]
        self._warmstart = state["qacc_warmstart"]
        self.xfrc_applied = state["xfrc_applied"]
        # An output too (copied out after every call); exposed like sensordata, to be read only.
        qacc = self._batch.bind("qacc").view()
        qacc.flags.writeable = True
        self.qacc = torch.from_numpy(qacc)
        # The batch rewrites sensordata after every call and hands it out read-only; the env must be able to
        # overwrite it between calls (autoreset copies a start state's sensors in), so expose a writable view.
        sensordata = self._batch.bind("sensordata").view()
        sensordata.flags.writeable = True
        self.sensordata = torch.from_numpy(sensordata)
        check_per_world_fields(mj_model, config.per_world_fields)
        self._per_world = {name: torch.from_numpy(self._batch.expand(name)) for name in config.per_world_fields}
        self.forward()

    def step(self, num_substeps: int | None = None) -> None:
        """``num_substeps`` (default ``config.substeps``) ``mj_step`` calls per world, all inside one C call."""
        substeps = self.config.substeps if num_substeps is None else num_substeps
        _check_substeps(substeps)
        self._batch.step(nstep=substeps)

    def forward(self) -> None:
        """``mj_forward`` in every world, so ``sensordata`` describes the current state."""
        self._batch.forward()

    def clear_warmstart(self, mask: torch.Tensor) -> None:
        """Zero the solver warm-start (``qacc_warmstart``) of the worlds in ``mask``, as ``mj_resetData`` does."""
        self._warmstart.masked_fill_(mask.view(-1, 1), 0.0)

    def model_field(self, name: str) -> torch.Tensor:
        """The batch's own per-world values of ``name`` (``Batch.expand``): a view, written in place."""
        return self._per_world[name]

    def recompute_constants(self, mask: torch.Tensor) -> None:
        """``mj_setConst`` in each world of ``mask`` (``Batch.set_const``), on that world's own model."""
        worlds = mask.nonzero().flatten().tolist()
        if worlds:
            self._batch.set_const(worlds)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _check_substeps(substeps: int) -> None:
    if isinstance(substeps, bool) or not isinstance(substeps, (int, np.integer)) or substeps < 1:
        raise ValueError(f"number of physics steps must be a positive integer, got {substeps!r}")

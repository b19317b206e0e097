"""MuJoCo Warp (float32) on a CUDA GPU or the CPU: the torch tensors are zero-copy views of the warp arrays.

Every :class:`Physics` tensor is ``warp.to_torch`` of the matching ``mujoco_warp.Data`` array, so torch
writes are the simulation's state and ``mujoco_warp.step`` results are visible without a copy.

CUDA graphs. At construction the loop of ``config.substeps`` ``mujoco_warp.step`` calls is captured once
into a warp CUDA graph (on a private torch stream, because CUDA cannot capture on torch's legacy default
stream); ``step()`` replays it on torch's *current* stream, so it is ordered with the torch ops around it.
To capture a whole env step in a torch CUDA graph, just call it inside the capture::

    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = env.step(action)

``step()`` and ``forward()`` notice that torch's current stream is capturing and then launch the
physics kernels themselves on that stream, registered with warp as an external capture
(``wp.capture_begin(external=True)``, in the ``GLOBAL`` capture mode that ``torch.cuda.graph``
uses), so warp records its stream-ordered scratch allocations into the same graph; the kernels
become part of torch's graph. The warp ``Graph`` handle of each such capture is kept for the life
of the physics (as warp's own JAX bridge does) so the kernel modules it uses stay loaded. No host
sync happens in either path. ``pqn_torch.cuda_graph.CapturedCall`` builds the training loop's
rollout graph this way.

Buffers. ``njmax`` (constraint rows per world) and the contact buffer (``contact_capacity``) come from the
task's config. ``put_data`` gets a state with no contacts and no constraints, so the sizes are not checked
against the model's default pose (which no task resets to: Go1's straight-legged pose on the rough terrain
has 112 rows, beyond the task's 60); the env checks them at the task's real start states instead, through
the overflow report. MuJoCo Warp keeps a per-world bitmask of what overflowed (``Data.overflow``,
``mujoco_warp.OverflowType``), sticky until reset; :meth:`WarpPhysics.take_overflow` reads it per kind and
clears it, and :meth:`WarpPhysics.forward` adds the row and contact bits that only a step would set.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import mujoco
import mujoco_warp
import torch
import warp as wp

from pqn_torch.envs.physics.base import OVERFLOW_KINDS, Physics, PhysicsConfig, check_per_world_fields

Overflow = mujoco_warp.OverflowType
ITERATION_LIMITS = Overflow.ITERATIONS | Overflow.LS_ITERATIONS
OVERFLOW_BITS = {
    "constraints": Overflow.NEFC | Overflow.NJMAX_NNZ,
    "contacts": Overflow.NARROWPHASE | Overflow.CCD,
    "broadphase": Overflow.BROADPHASE,
    "hfield": Overflow.HFIELD,
    "other": Overflow.EPA_HORIZON | Overflow.CONTACT_MATCH | Overflow.NVMAX | Overflow.TACTILE,
    "solver_iterations": ITERATION_LIMITS,
}
"""The ``mujoco_warp.OverflowType`` bits of each of ``OVERFLOW_KINDS``."""
SET_CONST_OUTPUTS = (
    "body_subtreemass",
    "body_invweight0",
    "dof_invweight0",
    "tendon_invweight0",
    "tendon_length0",
    "actuator_acc0",
    "eq_data",
    "geom_aabb",
    "geom_rbound",
    "cam_pos0",
    "cam_poscom0",
    "cam_mat0",
    "light_pos0",
    "light_poscom0",
    "light_dir0",
)
"""The per-world model constants ``mujoco_warp.set_const`` writes: batched with any per-world field, so that each
world keeps its own (a shared row would be written by every world at once)."""
REFERENCE_WORLDS = 1024
"""The batch that MuJoCo Playground's per-task ``naconmax`` totals are read against (the DM-suite ``num_envs``)."""


def contact_capacity(naconmax: int | None, num_worlds: int, contacts_per_world: int | None = None) -> int | None:
    """Total contact buffer for ``num_worlds`` worlds, from a task's Playground ``naconmax``.

    A task that states its need per world (``contacts_per_world``, the robot tasks) gets exactly that
    many contacts per world; otherwise the DM-suite reading of ``naconmax`` below applies.

    Playground's ``naconmax`` is one total for the whole batch. Read as a total for
    ``REFERENCE_WORLDS`` worlds, it gives each world ``naconmax / REFERENCE_WORLDS`` contacts; we keep
    that per-world capacity at any batch size, so the total scales with ``num_worlds`` (a fixed total
    would overflow for larger batches and waste memory and kernel threads for small ones).
    ``None`` leaves the choice to MuJoCo Warp (its per-world heuristic times ``num_worlds``).
    """
    if contacts_per_world is not None:
        return contacts_per_world * num_worlds
    if naconmax is None:
        return None
    return math.ceil(naconmax * num_worlds / REFERENCE_WORLDS)


class WarpPhysics(Physics):
    """``num_worlds`` worlds of ``mj_model`` in MuJoCo Warp on ``device``; see the module docstring."""

    def __init__(self, mj_model: mujoco.MjModel, num_worlds: int, device: torch.device, config: PhysicsConfig) -> None:
        if not isinstance(num_worlds, int) or num_worlds < 1:
            raise ValueError(f"num_worlds must be a positive integer, got {num_worlds!r}")
        if isinstance(config.substeps, bool) or not isinstance(config.substeps, int) or config.substeps < 1:
            raise ValueError(f"config.substeps must be a positive integer, got {config.substeps!r}")
        self.mj_model = mj_model
        self.num_worlds = num_worlds
        self.device = _normalize_device(torch.device(device))
        self.dtype = torch.float32
        self.config = config
        wp.init()
        self._wp_device = wp.device_from_torch(self.device)

        empty = mujoco.MjData(mj_model)  # no forward: no contacts or rows to check against the buffers
        check_per_world_fields(mj_model, config.per_world_fields)
        per_world = (*config.per_world_fields, *SET_CONST_OUTPUTS) if config.per_world_fields else ()
        with wp.ScopedDevice(self._wp_device):
            self.model = mujoco_warp.put_model(mj_model, batch_sizes=dict.fromkeys(per_world, num_worlds))
            # Playground's solver settings cap iterations on purpose: hitting the cap is expected, not an
            # error worth a printf from every world; buffer overflows still print (and are counted: take_overflow).
            self.model.opt.warn_overflow &= ~int(ITERATION_LIMITS)
            self.data = mujoco_warp.put_data(
                mj_model,
                empty,
                nworld=num_worlds,
                naconmax=contact_capacity(config.naconmax, num_worlds, config.contacts_per_world),
                njmax=config.njmax,
            )
        # put_data uploads on warp's own stream; torch's stream must not touch the arrays before it is done.
        wp.synchronize_device(self._wp_device)
        data = self.data
        self.qpos, self.qvel = wp.to_torch(data.qpos), wp.to_torch(data.qvel)
        self.act, self.ctrl = wp.to_torch(data.act), wp.to_torch(data.ctrl)
        self.mocap_pos, self.mocap_quat = wp.to_torch(data.mocap_pos), wp.to_torch(data.mocap_quat)
        self.sensordata, self.time = wp.to_torch(data.sensordata), wp.to_torch(data.time)
        self._warmstart = wp.to_torch(data.qacc_warmstart)
        self.xfrc_applied, self.qacc = wp.to_torch(data.xfrc_applied), wp.to_torch(data.qacc)
        self._overflow, self._rows = wp.to_torch(data.overflow), wp.to_torch(data.nefc)
        self._contacts, self._candidates = wp.to_torch(data.nacon), wp.to_torch(data.ncollision)
        self._kind_bits = torch.tensor([int(OVERFLOW_BITS[kind]) for kind in OVERFLOW_KINDS], device=self.device)
        self._peak_rows = torch.zeros((), dtype=self._rows.dtype, device=self.device)
        """The most constraint rows a world asked for, sampled at each ``take_overflow`` (for ``overflow_fix``)."""
        self._peak_contacts = torch.zeros((), dtype=self._contacts.dtype, device=self.device)
        """The most contacts (or collision candidates) the batch asked for, sampled likewise."""

        self._warp_streams: dict[int, wp.Stream] = {}
        self._external_captures: list[wp.Graph] = []
        self._step_graph: wp.Graph | None = None
        if self.device.type == "cuda":
            self._step_graph = self._capture(self._substeps(config.substeps))
        self.forward()
        self.take_overflow()  # the model's default pose is no state of the task's: its needs do not count
        self._peak_rows.zero_()
        self._peak_contacts.zero_()

    def step(self, num_substeps: int | None = None) -> None:
        """``num_substeps`` (default ``config.substeps``) physics steps; the default count replays the graph."""
        substeps = self.config.substeps if num_substeps is None else num_substeps
        if isinstance(substeps, bool) or not isinstance(substeps, int) or substeps < 1:
            raise ValueError(f"number of physics steps must be a positive integer, got {substeps!r}")
        if self._step_graph is not None and substeps == self.config.substeps:
            stream = self._current_stream()
            if not stream.is_capturing:
                wp.capture_launch(self._step_graph, stream=stream)
                return
        self._launch(self._substeps(substeps))

    def forward(self) -> None:
        """``mujoco_warp.forward`` in every world, so ``sensordata`` describes the current state."""
        self._launch(lambda: mujoco_warp.forward(self.model, self.data))
        # mujoco_warp flags rows and contacts beyond the buffers when a step advances time; a forward does not.
        capacity = self.data.naconmax
        flags = (
            (self._rows > self.data.njmax) * int(Overflow.NEFC)
            + (self._contacts > capacity) * int(Overflow.NARROWPHASE)
            + (self._candidates > capacity) * int(Overflow.BROADPHASE)
        )
        self._overflow.bitwise_or_(flags.to(self._overflow.dtype))

    def take_overflow(self) -> torch.Tensor:
        """[N, len(OVERFLOW_KINDS)] bool from MuJoCo Warp's per-world bitmask, which is then cleared (tensor ops).

        The contact buffer is shared by the batch, so a contact or broadphase overflow marks every world.
        """
        torch.maximum(self._peak_rows, self._rows.amax(), out=self._peak_rows)
        torch.maximum(
            self._peak_contacts, torch.maximum(self._contacts, self._candidates).amax(), out=self._peak_contacts
        )
        overflowed = (self._overflow.unsqueeze(-1) & self._kind_bits) != 0
        self._overflow.zero_()
        return overflowed

    def overflow_fix(self, kind: str) -> str:
        """The task override that makes room, sized from the largest need seen so far (reads the device)."""
        if kind == "constraints":
            needed = max(int(self._peak_rows), self.data.njmax + 1)
            return (
                f"njmax is {self.data.njmax} rows per world, up to {needed} were needed: +task.overrides.njmax={needed}"
            )
        if kind in ("contacts", "broadphase"):
            per_world = self.data.naconmax // self.num_worlds
            needed = max(math.ceil(int(self._peak_contacts) / self.num_worlds), per_world + 1)
            return (
                f"the contact buffer holds {per_world} per world, up to {needed} per world were needed: "
                f"+task.overrides.contacts_per_world={needed}"
            )
        if kind == "hfield":
            return "a geom met more heightfield prisms than MuJoCo Warp keeps per pair: a coarser heightfield"
        return "a MuJoCo Warp buffer without a task option (EPA horizon, islands or a sensor's); see its docs"

    def clear_warmstart(self, mask: torch.Tensor) -> None:
        """Zero ``qacc_warmstart`` of the worlds in ``mask`` with one torch op (graph-safe, no host sync)."""
        self._warmstart.masked_fill_(mask.view(-1, 1), 0.0)

    # ----------------------------------------------------------------- per-world model fields
    def model_field(self, name: str) -> torch.Tensor:
        """``warp.to_torch`` of the model's batched array ``name`` (float32, [N, ...], vectors as a last dim)."""
        if name not in self.config.per_world_fields:
            raise KeyError(f"model field {name!r} is shared by all worlds; list it in PhysicsConfig.per_world_fields")
        return wp.to_torch(getattr(self.model, name))

    def recompute_constants(self, mask: torch.Tensor) -> None:
        """``mujoco_warp.set_const`` (all worlds, no host sync), then the worlds outside ``mask`` get their
        previous constants back: MuJoCo Warp's float32 recomputation would differ from MuJoCo C's in the last bits."""
        kept = {name: wp.to_torch(getattr(self.model, name)).clone() for name in SET_CONST_OUTPUTS}
        self._launch(lambda: mujoco_warp.set_const(self.model, self.data, restore=False))
        for name, before in kept.items():
            view = wp.to_torch(getattr(self.model, name))
            if view.numel():
                view.copy_(torch.where(mask.view(-1, *[1] * (view.dim() - 1)), view, before))

    # ----------------------------------------------------------------- launching
    def _substeps(self, count: int) -> Callable[[], None]:
        def run() -> None:
            for _ in range(count):
                mujoco_warp.step(self.model, self.data)

        return run

    def _current_stream(self) -> wp.Stream:
        """Torch's current CUDA stream on our device, as a (cached) warp stream."""
        torch_stream = torch.cuda.current_stream(self.device)
        stream = self._warp_streams.get(torch_stream.cuda_stream)
        if stream is None:
            stream = self._warp_streams[torch_stream.cuda_stream] = wp.stream_from_torch(torch_stream)
        return stream

    def _launch(self, kernels: Callable[[], None]) -> None:
        """Run ``kernels`` now: on the CPU, or on torch's current CUDA stream (inside its capture, if any)."""
        if self.device.type != "cuda":
            with wp.ScopedDevice(self._wp_device):
                kernels()
            return
        stream = self._current_stream()
        with wp.ScopedDevice(self._wp_device), wp.ScopedStream(stream, sync_enter=False):
            if not stream.is_capturing:
                kernels()
                return
            with _gc_paused():
                wp.capture_begin(
                    stream=stream, external=True, force_module_load=False, capture_mode=wp.CaptureMode.GLOBAL
                )
                try:
                    kernels()
                finally:
                    self._external_captures.append(wp.capture_end(stream=stream))

    def _capture(self, kernels: Callable[[], None]) -> wp.Graph:
        """Capture ``kernels`` into a warp CUDA graph on a private stream, ordered after torch's current work.

        One uncaptured run first compiles and loads every kernel module (loading during a capture needs
        a recent driver); the worlds are reset to the model defaults afterwards.
        """
        capture_stream = torch.cuda.Stream(self.device)
        capture_stream.wait_stream(torch.cuda.current_stream(self.device))
        stream = wp.stream_from_torch(capture_stream)
        with wp.ScopedDevice(self._wp_device), wp.ScopedStream(stream, sync_enter=False):
            kernels()
            with _gc_paused(), wp.ScopedCapture(stream=stream, force_module_load=False) as capture:
                kernels()
            mujoco_warp.reset_data(self.model, self.data)
        torch.cuda.current_stream(self.device).wait_stream(capture_stream)
        return capture.graph


def _normalize_device(device: torch.device) -> torch.device:
    if device.type == "cuda":
        return torch.device("cuda", device.index if device.index is not None else torch.cuda.current_device())
    if device.type != "cpu":
        raise ValueError(f"WarpPhysics runs on cpu or cuda[:index], got device {device}")
    return device


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No garbage collection during a capture: a stale warp graph freed then would be recorded into it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()

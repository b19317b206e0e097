"""CUDA graphs for the training loop's two phases, and a CPU check that code could be captured.

A rollout of ``num_steps`` env steps and an update of ``num_epochs x num_minibatches`` gradient
steps each become one ``torch.cuda.CUDAGraph``: after ``warmup_calls`` eager calls (which compile
kernels and create optimizer state), the phase is captured once and then replayed with one
``replay()`` per call, so no Python runs per env step or per minibatch.

We capture with plain ``torch.cuda.graph`` rather than tensordict's ``CudaGraphModule`` or
``torch.compile(mode="reduce-overhead")`` because (1) the rollout's graph must also hold MuJoCo
Warp's kernels, which ``WarpPhysics`` launches on torch's capturing stream (see
``envs/physics/warp_backend.py``), and (2) both phases read and write only long-lived tensors
(parameters, optimizer state, normalizer buffers, the rollout storage, the physics views), so there
are no inputs to copy in or outputs to copy out. The price is the usual CUDA-graph contract: a
captured function must never rebind those tensors, allocate state that outlives it, or sync with
the host. :func:`forbid_host_syncs` checks the last point on any machine, CPU included.

Safety net: a phase whose capture fails (:class:`CapturedCall`) or whose ``torch.compile`` fails
(:class:`CompiledCall`) is not fatal. It logs one warning line naming the phase and the error and runs
eagerly from then on; training goes on, only slower. ``scripts/benchmark.py gpu-check`` tells a user
whether that happens on their GPU and whether the fast paths compute what the eager ones do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

logger = logging.getLogger("pqn_torch")

HOST_SYNC_OPS = frozenset(
    {
        "aten::_local_scalar_dense",  # .item(), bool(t), int(t), float(t), `if t:`
        "aten::nonzero",
        "aten::nonzero_static",
        "aten::masked_select",
        "aten::equal",
        "aten::_unique",
        "aten::_unique2",
        "aten::unique_dim",
        "aten::unique_consecutive",
        "aten::repeat_interleave",
        "aten::lift_fresh",  # torch.tensor / as_tensor / from_numpy: host data, copied at capture time only
    }
)
"""Ops that make the host wait for the GPU (a Python scalar or a data-dependent shape), or that bring
host data in, which a replayed graph would not read again."""

WARMUP_CALLS = 2
"""Eager calls before a :class:`CapturedCall` captures: the first compiles and creates optimizer state."""


class HostSyncError(RuntimeError):
    """A host sync inside code meant to be captured in a CUDA graph."""


class _HostSyncDetector(TorchDispatchMode):
    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        name = func._schema.name
        boolean_index = name == "aten::index" and any(
            isinstance(index, torch.Tensor) and index.dtype == torch.bool for index in (args[1] or ())
        )
        if name == "aten::lift_fresh":
            raise HostSyncError(
                "a tensor built from host data (torch.tensor, as_tensor, from_numpy) cannot be "
                "captured in a CUDA graph: replays would not read the host again"
            )
        if name in HOST_SYNC_OPS or boolean_index:
            raise HostSyncError(
                f"{name}{' with a boolean mask' if boolean_index else ''} needs a host sync on "
                f"CUDA and cannot be captured in a CUDA graph"
            )
        return func(*args, **(kwargs or {}))


@contextmanager
def forbid_host_syncs() -> Iterator[None]:
    """Raise :class:`HostSyncError` at any torch op in the block that a CUDA graph could not hold.

    That is an op that would sync with the host on CUDA, or one that builds a tensor from host data.

    Works on the CPU, where nothing actually syncs: run a task's step, or an agent phase, inside
    it to know it can be graph-captured before ever reaching a GPU. ``Tensor.tolist`` (which
    bypasses torch's dispatcher) is caught too.
    """
    tolist = torch.Tensor.tolist

    def refuse_tolist(tensor: torch.Tensor) -> list:
        raise HostSyncError("Tensor.tolist copies to the host and cannot be captured in a CUDA graph")

    torch.Tensor.tolist = refuse_tolist  # type: ignore[method-assign,assignment]  # on purpose, undone below
    try:
        with _HostSyncDetector():
            yield
    finally:
        torch.Tensor.tolist = tolist  # type: ignore[method-assign]  # undo the patch above


def synchronize(device: torch.device) -> None:
    """Wait until ``device`` has run all queued work (for timing); nothing to wait for on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def describe_error(error: BaseException) -> str:
    """``Type: first line of the message``, at most 300 characters: fits the one warning line."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


class CapturedCall:
    """Call ``fn`` (no arguments, no result) eagerly ``warmup_calls`` times, then as a replayed CUDA graph.

    ``fn`` must keep the contract in the module docstring. Warm-up calls run on a side stream, as
    PyTorch requires before capturing backward passes and optimizer steps. Random numbers drawn
    from ``generators`` (besides torch's default CUDA generator, which is always tracked) advance
    at every replay. With ``enabled=False`` every call is eager: that is the CPU path.

    If the capture fails, the call logs one warning naming ``phase`` and the error, keeps it in
    ``fallback_error`` and runs ``fn`` eagerly, then and at every later call. (A capture records
    the work without running it, so the eager call does the work the failed capture did not.)
    """

    def __init__(
        self,
        fn: Callable[[], object],
        device: torch.device,
        enabled: bool,
        warmup_calls: int = WARMUP_CALLS,
        generators: Sequence[torch.Generator] = (),
        phase: str = "captured",
    ) -> None:
        if enabled and torch.device(device).type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, got {device}; use cuda_graphs=false or auto")
        self.fn = fn
        self.device = torch.device(device)
        self.enabled = enabled
        self.warmup_calls = warmup_calls
        self.generators = tuple(generators)
        self.phase = phase
        self.graph: torch.cuda.CUDAGraph | None = None
        self.fallback_error: str | None = None
        self._eager_calls = 0

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self) -> None:
        if not self.enabled:
            self.fn()
        elif self.graph is not None:
            self.graph.replay()
        elif self._eager_calls < self.warmup_calls:
            self._eager_calls += 1
            self._run_on_side_stream()
        else:
            try:
                self.graph = self._capture()
            except Exception as error:  # any failure to capture: never fatal, the phase still runs eagerly
                self._fall_back(error)
                self.fn()
                return
            self.graph.replay()  # capturing records the work without running it

    def _fall_back(self, error: Exception) -> None:
        self.enabled = False
        self.graph = None
        self.fallback_error = describe_error(error)
        logger.warning(
            f"pqn-torch: CUDA graph capture of the {self.phase} phase failed ({self.fallback_error}); "
            f"the {self.phase} phase runs eagerly from now on"
        )

    def _run_on_side_stream(self) -> None:
        current = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(current)
        with torch.cuda.stream(side):
            self.fn()
        current.wait_stream(side)

    def _capture(self) -> torch.cuda.CUDAGraph:
        graph = torch.cuda.CUDAGraph()
        for generator in self.generators:
            graph.register_generator_state(generator)
        with torch.cuda.device(self.device), torch.cuda.graph(graph):
            self.fn()
        return graph


class CompiledCall:
    """``torch.compile(fn)``; if compiling (or a compiled call) fails, ``fn`` itself from then on.

    The failure is logged once, as one warning naming ``phase`` and the error, and kept in
    ``fallback_error``; the failed call is repeated eagerly. Compilation happens before the compiled
    code runs, so the repeat does not apply the phase twice.
    """

    def __init__(self, fn: Callable[..., Any], phase: str) -> None:
        self.fn = fn
        self.compiled = torch.compile(fn, dynamic=False)
        self.phase = phase
        self.fallback_error: str | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.fallback_error is None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as error:  # inductor, triton, a missing C compiler...: never fatal
                self.fallback_error = describe_error(error)
                logger.warning(
                    f"pqn-torch: torch.compile of the {self.phase} phase failed ({self.fallback_error}); "
                    f"the {self.phase} phase runs uncompiled from now on"
                )
        return self.fn(*args, **kwargs)

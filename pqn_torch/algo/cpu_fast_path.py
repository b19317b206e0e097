"""The networks' CPU fast path, used inside the agent's phases on the CPU (:func:`enabled`).

Two speed tricks, both the same float32 math with a different order of roundings:

- **oneDNN matmuls.** On the CPU torch computes a float32 ``matmul``/``linear`` with MKL's sgemm;
  on the AMD EPYC development machine that reached ~110 GFLOP/s per core at the networks' sizes,
  while oneDNN (shipped inside torch) reached ~200-240 on the same matmuls. torch routes float32 to
  oneDNN only with reduced precision (``fp32_precision``), so :func:`linear` calls oneDNN's linear
  op directly (``torch.ops.mkldnn._linear_pointwise``, the op torch.compile's CPU backend emits for
  linear layers) in full float32. The op has no autograd formula: the update's backward pass is
  written by hand (``cpu_gradients.py``) and takes its matmuls through :func:`linear` too, and
  anything that does need autograd gets ``F.linear``. Products narrower than :data:`MIN_WIDTH` stay
  with torch. Inside ``torch.compile`` the op is called through the :func:`onednn_linear` custom op,
  which inductor calls as it is (its own lowering of the op expects prepacked weights).
- **One critic at a time** (``CriticEnsemble``): each critic's LayerNorm then takes its own scale
  and shift, which torch's kernel fuses; a LayerNorm without affine followed by a separate scale and
  shift of the stacked critics was ~2.5x slower (forward + backward) at the DM preset's sizes.

Outside :func:`enabled`, and for other devices or dtypes, the networks are plain torch (batched
critics, ``F.linear``), so the CUDA path, exported or scripted networks never see the private op.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import List, Optional, Union  # TorchScript's spelling, for linear  # noqa: UP035

import torch
import torch.nn.functional as F

_LINEAR: Callable[..., torch.Tensor] | None
try:
    _LINEAR = torch.ops.mkldnn._linear_pointwise.default
    AVAILABLE = torch.backends.mkldnn.is_available()
except (AttributeError, RuntimeError):  # a torch build without oneDNN or without the op
    _LINEAR = None
    AVAILABLE = False

MIN_WIDTH = 64
"""Narrower layers (the input layer, the critics' 1-wide output) stay with torch: oneDNN's fixed cost per
call made them 1.5-3x slower (fwd + bwd, batch 128), while 256 x 256 was 1.7x faster and 128 x 128 1.1x."""

_enabled = False  # process-wide, so that the update's second thread follows the phase that started it


@contextmanager
def enabled(on: bool = True) -> Iterator[None]:
    """Use the fast path in this block (``on``), or not."""
    global _enabled
    previous, _enabled = _enabled, on
    try:
        yield
    finally:
        _enabled = previous


def is_enabled() -> bool:
    """Whether the networks take the fast path now: inside :func:`enabled`, but not while ``torch.compile`` traces.

    Compiled, the networks stay plain torch for inductor to fuse; :func:`linear` itself still routes to oneDNN
    there (through the :func:`onednn_linear` custom op), which the compiled hand-written update relies on.
    """
    return _enabled and not torch.compiler.is_compiling()


def linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,  # noqa: UP045
    min_width: int = MIN_WIDTH,  # a parameter: TorchScript reads no module globals
) -> torch.Tensor:
    """``F.linear`` (``x @ weight.T + bias`` for ``weight`` [out, in], any view) on the fast path.

    oneDNN where the layer is at least :data:`MIN_WIDTH` wide both ways, ``x`` has at least as many rows
    (the gradients' products: [out, B] @ [B, in] is as narrow as the layer) and nothing needs a gradient
    (the op has no autograd formula; the update computes its gradients by hand, ``cpu_gradients.py``);
    ``F.linear`` otherwise. Only the fast path calls it (:func:`networks.fast_forward` and the
    hand-written backward pass), and TorchScript compiles it with the update's halves, so it is written
    in TorchScript's subset (``typing.Optional``, the op's empty ``Scalar?[]`` typed, no globals read).
    """
    differentiated = torch.is_grad_enabled() and (
        x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    )
    wide = (
        not differentiated
        and x.dim() == 2
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and x.device.type == "cpu"
        and x.shape[0] >= min_width
        and min(weight.shape[-2], weight.shape[-1]) >= min_width
    )
    if not torch.jit.is_scripting():  # eager or torch.compile
        if wide and AVAILABLE:
            if torch.compiler.is_compiling():
                return onednn_linear(x, weight, bias)
            assert _LINEAR is not None  # AVAILABLE
            return _LINEAR(x, weight, bias, "none", [], "")
        return F.linear(x, weight, bias)
    if wide:  # TorchScript: only compiled where oneDNN is AVAILABLE (cpu_gradients.scripted_halves)
        no_scalars: List[Optional[Union[float, int, complex]]] = []  # noqa: UP006, UP007, UP045
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", no_scalars, "")
    return F.linear(x, weight, bias)


@torch.library.custom_op("pqn_torch::onednn_linear", mutates_args=())
def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """oneDNN's ``x @ weight.T + bias`` as an op that ``torch.compile`` keeps as one opaque call."""
    assert _LINEAR is not None  # only called where linear() checked AVAILABLE
    return _LINEAR(x, weight, bias, "none", [], "")


@onednn_linear.register_fake
def _onednn_linear_shape(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return x.new_empty(x.shape[0], weight.shape[0])

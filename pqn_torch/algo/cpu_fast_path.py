"""The networks' CPU fast path, used inside the agent's phases on the CPU (:func:`enabled`).

Two speed tricks, both the same float32 math with a different order of roundings:

- **oneDNN matmuls.** On the CPU torch computes a float32 ``matmul``/``linear`` with MKL's sgemm;
  on the AMD EPYC development machine that reached ~110 GFLOP/s per core at the networks' sizes,
  while oneDNN (shipped inside torch) reached ~200-240 on the same matmuls. torch routes float32 to
  oneDNN only with reduced precision (``fp32_precision``), so :func:`matmul` and :func:`linear`
  call oneDNN's linear op directly (``torch.ops.mkldnn._linear_pointwise``, the op torch.compile's
  CPU backend emits for linear layers) in full float32. The op has no autograd formula, so
  :class:`_OneDNNLinear` supplies the backward pass with the same op (``dx = g @ W^T``,
  ``dW = x^T @ g``). Layers narrower than :data:`MIN_WIDTH` stay with torch.
- **One critic at a time** (``CriticEnsemble``): each critic's LayerNorm then takes its own scale
  and shift, which torch's kernel fuses; a LayerNorm without affine followed by a separate scale and
  shift of the stacked critics was ~2.5x slower (forward + backward) at the DM preset's sizes.

Outside :func:`enabled`, and for other devices or dtypes, the networks are plain torch (batched
critics, ``F.linear``), so the CUDA path, exported or scripted networks never see the private op.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

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
    """Whether the networks currently take the fast path."""
    return _enabled


def matmul(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight + bias`` for ``x`` [B, in], ``weight`` [in, out] (the critics' layout), ``bias`` [out] or None."""
    if _applies(x, weight):
        return _OneDNNLinear.apply(x, weight, bias, True)
    return torch.matmul(x, weight) if bias is None else torch.addmm(bias, x, weight)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear``: ``x @ weight.T + bias`` for ``weight`` [out, in] (``nn.Linear``'s layout)."""
    if _applies(x, weight):
        return _OneDNNLinear.apply(x, weight, bias, False)
    return F.linear(x, weight, bias)


def used_for(weight: torch.Tensor) -> bool:
    """Whether :func:`matmul`/:func:`linear` would take ``weight`` (2-D, CPU, float32) to oneDNN now."""
    return (
        _enabled
        and AVAILABLE
        and weight.device.type == "cpu"
        and weight.dtype == torch.float32
        and min(weight.shape[-2:]) >= MIN_WIDTH
    )


def _applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return x.dim() == 2 and x.dtype == torch.float32 and used_for(weight)


class _OneDNNLinear(torch.autograd.Function):
    """A linear layer whose forward and backward matmuls are oneDNN's (``_linear_pointwise``).

    The op computes ``input @ w.T (+ bias)`` for a ``w`` [out, in] of any strides, so transposes are
    passed as views, never copied; the weight's gradient is computed in the weight's own layout
    (``in_out``: [in, out], else [out, in]), so autograd needs no transposed copy either.
    """

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, in_out: bool
    ) -> torch.Tensor:
        assert _LINEAR is not None  # _applies() checked AVAILABLE
        ctx.save_for_backward(x, weight)
        ctx.in_out = in_out
        ctx.has_bias = bias is not None
        return _LINEAR(x, weight.T if in_out else weight, bias, "none", [], "")

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        assert _LINEAR is not None  # _applies() checked AVAILABLE
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:  # grad @ W_out_in
            grad_x = _LINEAR(grad, weight if ctx.in_out else weight.T, None, "none", [], "")
        if ctx.needs_input_grad[1]:  # x.T @ grad ([in, out]) or grad.T @ x ([out, in])
            grad_weight = (
                _LINEAR(x.T, grad.T, None, "none", [], "") if ctx.in_out else _LINEAR(grad.T, x.T, None, "none", [], "")
            )
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum(0)
        return grad_x, grad_weight, grad_bias, None

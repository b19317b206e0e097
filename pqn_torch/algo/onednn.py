"""The networks' float32 matmuls through oneDNN on the CPU: about twice as fast as torch's default there.

Speed trick. On the CPU, torch computes a float32 ``matmul``/``linear`` with MKL's sgemm; on the AMD
EPYC development machine that reached ~110 GFLOP/s per core at the networks' sizes, while oneDNN
(shipped inside torch) reached ~200-240 on the same matmuls. torch routes float32 to oneDNN only
with reduced precision (``fp32_precision``), so we call oneDNN's linear op directly
(``torch.ops.mkldnn._linear_pointwise``, the op torch.compile's CPU backend emits for linear layers)
in full float32: same products and sums, only their order (rounding) differs from MKL's. The op has
no autograd formula, so :class:`_OneDNNMatmul` supplies the backward pass with the same op
(``dx = g @ W^T``, ``dW = x^T @ g``).

It is used only inside :func:`enabled` (the agent's phases on the CPU, including the update's second
thread); everywhere else, and for other devices or dtypes, :func:`matmul` is plain torch, so
exported or scripted networks never see the private op.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

try:
    _LINEAR = torch.ops.mkldnn._linear_pointwise.default
    AVAILABLE = torch.backends.mkldnn.is_available()
except (AttributeError, RuntimeError):  # a torch build without oneDNN or without the op
    _LINEAR = None
    AVAILABLE = False

_enabled = False  # process-wide, so that the update's second thread follows the phase that started it


@contextmanager
def enabled(on: bool = True) -> Iterator[None]:
    """Route :func:`matmul` through oneDNN in this block (where available)."""
    global _enabled
    previous, _enabled = _enabled, on and AVAILABLE
    try:
        yield
    finally:
        _enabled = previous


def is_enabled() -> bool:
    """Whether :func:`matmul` currently goes through oneDNN for CPU float32 tensors."""
    return _enabled


def matmul(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight + bias`` for ``x`` [B, in], ``weight`` [in, out], ``bias`` [out] or None."""
    if is_enabled() and x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 2:
        return _OneDNNMatmul.apply(x, weight, bias)
    output = torch.matmul(x, weight)
    return output if bias is None else output + bias


class _OneDNNMatmul(torch.autograd.Function):
    """``x @ weight + bias`` with forward and backward matmuls by oneDNN (``_linear_pointwise``).

    The op computes ``input @ w.T (+ bias)`` for a weight ``w`` [out, in] of any strides, so
    ``weight.T`` is passed as a view, never copied.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _LINEAR(x, weight.T, bias, "none", [], "")

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx,
                 grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        x, weight = ctx.saved_tensors
        grad_x = _LINEAR(grad, weight, None, "none", [], "") if ctx.needs_input_grad[0] else None
        grad_weight = _LINEAR(x.T, grad.T, None, "none", [], "") if ctx.needs_input_grad[1] else None
        grad_bias = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias

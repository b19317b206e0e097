"""One contiguous tensor behind all of a network's parameters and another behind their gradients.

Speed trick (CPU above all): an optimizer step over ``n`` parameter tensors costs ``n`` times its
~15 elementwise ops, each a separate kernel launch with its own dispatch overhead, plus gradient
zeroing and clipping per tensor. With every parameter a view into one flat tensor and every gradient
a view into one flat gradient, the optimizer, the clipping and the zeroing each see a single tensor:
for the CPU preset's ten tensors per network an optimizer step is ~15 ops instead of ~150. The
module keeps its own parameters (same names, shapes and ``state_dict``), autograd accumulates into
the gradient views in place, and an optimizer step on the flat tensor updates the module's
parameters because they share its storage. Elementwise math is unchanged.
"""

from __future__ import annotations

import torch
from torch import nn


def flatten_parameters(module: nn.Module) -> torch.Tensor:
    """Make ``module``'s parameters views of one new contiguous leaf tensor and return it.

    The returned tensor (``requires_grad``) is what the optimizer steps; its ``.grad`` is allocated
    here and backs every parameter's ``.grad``, so zero it in place (``zero_grad(set_to_none=False)``)
    and never set it to ``None``. Call after the module is on its final device (moving the module
    afterwards would copy the parameters out of the flat tensor).
    """
    parameters = list(module.parameters())
    if not parameters:
        raise ValueError(f"{type(module).__name__} has no parameters to flatten")
    with torch.no_grad():
        flat = torch.cat([parameter.reshape(-1) for parameter in parameters])
    flat.requires_grad_(True)
    flat.grad = torch.zeros_like(flat)
    offset = 0
    for parameter in parameters:
        size = parameter.numel()
        parameter.data = flat.detach()[offset : offset + size].view_as(parameter)
        parameter.grad = flat.grad[offset : offset + size].view_as(parameter)
        offset += size
    return flat


def member_leaves(stacked: torch.Tensor) -> list[torch.Tensor]:
    """Leaf tensors for the members (first dim) of a flattened parameter, sharing its storage and gradient.

    Speed trick (CPU): computing per member through ``stacked.unbind(0)`` makes autograd stack the members'
    gradients into a new tensor (a copy of the whole parameter) and then add that to ``stacked.grad``. With
    each member a leaf of its own whose ``.grad`` is a view of ``stacked.grad``, autograd adds each member's
    gradient in place, with no copy. Pass the leaves as the ``inputs`` of ``backward``. The optimizer still
    steps the flat tensor, whose storage the leaves view; like the flat tensor, they break if the module's
    parameters are moved or replaced.
    """
    if stacked.grad is None:
        raise ValueError("member_leaves needs a parameter with a gradient buffer: call flatten_parameters first")
    leaves = []
    for member, grad in zip(stacked.detach().unbind(0), stacked.grad.unbind(0), strict=True):
        member.requires_grad_(True)
        member.grad = grad
        leaves.append(member)
    return leaves

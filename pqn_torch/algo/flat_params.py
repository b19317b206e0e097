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


Layout = tuple[tuple[str, torch.Size], ...]
"""A module's parameters as (name, shape), in the order :func:`flatten_parameters` lays them out."""


def layout(module: nn.Module) -> Layout:
    """``module``'s parameter names and shapes, in flat order (static: fixed when the module is built)."""
    return tuple((name, parameter.shape) for name, parameter in module.named_parameters())


def named_views(flat: torch.Tensor, module_layout: Layout) -> dict[str, torch.Tensor]:
    """Views of ``flat`` (a flat parameter tensor or its gradient) shaped and named as the module's parameters.

    Made from plain Python offsets, so that ``torch.compile`` sees only the flat tensor as an input (the
    parameters' own ``.grad`` views of the flat gradient are views of views to dynamo, which it guards badly).
    """
    views = {}
    offset = 0
    for name, shape in module_layout:
        size = shape.numel()
        views[name] = flat[offset : offset + size].view(shape)
        offset += size
    return views

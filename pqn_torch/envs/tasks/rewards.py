"""dm_control's ``rewards.tolerance`` for torch tensors (the only copy in the package).

Same shapes, same argument checks and same numbers as ``dm_control.utils.rewards.tolerance``;
``tests/test_rewards.py`` checks it against dm_control's numpy implementation.
"""

from __future__ import annotations

import math

import torch

SIGMOIDS = ("gaussian", "hyperbolic", "long_tail", "reciprocal", "cosine", "linear", "quadratic", "tanh_squared")
DEFAULT_VALUE_AT_MARGIN = 0.1


def _sigmoid(x: torch.Tensor, value_at_1: float, sigmoid: str) -> torch.Tensor:
    """A decreasing function of ``|x|`` equal to 1 at 0 and ``value_at_1`` at ``|x| = 1``."""
    if sigmoid in ("cosine", "linear", "quadratic"):
        if not 0 <= value_at_1 < 1:
            raise ValueError(f"value_at_1 must be in [0, 1) for sigmoid {sigmoid!r}, got {value_at_1}")
    elif sigmoid in SIGMOIDS:
        if not 0 < value_at_1 < 1:
            raise ValueError(f"value_at_1 must be in (0, 1) for sigmoid {sigmoid!r}, got {value_at_1}")
    else:
        raise ValueError(f"unknown sigmoid {sigmoid!r}; valid: {', '.join(SIGMOIDS)}")

    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    if sigmoid == "gaussian":
        scale = math.sqrt(-2 * math.log(value_at_1))
        return torch.exp(-0.5 * (x * scale) ** 2)
    if sigmoid == "hyperbolic":
        scale = math.acosh(1 / value_at_1)
        return 1 / torch.cosh(x * scale)
    if sigmoid == "long_tail":
        scale = math.sqrt(1 / value_at_1 - 1)
        return 1 / ((x * scale) ** 2 + 1)
    if sigmoid == "reciprocal":
        scale = 1 / value_at_1 - 1
        return 1 / (x.abs() * scale + 1)
    if sigmoid == "cosine":
        scaled = x * (math.acos(2 * value_at_1 - 1) / math.pi)
        return torch.where(scaled.abs() < 1, (1 + torch.cos(math.pi * scaled)) / 2, zero)
    if sigmoid == "linear":
        scaled = x * (1 - value_at_1)
        return torch.where(scaled.abs() < 1, 1 - scaled, zero)
    if sigmoid == "quadratic":
        scaled = x * math.sqrt(1 - value_at_1)
        return torch.where(scaled.abs() < 1, 1 - scaled**2, zero)
    scale = math.atanh(math.sqrt(1 - value_at_1))  # tanh_squared
    return 1 - torch.tanh(x * scale) ** 2


def tolerance(
    x: torch.Tensor,
    bounds: tuple[float, float] = (0.0, 0.0),
    margin: float = 0.0,
    sigmoid: str = "gaussian",
    value_at_margin: float = DEFAULT_VALUE_AT_MARGIN,
) -> torch.Tensor:
    """1 where ``x`` lies in ``bounds`` (inclusive), falling to ``value_at_margin`` at distance ``margin``.

    With ``margin == 0`` the result is the indicator of ``bounds``. Bounds may be infinite.
    """
    lower, upper = bounds
    if lower > upper:
        raise ValueError(f"lower bound must be <= upper bound, got {bounds}")
    if margin < 0:
        raise ValueError(f"margin must be non-negative, got {margin}")
    in_bounds = (lower <= x) & (x <= upper)
    one = torch.ones((), dtype=x.dtype, device=x.device)
    if margin == 0:
        return torch.where(in_bounds, one, torch.zeros_like(one))
    distance = torch.where(x < lower, lower - x, x - upper) / margin
    return torch.where(in_bounds, one, _sigmoid(distance, value_at_margin, sigmoid))

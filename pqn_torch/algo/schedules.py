"""Linear schedules (learning rate, exploration noise) as pure functions of a step counter."""

from __future__ import annotations

import torch


class LinearSchedule:
    """``start`` -> ``end`` linearly over ``transition_steps`` steps, then constant at ``end``.

    Callable with a Python number (host-side bookkeeping) or a tensor counter (evaluated on device,
    so a captured CUDA graph reads the current value without a host round trip). Zero
    ``transition_steps`` means constant ``start``, as in optax.
    """

    def __init__(self, start: float, end: float, transition_steps: float) -> None:
        if transition_steps < 0:
            raise ValueError(f"transition_steps must be >= 0, got {transition_steps}")
        self.start = float(start)
        self.end = float(end)
        self.transition_steps = float(transition_steps)

    def __call__(self, step: int | float | torch.Tensor) -> float | torch.Tensor:
        if self.transition_steps == 0:
            return torch.full_like(step, self.start, dtype=torch.float32) if torch.is_tensor(step) else self.start
        fraction: float | torch.Tensor
        if torch.is_tensor(step):
            fraction = (step.to(torch.float32) / self.transition_steps).clamp(0.0, 1.0)
        else:
            fraction = min(max(step / self.transition_steps, 0.0), 1.0)
        return self.start + (self.end - self.start) * fraction

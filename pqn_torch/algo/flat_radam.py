"""RAdam with gradient-norm clipping folded in, for one flat parameter tensor (the CPU update).

Speed trick (CPU): after the flat parameters (``flat_params.py``) an optimizer step is few ops, but
``clip_grad_norm_`` followed by torch's foreach RAdam still makes 12 passes over the flat tensors and
~35 Python-level calls (grouping by device and dtype, the step counter as a tensor, scalar tensors);
at the CPU preset's sizes the two networks' clipping and steps took ~0.5 ms of a ~2.3 ms gradient
step. :meth:`ClippedRAdam.clip_and_step` takes the norm in one pass and computes every
step-dependent scalar on the host. A rectified RAdam step (every step from the 6th on) is Adam's
step with the learning rate times the rectification and epsilon divided by ``sqrt(1 - beta2^t)``
(RAdam adds epsilon to ``sqrt(v)``, Adam to ``sqrt(v / (1 - beta2^t))``), so it runs as one pass
of torch's fused CPU Adam kernel (``torch._fused_adam_``, what ``Adam(fused=True)`` calls), which
also applies the clipping as its gradient scale: two passes in all (~50 against ~110 us for the
critic's 140k parameters). The first, unrectified steps take the plain ops. The host scalars read
the norm and the learning rate back from the device, so the agent uses it on the CPU only (where
that read is free); on CUDA it keeps the capturable ``step()`` of torch's RAdam, which this class
inherits unchanged.

Same math as ``clip_grad_norm_(max_norm)`` then ``torch.optim.RAdam.step()`` (default betas and eps,
no weight decay), up to the order of roundings; ``tests/test_algo.py`` compares the two. The state
(``step``, ``exp_avg``, ``exp_avg_sq``) and ``state_dict`` are RAdam's, so checkpoints move between
the two paths and between devices.
"""

from __future__ import annotations

import math

import torch


class ClippedRAdam(torch.optim.RAdam):
    """``torch.optim.RAdam`` over one flat tensor, plus :meth:`clip_and_step` (the CPU update's step)."""

    def __init__(self, flat: torch.Tensor, lr: torch.Tensor, capturable: bool = False) -> None:
        super().__init__([flat], lr=lr, capturable=capturable, foreach=True)
        self._inverse_clip = torch.ones((), device=flat.device)  # 1 / the clipping coefficient, for the kernel

    @torch.no_grad()
    def clip_and_step(self, max_norm: float) -> torch.Tensor:
        """Clip the gradient's norm to ``max_norm`` in place (as ``clip_grad_norm_``), then step; returns the norm."""
        group = self.param_groups[0]
        (flat,) = group["params"]
        grad = flat.grad
        if grad is None or group["weight_decay"] or group["maximize"] or group["decoupled_weight_decay"]:
            raise ValueError("clip_and_step needs a gradient and RAdam without weight decay or maximize")
        state = self.state[flat]
        if not state:  # as RAdam initializes it, so that state_dict() looks the same
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(flat, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(flat, memory_format=torch.preserve_format)
        beta1, beta2 = group["betas"]
        norm = torch.linalg.vector_norm(grad)
        coefficient = max_norm / (float(norm) + 1e-6)  # clip_grad_norm_'s
        state["step"] += 1
        step = float(state["step"])
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        lr = float(group["lr"])
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        rho_inf = 2 / (1 - beta2) - 1  # the length of the approximated SMA: its limit and at this step
        rho = rho_inf - 2 * step * beta2**step / bias_correction2
        if rho > 5:  # the variance is tractable: the rectified adaptive step, as one fused Adam pass
            rectification = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            grad_scale = None
            if coefficient < 1:  # the kernel divides the gradient by this scale in place
                grad_scale = self._inverse_clip.fill_(1 / coefficient)
            torch._fused_adam_(
                [flat.detach()],
                [grad],
                [exp_avg],
                [exp_avg_sq],
                [],
                [state["step"]],
                lr=lr * rectification,
                beta1=beta1,
                beta2=beta2,
                weight_decay=0.0,
                eps=group["eps"] / math.sqrt(bias_correction2),
                amsgrad=False,
                maximize=False,
                grad_scale=grad_scale,
            )
        else:  # the first steps: SGD with momentum
            if coefficient < 1:
                grad.mul_(coefficient)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            flat.add_(exp_avg, alpha=-lr / bias_correction1)
        return norm

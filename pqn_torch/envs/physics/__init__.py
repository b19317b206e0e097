"""Physics backends behind one torch-facing view (:class:`Physics`)."""

from __future__ import annotations

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics, PhysicsConfig, sensor_slice

BACKENDS = ("warp", "mujoco")


def resolve_backend(backend: str, device: torch.device) -> str:
    """``auto`` -> MuJoCo Warp on CUDA, native MuJoCo on CPU; validate explicit choices."""
    if backend == "auto":
        return "warp" if device.type == "cuda" else "mujoco"
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: auto, {', '.join(BACKENDS)}")
    if backend == "mujoco" and device.type != "cpu":
        raise ValueError(f"backend 'mujoco' runs on the CPU only, got device {device}; use backend=warp for CUDA")
    return backend


def make_physics(
    backend: str, mj_model: mujoco.MjModel, num_worlds: int, device: torch.device, config: PhysicsConfig
) -> Physics:
    """Build ``num_worlds`` worlds of ``mj_model`` on the named backend (``warp`` or ``mujoco``)."""
    if backend == "warp":
        from pqn_torch.envs.physics.warp_backend import WarpPhysics

        return WarpPhysics(mj_model, num_worlds, device, config)
    from pqn_torch.envs.physics.mujoco_backend import MujocoPhysics

    return MujocoPhysics(mj_model, num_worlds, device, config)


__all__ = ["BACKENDS", "Physics", "PhysicsConfig", "make_physics", "resolve_backend", "sensor_slice"]

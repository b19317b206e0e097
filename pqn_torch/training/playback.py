"""Using a finished checkpoint: rebuild its agent and env, evaluate it, and record a video of it."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from pqn_torch.algo.pqn import PQN
from pqn_torch.envs import make_env, resolve_device
from pqn_torch.envs.physics import resolve_backend
from pqn_torch.training.checkpoint import listed, load_checkpoint, nonfinite_weights
from pqn_torch.training.evaluation import evaluate
from pqn_torch.training.settings import settings_from_config

MAX_VIDEO_FPS = 50
VIDEO_SIZE = (640, 480)


class VideoUnavailable(RuntimeError):
    """A video was asked for, but this machine cannot render (no OpenGL) or encode (no ffmpeg) it."""


def load_agent(location: str | Path, num_envs: int, device: str = "auto", backend: str = "auto",
               seed: int = 0) -> tuple[PQN, Any, dict[str, Any]]:
    """The checkpoint's agent (weights and normalizer statistics) and a fresh ``num_envs`` env of its task."""
    torch_device = resolve_device(device)
    payload = load_checkpoint(location, map_location=torch_device)
    settings = settings_from_config(payload["config"])
    env = make_env(settings.task, num_envs, torch_device, resolve_backend(backend, torch_device), seed,
                   **settings.task_overrides)
    agent = PQN(env.obs_dim, env.critic_obs_dim, env.action_low, env.action_high, settings.alg,
                settings.total_timesteps, device=torch_device)
    agent.load_checkpoint_state(payload["agent"])
    bad = nonfinite_weights(agent)
    if bad:
        raise ValueError(f"{payload['path']} holds non-finite weights ({listed(bad)}): it comes from a diverged run "
                         "and cannot be evaluated; use an earlier checkpoint")
    return agent, env, payload


def evaluate_checkpoint(location: str | Path, episodes: int = 10, device: str = "auto", backend: str = "auto",
                        seed: int = 0, video: bool = False, video_path: Path | None = None) -> str:
    """Run ``episodes`` deterministic episodes (one per env) and report mean +- std return.

    With ``video``, the first episode is rendered with ``mujoco.Renderer`` into an mp4 (default:
    ``eval_<step>.mp4`` beside the checkpoint).
    """
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if video_path is not None:
        _check_video_path(Path(video_path))
    recorder = None
    agent, env, payload = load_agent(location, episodes, device, backend, seed)
    if video:
        path = Path(video_path) if video_path else _free_name(Path(payload["path"]).with_name(
            f"eval_{payload['env_steps']}.mp4"))
        recorder = VideoRecorder(env, path)
    try:
        result = evaluate(agent, env, on_step=recorder.capture if recorder else None)
    finally:
        if recorder is not None:
            recorder.close()
    task = payload["config"]["task"]["name"]
    lines = [f"warning: {path} is unreadable ({reason}); skipped it" for path, reason in payload["skipped"]]
    lines += [f"{task}, checkpoint {payload['path']} (env step {payload['env_steps']:,}): return "
             f"{result.mean_return:.1f} ± {result.std_return:.1f} over {result.episodes} episodes "
             f"(mean length {result.mean_length:.0f})"]
    if recorder is not None:
        lines.append(f"video: {recorder.path}")
    return "\n".join(lines)


def _check_video_path(path: Path) -> None:
    """A video file we may create: its folder exists and is writable, and nothing is there yet."""
    if path.exists():
        raise ValueError(f"video_path {path} exists already; choose another file (an existing file is never "
                         "overwritten)")
    folder = path.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"video_path {path}: the folder {folder} does not exist or is not writable; "
                         "give a file in a writable folder")


def _free_name(path: Path) -> Path:
    """``path``, or ``<stem>_2<suffix>``, ``_3``, ... if taken."""
    candidate, number = path, 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.stem}_{number}{path.suffix}")
    return candidate


class VideoRecorder:
    """Renders world 0 of ``env`` after each step until its first episode ends, piping frames to ffmpeg."""

    def __init__(self, env: Any, path: Path) -> None:
        if shutil.which("ffmpeg") is None:
            raise VideoUnavailable("video=true encodes mp4 with the ffmpeg program, which is not on PATH; install it "
                                   "(apt-get install ffmpeg, brew install ffmpeg or conda install ffmpeg)")
        model = env.physics.mj_model
        width, height = VIDEO_SIZE
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, height)
        try:
            self.renderer = mujoco.Renderer(model, height=height, width=width)
        except Exception as error:  # the GL backends fail with assorted error types
            raise VideoUnavailable(
                f"video=true needs OpenGL for mujoco.Renderer, and none works here ({error}); on a headless machine "
                "install EGL (a GPU driver) or OSMesa (apt-get install libosmesa6) and set MUJOCO_GL=egl or "
                "MUJOCO_GL=osmesa") from None
        self.env = env
        self.path = Path(path)
        self.data = mujoco.MjData(model)
        self.camera = 0 if model.ncam > 0 else -1
        native_fps = 1.0 / env.ctrl_dt
        self.stride = max(1, math.ceil(native_fps / MAX_VIDEO_FPS))
        self.steps = 0
        self.finished = False
        self.encoder = subprocess.Popen(
            ["ffmpeg", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
             "-r", f"{native_fps / self.stride:.3f}", "-i", "-", "-c:v", "mpeg4", "-q:v", "3", "-pix_fmt", "yuv420p",
             str(self.path)], stdin=subprocess.PIPE)
        self._write_frame()

    def capture(self, result: Any) -> None:
        """Per-step hook for :func:`evaluate`: one frame (every ``stride`` steps) while world 0 still plays."""
        if self.finished:
            return
        if bool(result["done"][0]):
            self.finished = True  # world 0 now shows the next episode's start state
            return
        self.steps += 1
        if self.steps % self.stride == 0:
            self._write_frame()

    def _write_frame(self) -> None:
        physics = self.env.physics
        for name in ("qpos", "qvel", "mocap_pos", "mocap_quat"):
            getattr(self.data, name)[:] = getattr(physics, name)[0].cpu().numpy().astype(np.float64)
        mujoco.mj_forward(physics.mj_model, self.data)
        self.renderer.update_scene(self.data, camera=self.camera)
        self.encoder.stdin.write(self.renderer.render().tobytes())

    def close(self) -> None:
        self.encoder.stdin.close()
        self.encoder.wait()
        self.renderer.close()

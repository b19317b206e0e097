"""Videos of a policy that work on a headless machine: MuJoCo's offscreen renderer and a pip-installed encoder.

Rendering uses MuJoCo's own OpenGL renderer (``mjr_render`` into its offscreen buffer) on a GL context
this module creates when a video starts: EGL, else OSMesa, else GLFW where there is a display (macOS:
CGL); ``MUJOCO_GL`` picks one explicitly. ``mujoco.Renderer`` is not used because it fixes its GL
backend from ``MUJOCO_GL`` when ``mujoco`` is first imported, which is long before a video is asked for
and, with the variable unset, means GLFW, which needs a display.

Encoding uses PyAV (pip ``av``, the ``video`` extra), whose wheels carry FFmpeg's libraries: H.264 in
an mp4, no ``ffmpeg`` program needed.
"""

from __future__ import annotations

import ctypes.util
import importlib
import math
import os
import platform
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import mujoco
import numpy as np

MAX_VIDEO_FPS = 50
"""Frames per second at most; faster control rates keep every ``stride``-th step."""
VIDEO_SIZE = (640, 480)
GL_INSTALL_HINT = (
    "install EGL (apt-get install libegl1 libgl1-mesa-dri) or OSMesa (apt-get install libosmesa6), "
    "or set MUJOCO_GL=egl|osmesa|glfw"
)


class VideoUnavailable(RuntimeError):
    """A video was asked for, but this machine cannot render (no OpenGL) or encode (no PyAV) it."""


def gl_backend() -> str:
    """The GL backend a video will use: ``MUJOCO_GL`` when set, else the first one this machine has."""
    requested = os.environ.get("MUJOCO_GL", "").strip().lower()
    if requested:
        if requested not in ("egl", "osmesa", "glfw", "cgl"):
            raise VideoUnavailable(f"MUJOCO_GL={requested!r} cannot render offscreen; valid: egl, osmesa, glfw, cgl")
        return requested
    if platform.system() == "Darwin":
        return "cgl"
    for backend, library in (("egl", "EGL"), ("osmesa", "OSMesa")):
        if ctypes.util.find_library(library):
            return backend
    if os.environ.get("DISPLAY") or platform.system() == "Windows":
        return "glfw"
    raise VideoUnavailable(
        f"no OpenGL for offscreen rendering on this machine (no EGL, no OSMesa, no display); {GL_INSTALL_HINT}"
    )


def gl_context(width: int, height: int) -> Any:
    """A current GL context of the :func:`gl_backend` (MuJoCo's context classes), or :class:`VideoUnavailable`."""
    backend = gl_backend()
    try:
        context = importlib.import_module(f"mujoco.{backend}").GLContext(width, height)
        context.make_current()
    except Exception as error:  # the GL bindings fail with assorted types (ImportError, OSError, GLError, ...)
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise VideoUnavailable(f"cannot create a {backend} OpenGL context ({detail}); {GL_INSTALL_HINT}") from None
    return context


class OffscreenRenderer:
    """RGB frames of an ``MjData`` from the model's first camera (a free camera if it has none)."""

    def __init__(self, model: mujoco.MjModel, width: int, height: int) -> None:
        self.model = model
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, height)
        self.context = gl_context(width, height)
        self.scene = mujoco.MjvScene(model, maxgeom=10_000)
        self.option = mujoco.MjvOption()
        self.camera = mujoco.MjvCamera()
        if model.ncam > 0:
            self.camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
            self.camera.fixedcamid = 0
        else:
            mujoco.mjv_defaultFreeCamera(model, self.camera)
        self.mjr_context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self.mjr_context)
        self.rect = mujoco.MjrRect(0, 0, width, height)
        self.pixels = np.empty((height, width, 3), dtype=np.uint8)

    def render(self, data: mujoco.MjData) -> np.ndarray:
        """The frame [height, width, 3] uint8, top row first."""
        self.context.make_current()
        mujoco.mjv_updateScene(self.model, data, self.option, None, self.camera, mujoco.mjtCatBit.mjCAT_ALL, self.scene)
        mujoco.mjr_render(self.rect, self.scene, self.mjr_context)
        mujoco.mjr_readPixels(self.pixels, None, self.rect, self.mjr_context)
        return np.flipud(self.pixels)

    def close(self) -> None:
        self.context.make_current()
        self.mjr_context.free()
        self.context.free()


class Mp4Writer:
    """H.264 (yuv420p) mp4 through PyAV; written to ``<path>.partial`` and renamed when closed."""

    def __init__(self, path: Path, width: int, height: int, fps: float) -> None:
        try:
            import av
        except ImportError:
            raise VideoUnavailable(
                "video=true encodes mp4 with PyAV, which is not installed; "
                "pip install 'pqn-torch[video]' (or pip install av)"
            ) from None
        if width % 2 or height % 2:
            raise ValueError(f"video size must be even for H.264, got {width}x{height}")
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"video {self.path} exists already; choose another video_path or remove it")
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.container = av.open(str(self.partial), mode="w", format="mp4")
        codec: Literal["libx264", "mpeg4"] = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self.stream = self.container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        self.frames = 0
        self._frame_type = av.VideoFrame

    def write(self, rgb: np.ndarray) -> None:
        for packet in self.stream.encode(self._frame_type.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        for packet in self.stream.encode():  # flush the encoder's delayed frames
            self.container.mux(packet)
        self.container.close()
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        """Drop the partial file (a failed recording leaves nothing behind)."""
        self.container.close()
        self.partial.unlink(missing_ok=True)


class VideoRecorder:
    """Records world 0 of a batched env during :func:`pqn_torch.training.evaluate` until its first episode ends.

    One frame at the start of the episode and one every ``stride`` control steps after it, where
    ``stride`` keeps the frame rate at or below :data:`MAX_VIDEO_FPS`: real time at ``1 / (ctrl_dt * stride)``
    frames per second. Use as ``evaluate(policy, env, recorder=VideoRecorder(env, path))`` and call
    :meth:`close` (or :meth:`abort` after an error) at the end.
    """

    def __init__(self, env: Any, path: str | Path, size: tuple[int, int] = VIDEO_SIZE) -> None:
        width, height = size
        native_fps = 1.0 / env.ctrl_dt
        self.stride = max(1, math.ceil(native_fps / MAX_VIDEO_FPS - 1e-9))
        self.fps = native_fps / self.stride
        self.env = env
        self.data = mujoco.MjData(env.physics.mj_model)
        self.writer = Mp4Writer(Path(path), width, height, self.fps)
        try:
            self.renderer = OffscreenRenderer(env.physics.mj_model, width, height)
        except VideoUnavailable:
            self.writer.abort()
            raise
        self.steps = 0
        self.finished = False

    @property
    def path(self) -> Path:
        return self.writer.path

    def start(self) -> None:
        """The episode's first frame (call right after the env's reset)."""
        self.steps = 0
        self.finished = False
        self._write_frame()

    def capture(self, result: Any) -> None:
        """After each env step: a frame every ``stride`` steps while world 0 is in its first episode."""
        if self.finished:
            return
        if bool(result["done"][0]):
            self.finished = True  # world 0 already shows the next episode's start state
            return
        self.steps += 1
        if self.steps % self.stride == 0:
            self._write_frame()

    def _write_frame(self) -> None:
        physics = self.env.physics
        for name in ("qpos", "qvel", "mocap_pos", "mocap_quat"):
            getattr(self.data, name)[:] = getattr(physics, name)[0].cpu().numpy().astype(np.float64)
        mujoco.mj_forward(physics.mj_model, self.data)
        self.writer.write(self.renderer.render(self.data))

    def close(self) -> None:
        """Finish the mp4 and free the GL context."""
        self.renderer.close()
        self.writer.close()

    def abort(self) -> None:
        self.renderer.close()
        self.writer.abort()

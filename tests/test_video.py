"""Videos on a headless machine: offscreen MuJoCo rendering and a pip-installed mp4 encoder, decoded back.

These need the 'video' extra (PyAV) and an offscreen OpenGL (EGL or OSMesa). Outside CI a machine without
them skips the tests with the reason; CI (which installs both in .ci/run) runs them.
"""

import itertools
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pqn_torch.envs import make_env
from pqn_torch.training import evaluate, video
from pqn_torch.training.video import MAX_VIDEO_FPS, Mp4Writer, VideoRecorder, VideoUnavailable

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO)}

VIDEO_TASKS = [
    "CheetahRun",  # a DM Control task
    "HumanoidWalk",  # the most robot-like task so far; add the first legged-robot task to this list as it lands
]


def video_support_or_skip():
    """Skip (outside CI) when this machine lacks the 'video' extra or an offscreen GL."""
    try:
        import av  # noqa: F401

        video.gl_context(16, 16).free()
    except (ImportError, VideoUnavailable) as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no video support here: {error}")


def decode(path):
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return frames, float(stream.average_rate)


@pytest.mark.parametrize("task", VIDEO_TASKS)
def test_video_of_a_few_steps_decodes_to_the_expected_frames(task, tmp_path):
    video_support_or_skip()
    env = make_env(task, 2, "cpu", "mujoco", seed=0, reset_pool_size=2, num_threads=1)
    generator = torch.Generator().manual_seed(0)

    def random_policy(obs):
        return torch.rand(obs.shape[0], env.action_dim, generator=generator) * 2 - 1

    steps = 12
    recorder = VideoRecorder(env, tmp_path / "clip.mp4", size=(160, 96))
    evaluate(random_policy, env, num_steps=steps, recorder=recorder)
    recorder.close()

    stride = math.ceil(1 / env.ctrl_dt / MAX_VIDEO_FPS - 1e-9)  # CheetahRun: 100 Hz control -> every 2nd step
    frames, fps = decode(tmp_path / "clip.mp4")
    assert len(frames) == 1 + steps // stride  # the start state, then one frame per stride
    assert fps == pytest.approx(1 / (env.ctrl_dt * stride), rel=1e-3)  # real time
    assert all(frame.shape == (96, 160, 3) for frame in frames)
    assert frames[0].std() > 5  # a scene, not a blank image
    changes = [np.abs(a.astype(int) - b.astype(int)).mean() for a, b in itertools.pairwise(frames)]
    assert min(changes) > 0.05 and np.abs(frames[-1].astype(int) - frames[0].astype(int)).mean() > 0.5
    assert not list(tmp_path.glob("*.partial"))


def test_evaluate_script_writes_a_video_of_the_deterministic_policy(trained_run, tmp_path):
    video_support_or_skip()
    path = tmp_path / "eval.mp4"
    command = [
        sys.executable,
        str(REPO / "scripts" / "evaluate.py"),
        f"checkpoint={trained_run}",
        "episodes=2",
        "video=true",
        f"video_path={path}",
    ]
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "over 2 episodes (mean length 50)" in result.stdout and f"video: {path}" in result.stdout
    frames, _ = decode(path)
    assert len(frames) == 1 + 49 // 2  # 50-step episodes at 100 Hz: the start, then every 2nd step before the end
    assert frames[0].shape == (480, 640, 3)
    progress = result.stderr.splitlines()  # a line every tenth of the episode, then the mp4's end
    assert progress[0] == "evaluate.py: step 5/50 of 2 episodes, 3 video frames rendered"  # the start, steps 2, 4
    assert progress[-2:] == [
        "evaluate.py: step 50/50 of 2 episodes, 25 video frames rendered",
        "evaluate.py: finishing the mp4 (25 frames)",
    ]

    again = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)  # never overwrites
    assert again.returncode == 2 and "exists already" in again.stderr.strip().splitlines()[-1]
    assert len(decode(path)[0]) == len(frames)


def test_missing_opengl_is_one_line_that_says_how_to_get_it(monkeypatch):
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setattr(video.platform, "system", lambda: "Linux")
    monkeypatch.setattr(video.ctypes.util, "find_library", lambda name: None)
    with pytest.raises(VideoUnavailable, match=r"no OpenGL .*apt-get install libegl1 .*apt-get install libosmesa6"):
        video.gl_backend()
    monkeypatch.setattr(video.ctypes.util, "find_library", lambda name: "libOSMesa.so.8" if name == "OSMesa" else None)
    assert video.gl_backend() == "osmesa"
    monkeypatch.setenv("MUJOCO_GL", "wgl-or-so")
    with pytest.raises(VideoUnavailable, match="MUJOCO_GL='wgl-or-so' cannot render offscreen; valid: egl, osmesa"):
        video.gl_backend()


def test_mp4_writer_never_replaces_an_existing_file(tmp_path):
    pytest.importorskip("av", reason="needs the 'video' extra")
    existing = tmp_path / "mine.mp4"
    existing.write_bytes(b"keep")
    with pytest.raises(FileExistsError, match="exists already"):
        Mp4Writer(existing, 64, 48, 25)
    assert existing.read_bytes() == b"keep"
    with pytest.raises(ValueError, match="even"):
        Mp4Writer(tmp_path / "odd.mp4", 63, 48, 25)

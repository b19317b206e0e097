"""Learning curves of training runs: evaluation return against env steps and against wall time, one PNG.

Each run dir's ``eval.csv`` (written by the trainer at every evaluation) is one curve. Runs of the
same task are drawn together: one run as its curve with the spread of its evaluation episodes,
several runs (seeds) as their mean with the spread (one standard deviation) across runs and each
run as a thin line. Runs whose evaluations fall on different env steps are compared on the steps
they share (linear interpolation inside the range every run covers). Needs the ``plot`` extra
(matplotlib); no display is used.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from omegaconf import OmegaConf

from pqn_torch.training.checkpoint import load_checkpoint
from pqn_torch.training.run_dir import output_file_problem

if TYPE_CHECKING:  # matplotlib is the optional ``plot`` extra, imported where a plot is drawn
    from matplotlib.axes import Axes

EVAL_CSV = "eval.csv"
PLOT_NAME = "eval.png"
PNG_SOFTWARE = "pqn-torch learning curves"
"""Written into each PNG's metadata: a file carrying it was made here and may be redrawn; any other is kept."""


class PlotUnavailable(RuntimeError):
    """matplotlib (the ``plot`` extra) is not installed."""


@dataclass
class RunCurve:
    """One run's evaluations, in order."""

    run_dir: Path
    task: str
    env_steps: np.ndarray
    wall_s: np.ndarray
    returns: np.ndarray
    return_std: np.ndarray
    episodes: int


@dataclass
class TaskCurve:
    """The runs of one task on shared env steps: mean return and its spread, mean wall time."""

    task: str
    runs: list[RunCurve]
    env_steps: np.ndarray
    wall_s: np.ndarray
    mean: np.ndarray
    spread: np.ndarray
    """One standard deviation: across runs for several runs, across evaluation episodes for one."""


def read_run(run_dir: str | Path) -> RunCurve:
    """The evaluation curve of ``run_dir`` (from its ``eval.csv``); one clear error if there is none."""
    run_dir = Path(run_dir)
    path = run_dir / EVAL_CSV
    if not path.is_file():
        raise FileNotFoundError(f"no {EVAL_CSV} in {run_dir}: not a training run dir, or it has not evaluated yet")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ValueError(f"{path} holds no evaluation yet")
    try:
        columns = {
            name: np.array([float(row[name]) for row in rows])
            for name in ("env_steps", "wall_s", "return_mean", "return_std", "episodes")
        }
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path} is not an eval.csv written by train.py ({error!r})") from None
    return RunCurve(
        run_dir=run_dir,
        task=_task_name(run_dir),
        env_steps=columns["env_steps"],
        wall_s=columns["wall_s"],
        returns=columns["return_mean"],
        return_std=columns["return_std"],
        episodes=int(columns["episodes"].max()),
    )


def aggregate(runs: Sequence[RunCurve]) -> TaskCurve:
    """Mean and spread of ``runs`` (one task) on the env steps they share (see the module docstring)."""
    if len(runs) == 1:
        run = runs[0]
        return TaskCurve(run.task, list(runs), run.env_steps, run.wall_s, run.returns, run.return_std)
    start = max(run.env_steps[0] for run in runs)
    end = min(run.env_steps[-1] for run in runs)
    steps = np.unique(np.concatenate([run.env_steps for run in runs]))
    steps = steps[(steps >= start) & (steps <= end)]
    returns = np.stack([np.interp(steps, run.env_steps, run.returns) for run in runs])
    wall = np.stack([np.interp(steps, run.env_steps, run.wall_s) for run in runs])
    return TaskCurve(runs[0].task, list(runs), steps, wall.mean(axis=0), returns.mean(axis=0), returns.std(axis=0))


def plot_runs(run_dirs: Sequence[str | Path], output: str | Path) -> Path:
    """Draw the runs' curves (a row per task: return vs env steps, return vs wall time) into the PNG ``output``.

    ``output`` may replace an earlier plot made here, never any other file.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailable("plots need matplotlib: pip install 'pqn-torch[plot]'") from None
    output = Path(output)
    if output.suffix.lower() != ".png":
        raise ValueError(f"output must be a .png file, got {str(output)!r}")
    problem = output_file_problem("output", output)
    if problem:
        raise ValueError(problem)
    if output.exists() and not _made_here(output):
        raise FileExistsError(
            f"{output} exists and is not a plot made by pqn-torch; choose another output= or remove it"
        )
    runs = [read_run(run_dir) for run_dir in run_dirs]
    tasks: dict[str, list[RunCurve]] = {}
    for run in runs:
        tasks.setdefault(run.task, []).append(run)

    figure = Figure(figsize=(12, 4 * len(tasks)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(tasks), 2, squeeze=False)
    for (steps_axis, wall_axis), group in zip(axes, tasks.values(), strict=True):
        curve = aggregate(group)
        wall_scale, wall_unit = _time_unit(max(run.wall_s[-1] for run in group))
        _draw(steps_axis, curve, curve.env_steps, [run.env_steps for run in group], "env steps")
        _draw(
            wall_axis,
            curve,
            curve.wall_s / wall_scale,
            [run.wall_s / wall_scale for run in group],
            f"wall time ({wall_unit})",
        )
        count = f"{len(group)} runs" if len(group) > 1 else group[0].run_dir.name
        steps_axis.set_title(f"{curve.task} ({count})", loc="left")
    partial = output.with_name(output.name + ".partial")
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(partial, format="png", dpi=110, metadata={"Software": PNG_SOFTWARE})
    os.replace(partial, output)
    return output


def _draw(axis: Axes, curve: TaskCurve, x: np.ndarray, runs_x: list[np.ndarray], label: str) -> None:
    several = len(curve.runs) > 1
    if several:
        for run, run_x in zip(curve.runs, runs_x, strict=True):
            axis.plot(run_x, run.returns, color="tab:blue", alpha=0.3, linewidth=0.8)
    spread = "± 1 std across runs" if several else f"± 1 std over {curve.runs[0].episodes} eval episodes"
    axis.fill_between(
        x, curve.mean - curve.spread, curve.mean + curve.spread, color="tab:blue", alpha=0.2, linewidth=0, label=spread
    )
    axis.plot(
        x,
        curve.mean,
        color="tab:blue",
        linewidth=2,
        label=f"mean of {len(curve.runs)} runs" if several else "eval return",
    )
    axis.set_xlabel(label)
    axis.set_ylabel("eval return (deterministic policy)")
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right", fontsize="small")


def _time_unit(seconds: float) -> tuple[float, str]:
    if seconds >= 3 * 3600:
        return 3600.0, "h"
    return (60.0, "min") if seconds >= 180 else (1.0, "s")


def _made_here(path: Path) -> bool:
    try:
        from PIL import Image

        with Image.open(path) as image:
            return image.info.get("Software") == PNG_SOFTWARE
    except (ImportError, OSError):  # not an image at all, or unreadable: certainly not ours
        return False


def _task_name(run_dir: Path) -> str:
    """The run's task: from hydra's saved config (train.py runs), else from its latest checkpoint."""
    hydra_config = run_dir / ".hydra" / "config.yaml"
    if hydra_config.is_file():
        return str(OmegaConf.load(hydra_config).task.name)
    try:
        return str(load_checkpoint(run_dir)["config"]["task"]["name"])
    except (FileNotFoundError, KeyError, ValueError):
        return "unknown task"

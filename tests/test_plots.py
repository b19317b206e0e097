"""Learning-curve plots: mean and spread across seeds on shared steps, one PNG, never over a user's file."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pqn_torch.training.plots import PNG_SOFTWARE, aggregate, plot_runs, read_run

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def fake_run(directory, task, steps, returns, wall=None, stds=None):
    """A run dir as train.py leaves it, as far as plotting reads it: eval.csv and hydra's saved config."""
    directory.mkdir(parents=True)
    (directory / ".hydra").mkdir()
    (directory / ".hydra" / "config.yaml").write_text(f"task:\n  name: {task}\n")
    wall = wall if wall is not None else [10.0 * index for index in range(len(steps))]
    stds = stds if stds is not None else [1.0] * len(steps)
    with (directory / "eval.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["env_steps", "wall_s", "return_mean", "return_std", "length_mean", "episodes"])
        for row in zip(steps, wall, returns, stds, strict=True):
            writer.writerow([*row, 1000, 16])
    return directory


def test_seeds_on_the_same_steps_give_mean_and_std_across_runs(tmp_path):
    runs = [
        read_run(
            fake_run(
                tmp_path / f"seed{seed}",
                "CheetahRun",
                [0, 100, 200],
                returns,
                wall=[0.0, 30.0 + 10 * seed, 60.0 + 20 * seed],
            )
        )
        for seed, returns in enumerate(([0, 10, 20], [2, 12, 26], [4, 14, 14]))
    ]
    curve = aggregate(runs)
    assert curve.task == "CheetahRun"
    np.testing.assert_array_equal(curve.env_steps, [0, 100, 200])
    np.testing.assert_allclose(curve.mean, [2, 12, 20])
    np.testing.assert_allclose(curve.spread, [np.sqrt(8 / 3), np.sqrt(8 / 3), np.sqrt(24)])  # population std
    np.testing.assert_allclose(curve.wall_s, [0, 40, 80])


def test_runs_on_different_steps_are_compared_where_all_have_data(tmp_path):
    first = read_run(fake_run(tmp_path / "a", "WalkerWalk", [0, 100, 200, 300], [0, 100, 200, 300]))
    second = read_run(fake_run(tmp_path / "b", "WalkerWalk", [50, 150, 250, 350], [0, 0, 100, 100]))
    curve = aggregate([first, second])
    np.testing.assert_array_equal(curve.env_steps, [50, 100, 150, 200, 250, 300])  # inside [50, 300]
    np.testing.assert_allclose(curve.mean, np.array([50 + 0, 100 + 0, 150 + 0, 200 + 50, 250 + 100, 300 + 100]) / 2)


def test_one_run_shows_the_spread_of_its_evaluation_episodes(tmp_path):
    run = read_run(fake_run(tmp_path / "run", "CartpoleBalance", [0, 10], [5, 7], stds=[0.5, 2.0]))
    curve = aggregate([run])
    np.testing.assert_array_equal(curve.mean, [5, 7])
    np.testing.assert_array_equal(curve.spread, [0.5, 2.0])


def plot_cli(*args):
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "plot.py"), *map(str, args)],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_plot_script_draws_one_png_for_several_tasks_and_keeps_user_files(tmp_path):
    pytest.importorskip("matplotlib", reason="needs the 'plot' extra")
    from PIL import Image

    seeds = [
        fake_run(tmp_path / "sweep" / f"{seed}_seed{seed}", "CheetahRun", [0, 1000, 2000], [1, 50 + seed, 90])
        for seed in range(3)
    ]
    other = fake_run(tmp_path / "sweep" / "walker", "WalkerWalk", [0, 500], [3, 4])
    result = plot_cli(*seeds, other)
    assert result.returncode == 0, result.stderr
    output = tmp_path / "sweep" / "eval.png"
    assert result.stdout.strip() == f"plot: {output}"
    with Image.open(output) as image:
        assert image.info["Software"] == PNG_SOFTWARE
        width, height = image.size
    assert width > 1000 and 800 < height < 1000  # two rows (tasks) of two panels
    assert plot_cli(*seeds, other).returncode == 0  # its own plot may be redrawn

    mine = tmp_path / "mine.png"
    mine.write_bytes(b"not a plot of ours")
    refused = plot_cli(seeds[0], f"output={mine}")
    assert refused.returncode == 2 and mine.read_bytes() == b"not a plot of ours"
    assert refused.stderr.strip().splitlines() == [
        f"plot.py: {mine} exists and is not a plot made by pqn-torch; choose another output= or remove it"
    ]
    missing = plot_cli(tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"plot.py: no eval.csv in {tmp_path}: not a training run dir, or it has not evaluated yet"
    ]
    assert plot_cli(seeds[0], "colour=red").returncode == 2


def test_plot_of_a_real_run_reads_its_task_from_the_checkpoint(trained_run, tmp_path):
    pytest.importorskip("matplotlib", reason="needs the 'plot' extra")
    run = read_run(trained_run)
    assert run.task == "CheetahRun" and run.episodes == 4
    np.testing.assert_array_equal(run.env_steps, [0, 128, 256, 384, 512])
    assert np.all(np.diff(run.wall_s) > 0)
    assert plot_runs([trained_run], tmp_path / "curve.png").stat().st_size > 10_000

"""Train actor-critic PQN on a batched MuJoCo task.

    python scripts/train.py task=CheetahRun                       # GPU: DM-suite preset; CPU: its CPU-sized twin
    python scripts/train.py task=CheetahRun alg=dm_suite          # the GPU-sized preset, whatever the machine
    python scripts/train.py task=CheetahRun alg.num_envs=256 total_timesteps=2e6
    python scripts/train.py -m seed=0,1,2                         # one run per seed
    python scripts/train.py resume=$RUN                           # continue a run (RUN: its run dir)
    torchrun --nproc_per_node=4 scripts/train.py task=CheetahRun  # one agent on 4 GPUs (or CPU processes)

Everything goes to the run dir: config.yaml (what really ran), tensorboard events, eval.csv, checkpoints/,
eval.png (the learning curve). Without ``alg=`` on the command line, a run on the CPU uses the CPU-sized twin
of the task's preset (``cpu_presets`` in configs/config.yaml) and says so on its first line. Under torchrun,
``alg.num_envs`` is per rank, ``total_timesteps`` counts all ranks' env steps, and rank 0 alone prints, logs
and writes the run dir (docs/training.md, "Several processes, GPUs and machines").
Exit codes: 0 done, 1 diverged, final checkpoint not written or another rank lost (torchrun), 2 invalid input
(nothing left on disk), 128 + signal number after Ctrl-C (130) or SIGTERM (143), with a checkpoint to resume from.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import sys
from pathlib import Path

import hydra
from hydra import compose, initialize_config_dir
from hydra._internal.utils import get_args_parser
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

try:
    from pqn_torch import distributed
    from pqn_torch.training import TrainingRun
    from pqn_torch.training.checkpoint import CheckpointWriteError
    from pqn_torch.training.evaluation import format_return
    from pqn_torch.training.plots import PLOT_NAME, PlotUnavailable, plot_runs
    from pqn_torch.training.presets import choose_preset
    from pqn_torch.training.run_dir import remove_refused_sweep, unwritable_reason
    from pqn_torch.training.schema import RunConfig, explain, plain
    from pqn_torch.training.trainer import TrainingDiverged, TrainingInterrupted
except ImportError as import_error:  # e.g. MUJOCO_GL naming a backend this machine lacks
    print(f"train.py: {import_error}", file=sys.stderr)
    sys.exit(2)

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")
ALG_CHOICE = re.compile(r"^[+~]*alg=")
RUN_DIR_KEYS = ("hydra.run.dir", "hydra.sweep.dir", "hydra.sweep.subdir")


def override_keys(overrides: list[str]) -> list[str]:
    """The config keys of hydra command-line overrides (``+task.overrides.x=1`` -> ``task.overrides.x``)."""
    return [item.partition("=")[0].lstrip("+~") for item in overrides]


def stop_on_sigterm(signum: int, frame: object) -> None:
    """Until training starts (which handles signals itself), SIGTERM ends the start like Ctrl-C does."""
    raise TrainingInterrupted(signum, "stopped by SIGTERM before training started; nothing was saved")


@hydra.main(version_base=None, config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float:
    """Run one training job; returns the final evaluation return (for hydra sweepers)."""
    hydra_config = HydraConfig.get()
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    overrides = list(hydra_config.overrides.task)
    preset = hydra_config.runtime.choices.get("alg")
    chosen_dir = any(key in RUN_DIR_KEYS for key in override_keys(list(hydra_config.overrides.hydra)))
    try:  # setup: every invalid setting surfaces here, as one line
        config = plain(cfg)
        choice = choose_preset(config, preset, any(ALG_CHOICE.match(item) for item in overrides))
        if choice.message and distributed.launched_as_main():
            print(choice.message)
        if choice.preset is not None:
            cfg = hydra.compose(config_name="config", overrides=[*overrides, f"alg={choice.preset}"])
            config, preset = plain(cfg), choice.preset
        run = TrainingRun(
            config,
            hydra_config.runtime.output_dir,
            alg_preset=preset,
            overrides=override_keys(overrides),
            rename_if_taken=not chosen_dir,
        )
    except (ValueError, KeyError, OSError) as error:  # config, checkpoint and run-dir errors
        print(f"train.py: {error}", file=sys.stderr)
        sys.exit(2)
    except TrainingInterrupted as interrupted:
        print(f"train.py: {interrupted}", file=sys.stderr)
        sys.exit(128 + interrupted.signum)
    except KeyboardInterrupt:
        print("train.py: interrupted before training started; nothing was saved", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
    try:
        summary = run.run()
        distributed.shut_down()
    except TrainingInterrupted as interrupted:
        if run.ranks.is_main:  # the ranks stop together; rank 0 knows the checkpoint
            print(f"train.py: {interrupted}", file=sys.stderr)
        sys.exit(128 + interrupted.signum)
    except (TrainingDiverged, CheckpointWriteError, distributed.RanksLost) as error:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # torchrun stops the survivors of a lost rank: we are leaving
        print(f"train.py: {error}", file=sys.stderr)
        sys.exit(1)
    if not run.ranks.is_main:
        return summary.final_eval_return
    print(
        f"done: {summary.env_steps:,} env steps, final eval return {format_return(summary.final_eval_return)}, "
        f"checkpoint {summary.checkpoint}"
    )
    best = summary.best
    if best is not None and best.path != summary.checkpoint and best.eval_return is not None:
        print(f"best checkpoint: {best.path} (eval return {format_return(best.eval_return)})")
    try:
        print(f"learning curve: {plot_runs([summary.run_dir], summary.run_dir / PLOT_NAME)}")
    except PlotUnavailable as error:
        print(f"no learning-curve plot: {error}")
    print("next:\n" + "\n".join(f"  {command}" for command in next_commands(summary.run_dir)))
    return summary.final_eval_return


def next_commands(run_dir: Path) -> list[str]:
    """The commands that use a finished run, ready to paste (the run dir relative to here when it is below it)."""
    here = Path.cwd().resolve()
    location = run_dir.resolve()
    shown = shlex.quote(str(location.relative_to(here) if location.is_relative_to(here) else location))
    return [
        f"python scripts/evaluate.py checkpoint={shown} video=true  # returns, and an mp4 of one episode",
        f"python scripts/export.py checkpoint={shown}  # ONNX policy + JSON sidecar",
        f"python scripts/plot.py {shown}  # learning curve (PNG)",
        f"tensorboard --logdir {shown}",
    ]


def check_output_location(argv: list[str]) -> None:
    """Before hydra creates the run dir (a bare traceback if it cannot): one line and exit 2 if it cannot."""
    multirun = any(arg in ("-m", "--multirun") for arg in argv)
    if multirun and distributed.launched_world_size() > 1:
        print("train.py: -m (multirun) does not combine with torchrun; start one torchrun per run", file=sys.stderr)
        sys.exit(2)
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    location = "multirun" if multirun else "outputs"
    for arg in argv:
        name, _, value = arg.partition("=")
        if name.lstrip("+") == key:
            location = value
    reason = unwritable_reason(location)
    if reason:
        print(f"train.py: {key}={location}: {reason}; choose a writable location", file=sys.stderr)
        sys.exit(2)


def with_chosen_preset(argv: list[str]) -> list[str]:
    """``--cfg`` shows the config a run would run: ``argv`` plus the CPU-sized twin that the run would choose.

    Hydra prints ``--cfg`` before ``main`` could swap the preset, so the choice is made here first, by
    :func:`choose_preset` as in ``main``; its line goes to stderr, keeping stdout the YAML. A multirun, whose
    jobs may differ in task or device, and a command line hydra cannot compose go to hydra unchanged.
    """
    try:
        args = get_args_parser().parse_args(argv)
    except SystemExit:  # hydra says what is wrong with the command line
        return argv
    if not args.cfg or args.multirun:
        return argv
    overrides = [item for item in args.overrides if not item.lstrip("+~").startswith("hydra.")]
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
            cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
        config = plain(OmegaConf.masked_copy(cfg, [str(key) for key in cfg if key != "hydra"]))
        choice = choose_preset(
            config, cfg.hydra.runtime.choices.get("alg"), any(ALG_CHOICE.match(item) for item in overrides)
        )
    except (HydraException, OmegaConfBaseException, ValueError, KeyError):  # hydra reports these itself
        return argv
    if choice.message:
        print(choice.message, file=sys.stderr)
    return [f"alg={choice.preset}", *argv] if choice.preset else argv


if __name__ == "__main__":
    check_output_location(sys.argv[1:])
    sys.argv[1:] = with_chosen_preset(sys.argv[1:])
    # Hydra prints a composition error (unknown key, wrong type, missing task) over several lines and exits 1;
    # with HYDRA_FULL_ERROR it raises it instead, to be said here in one line (exit 2: invalid input).
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except (HydraException, OmegaConfBaseException) as composition_error:
        print(f"train.py: {explain(composition_error, RunConfig)}", file=sys.stderr)
        remove_refused_sweep()
        sys.exit(2)
    except SystemExit as exit_status:
        if exit_status.code == 2:  # invalid input: nothing of the start stays on disk
            remove_refused_sweep()
        raise

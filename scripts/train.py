"""Train actor-critic PQN on a batched MuJoCo task.

    python scripts/train.py task=CheetahRun                       # GPU: DM-suite preset; CPU: its CPU-sized twin
    python scripts/train.py task=CheetahRun alg=dm_suite          # the GPU-sized preset, whatever the machine
    python scripts/train.py task=CheetahRun alg.num_envs=256 total_timesteps=2e6
    python scripts/train.py -m seed=0,1,2                         # one run per seed
    python scripts/train.py resume=outputs/CheetahRun/<run dir>   # continue a run

Everything goes to the hydra run dir: tensorboard events, eval.csv, checkpoints/, eval.png (the learning
curve). Without ``alg=`` on the command line, a run on the CPU uses the CPU-sized twin of the task's
preset (``cpu_presets`` in configs/config.yaml) and says so on its first line.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from pqn_torch.training import TrainingRun
from pqn_torch.training.plots import PLOT_NAME, PlotUnavailable, plot_runs
from pqn_torch.training.presets import choose_preset

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")
ALG_CHOICE = re.compile(r"^[+~]*alg=")


@hydra.main(version_base=None, config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float:
    """Run one training job; returns the final evaluation return (for hydra sweepers)."""
    hydra_config = HydraConfig.get()
    overrides = list(hydra_config.overrides.task)
    preset = hydra_config.runtime.choices.get("alg")
    try:  # setup: every invalid setting surfaces here, as one line
        config = OmegaConf.to_container(cfg, resolve=True)
        choice = choose_preset(config, preset, any(ALG_CHOICE.match(item) for item in overrides))
        if choice.message:
            print(choice.message)
        if choice.preset is not None:
            cfg = hydra.compose(config_name="config", overrides=[*overrides, f"alg={choice.preset}"])
            config, preset = OmegaConf.to_container(cfg, resolve=True), choice.preset
            if hydra_config.output_subdir:  # hydra saved the task preset's config there: save what really runs
                OmegaConf.save(cfg, Path(hydra_config.runtime.output_dir) / hydra_config.output_subdir / "config.yaml")
        run = TrainingRun(config, hydra_config.runtime.output_dir, alg_preset=preset)
    except (ValueError, KeyError, FileExistsError, FileNotFoundError) as error:
        print(f"train.py: {error}", file=sys.stderr)
        sys.exit(2)
    summary = run.run()
    print(f"done: {summary.env_steps:,} env steps, final eval return {summary.final_eval_return:.1f}, "
          f"checkpoint {summary.checkpoint}")
    try:
        print(f"learning curve: {plot_runs([summary.run_dir], summary.run_dir / PLOT_NAME)}")
    except PlotUnavailable as error:
        print(f"no learning-curve plot: {error}")
    return summary.final_eval_return


if __name__ == "__main__":
    main()

"""Train actor-critic PQN on a batched MuJoCo task.

    python scripts/train.py task=CheetahRun                       # DM-suite preset (GPU-sized)
    python scripts/train.py task=CartpoleBalance alg=cpu          # CPU-sized preset
    python scripts/train.py task=CheetahRun alg.num_envs=256 total_timesteps=2e6
    python scripts/train.py -m seed=0,1,2                         # one run per seed
    python scripts/train.py resume=outputs/CheetahRun/<run dir>   # continue a run

Everything goes to the hydra run dir: tensorboard events, eval.csv, checkpoints/.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from pqn_torch.training import TrainingRun

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")


@hydra.main(version_base=None, config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float:
    """Run one training job; returns the final evaluation return (for hydra sweepers)."""
    hydra_config = HydraConfig.get()
    try:  # setup: every invalid setting surfaces here, as one line
        config = OmegaConf.to_container(cfg, resolve=True)
        run = TrainingRun(config, hydra_config.runtime.output_dir, alg_preset=hydra_config.runtime.choices.get("alg"))
    except (ValueError, KeyError, FileExistsError, FileNotFoundError) as error:
        print(f"train.py: {error}", file=sys.stderr)
        sys.exit(2)
    summary = run.run()
    print(f"done: {summary.env_steps:,} env steps, final eval return {summary.final_eval_return:.1f}, "
          f"checkpoint {summary.checkpoint}")
    return summary.final_eval_return


if __name__ == "__main__":
    main()

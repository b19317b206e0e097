"""Training runs: the loop behind ``scripts/train.py``, checkpoints, evaluation and logging."""

from pqn_torch.training.checkpoint import (
    CheckpointReadError,
    CheckpointWriteError,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from pqn_torch.training.evaluation import EvalResult, evaluate
from pqn_torch.training.settings import ConfigError, RunSettings, settings_from_config
from pqn_torch.training.trainer import TrainingDiverged, TrainingInterrupted, TrainingRun, TrainSummary, run_training

__all__ = [
    "CheckpointReadError",
    "CheckpointWriteError",
    "ConfigError",
    "EvalResult",
    "RunSettings",
    "TrainSummary",
    "TrainingDiverged",
    "TrainingInterrupted",
    "TrainingRun",
    "evaluate",
    "find_checkpoint",
    "load_checkpoint",
    "run_training",
    "save_checkpoint",
    "settings_from_config",
]

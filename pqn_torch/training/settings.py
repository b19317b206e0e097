"""The run configuration (hydra's composed config, or a plain dict) checked once, before anything starts.

Every invalid value is reported as one :class:`ConfigError` line naming the key, the value and what
is valid, so ``train.py`` can fail at start instead of minutes into a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from pqn_torch.algo.pqn import PQNConfig

RUNTIME_KEYS = ("device", "backend", "num_threads", "torch_threads", "split_update", "compile", "cuda_graphs",
                "log_interval", "checkpoint_interval", "resume")
"""Keys a resumed run takes from its own command line; everything else comes from the checkpoint."""


class ConfigError(ValueError):
    """An invalid configuration value (one line: key, value, what is valid)."""


@dataclass(frozen=True)
class RunSettings:
    """Validated settings of one training run."""

    task: str
    task_overrides: dict[str, Any]
    alg: PQNConfig
    total_timesteps: int
    seed: int
    device: str
    backend: str
    num_threads: int | None
    torch_threads: int
    split_update: bool | str
    compile: bool | str
    cuda_graphs: bool | str
    resume: str | None
    eval_interval: float
    eval_num_envs: int
    log_interval: int
    checkpoint_interval: float


def settings_from_config(config: dict[str, Any]) -> RunSettings:
    """Check the composed config (as a plain, resolved dict) and return the run's settings."""
    task = _mapping(config, "task")
    if not isinstance(task.get("name"), str):
        raise ConfigError(f"task.name must be a task name string, got {task.get('name')!r}")
    overrides = task.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"task.overrides must be a mapping of task options, got {overrides!r}")
    alg_values = dict(_mapping(config, "alg"))
    alg_values.pop("total_timesteps", None)  # the preset's default for the top-level total_timesteps
    try:
        alg = PQNConfig.from_dict(alg_values)
    except (TypeError, ValueError) as error:
        raise ConfigError(str(error)) from None
    evaluation = _mapping(config, "eval")
    eval_num_envs = evaluation.get("num_envs")
    if eval_num_envs is None:
        eval_num_envs = alg.num_envs
    compile_flag, graphs_flag, split_flag = (_switch(config, key)
                                             for key in ("compile", "cuda_graphs", "split_update"))
    num_threads = config.get("num_threads")
    if num_threads is not None:
        num_threads = _positive_int("num_threads", num_threads)
    torch_threads = config.get("torch_threads")
    torch_threads = 1 if torch_threads is None else _positive_int("torch_threads", torch_threads)
    resume = config.get("resume")
    if resume is not None and not isinstance(resume, str):
        raise ConfigError(f"resume must be a run directory or checkpoint path, got {resume!r}")
    return RunSettings(
        task=task["name"],
        task_overrides=dict(overrides),
        alg=alg,
        total_timesteps=_positive_int("total_timesteps", config.get("total_timesteps")),
        seed=_seed(config.get("seed")),
        device=_string("device", config.get("device", "auto")),
        backend=_string("backend", config.get("backend", "auto")),
        num_threads=num_threads,
        torch_threads=torch_threads,
        split_update=split_flag,
        compile=compile_flag,
        cuda_graphs=graphs_flag,
        resume=resume,
        eval_interval=_fraction("eval.interval", evaluation.get("interval", 0.1), allow_zero=False),
        eval_num_envs=_positive_int("eval.num_envs", eval_num_envs),
        log_interval=_positive_int("log_interval", config.get("log_interval", 10)),
        checkpoint_interval=_fraction("checkpoint_interval", config.get("checkpoint_interval", 0.1), allow_zero=True),
    )


def merge_for_resume(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """The config of a resumed run: the checkpoint's, with the :data:`RUNTIME_KEYS` of this command line."""
    merged = dict(saved)
    merged.update({key: current.get(key) for key in RUNTIME_KEYS if key in current})
    return merged


def _mapping(config: dict[str, Any], key: str) -> dict[str, Any]:
    value = config.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a mapping, got {value!r}")
    return value


def resolve_switch(value: bool | str, device: torch.device) -> bool:
    """A validated ``true``/``false``/``auto`` setting on ``device``: ``auto`` means on with CUDA."""
    return device.type == "cuda" if value == "auto" else value


def _switch(config: dict[str, Any], key: str) -> bool | str:
    value = config.get(key, "auto")
    if not (isinstance(value, bool) or value == "auto"):  # not `in (True, False)`: 1 == True
        raise ConfigError(f"{key} must be true, false or auto, got {value!r}")
    return value


def _positive_int(key: str, value: Any) -> int:
    """Accepts integers and integral floats (``2e6`` on the command line is a float)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key} must be a positive integer, got {value!r}")
    return value


def _seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {value!r}")
    return value


def _fraction(key: str, value: Any, allow_zero: bool) -> float:
    low = "0 <=" if allow_zero else "0 <"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value <= 1) or \
            (value == 0 and not allow_zero):
        raise ConfigError(f"{key} must be a fraction of training, {low} x <= 1, got {value!r}")
    return float(value)


def _string(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a string, got {value!r}")
    return value

"""The run configuration (hydra's composed config, or a plain dict) checked once, before anything starts.

Every invalid value is reported as one :class:`ConfigError` line naming the key, the value and what
is valid, so ``train.py`` can fail at start instead of minutes into a run.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig

from pqn_torch.algo.pqn import PQNConfig
from pqn_torch.envs.tasks import get_task_class
from pqn_torch.training.schema import RunConfig, typed

MACHINE_KEYS = ("device", "backend", "num_threads", "torch_threads", "split_update", "compile", "cuda_graphs", "resume")
"""Keys a resumed run always takes from its own command line (the checkpoint may come from another machine)."""
RUNTIME_KEYS = (*MACHINE_KEYS, "log_interval", "checkpoint_interval")
"""Keys a resumed run may change; the non-machine ones only when its command line sets them."""


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
    notes: tuple[str, ...] = ()
    """Settings adapted to the run (a default interval shorter than one update), one line each, for the log."""


def settings_from_config(
    config: dict[str, Any] | DictConfig, world_size: int = 1, explicit: Collection[str] = ()
) -> RunSettings:
    """Check the composed config (hydra's, or a plain dict such as an older run's config.yaml) and return the settings.

    The config is typed against :class:`~pqn_torch.training.schema.RunConfig` (missing keys take its
    defaults; unknown keys and wrong types are refused), then checked for what types cannot say.
    ``world_size``: ranks training together (torchrun), each with ``alg.num_envs`` envs; an update is
    ``world_size * alg.num_envs * alg.num_steps`` env steps. ``explicit``: the keys the user set
    (``checkpoint_interval``, ``eval.interval``, ...); an interval the user did not set that is shorter
    than one update of this run becomes one update (said in :attr:`RunSettings.notes`), an explicit one is
    an error.
    """
    config = typed(RunConfig, config, ConfigError)
    task = config["task"]
    overrides = task["overrides"] or {}
    try:
        task_class = get_task_class(task["name"])
    except ValueError as error:
        raise ConfigError(f"task.name: {error}") from None
    try:
        task_class(**overrides)  # checks the options (cheap: the model is built later, by the env)
    except ValueError as error:
        raise ConfigError(f"task.overrides ({task['name']}): {error}") from None
    alg_values = dict(config["alg"])
    alg_values.pop("total_timesteps")  # the preset's default for the top-level total_timesteps
    try:
        alg = PQNConfig(**alg_values)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    evaluation = config["eval"]
    eval_num_envs = alg.num_envs if evaluation["num_envs"] is None else evaluation["num_envs"]
    num_threads = config["num_threads"]
    total_timesteps = _positive_int("total_timesteps", config["total_timesteps"])
    steps_per_update = world_size * alg.num_envs * alg.num_steps
    if total_timesteps < steps_per_update:
        ranks = f"{world_size} ranks x " if world_size > 1 else ""
        raise ConfigError(
            f"total_timesteps ({total_timesteps:,}) must be at least one update, {ranks}alg.num_envs * "
            f"alg.num_steps = {steps_per_update:,}"
        )
    num_updates = total_timesteps // steps_per_update
    notes: list[str] = []
    checkpoint_interval = _interval(
        "checkpoint_interval", config["checkpoint_interval"], num_updates, explicit, notes, allow_zero=True
    )
    eval_interval = _interval("eval.interval", evaluation["interval"], num_updates, explicit, notes, allow_zero=False)
    if config["seed"] < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {config['seed']!r}")
    return RunSettings(
        task=task["name"],
        task_overrides=dict(overrides),
        alg=alg,
        total_timesteps=total_timesteps,
        seed=config["seed"],
        device=config["device"],
        backend=config["backend"],
        num_threads=None if num_threads is None else _positive_int("num_threads", num_threads),
        torch_threads=1 if config["torch_threads"] is None else _positive_int("torch_threads", config["torch_threads"]),
        split_update=check_switch("split_update", config["split_update"]),
        compile=check_switch("compile", config["compile"]),
        cuda_graphs=check_switch("cuda_graphs", config["cuda_graphs"]),
        resume=resume_location(config),
        eval_interval=eval_interval,
        eval_num_envs=_positive_int("eval.num_envs", eval_num_envs),
        log_interval=_positive_int("log_interval", config["log_interval"]),
        checkpoint_interval=checkpoint_interval,
        notes=tuple(notes),
    )


def resume_location(config: dict[str, Any]) -> str | None:
    """The validated ``resume`` value: a run dir or checkpoint path, or None."""
    resume = config.get("resume")
    if resume is not None and not isinstance(resume, str):
        raise ConfigError(f"resume must be a run directory or checkpoint path, got {resume!r}")
    return resume


def merge_for_resume(saved: dict[str, Any], current: dict[str, Any], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The config of a resumed run: the checkpoint's, with this command line's :data:`MACHINE_KEYS`.

    ``overrides`` are the keys this command line set (``task``, ``alg.lr_start``, ``seed``, ...). The
    other :data:`RUNTIME_KEYS` among them are taken too; any other one whose value differs from the
    checkpoint's is refused, all of them in one line, except a larger ``total_timesteps``: that extends
    the run.
    """
    merged = dict(saved)
    merged.update(
        {key: current[key] for key in RUNTIME_KEYS if key in current and (key in MACHINE_KEYS or key in overrides)}
    )
    conflicts = []
    for key in dict.fromkeys(overrides):
        path = key.split(".")
        if path[0] in RUNTIME_KEYS or path[0] == "hydra":
            continue
        new, old = _lookup(current, path), _lookup(saved, path)
        if key == "total_timesteps" and _is_number(new) and _is_number(old) and new >= old:
            merged["total_timesteps"] = new
        else:
            conflicts += _differences(key, new, old)
    if conflicts:
        raise ConfigError(
            f"resume: {', '.join(conflicts)} on the command line; a resumed run keeps its task, alg, "
            "seed and eval settings (drop these overrides, or start a new run; total_timesteps may "
            "be raised to extend the run)"
        )
    return merged


_MISSING = object()


def _lookup(config: dict[str, Any], path: list[str]) -> Any:
    for part in path:
        if not isinstance(config, dict) or part not in config:
            return _MISSING
        config = config[part]
    return config


def _differences(key: str, new: Any, old: Any) -> list[str]:
    """``key=new (the run has old)`` for every leaf where two configs differ (groups such as ``alg`` expanded)."""
    if isinstance(new, dict) and isinstance(old, dict):
        return [
            line
            for sub in dict.fromkeys([*old, *new])
            for line in _differences(f"{key}.{sub}", new.get(sub, _MISSING), old.get(sub, _MISSING))
        ]
    return [] if new == old else [f"{key}={_shown(new)} (the run has {_shown(old)})"]


def _shown(value: Any) -> str:
    return "unset" if value is _MISSING else str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def resolve_switch(value: bool | str, device: torch.device) -> bool:
    """A validated ``true``/``false``/``auto`` setting on ``device``: ``auto`` means on with CUDA."""
    return device.type == "cuda" if value == "auto" else bool(value)


def resolve_graphs_switch(value: bool | str, device: torch.device, world_size: int) -> bool:
    """``cuda_graphs`` on ``device``; off with several ranks: their phases hold collectives, untested captured."""
    if world_size == 1:
        return resolve_switch(value, device)
    if value is True:
        raise ConfigError(
            f"cuda_graphs=true is not supported with {world_size} ranks (torchrun): the rollout and "
            "update hold NCCL collectives; use cuda_graphs=auto or false"
        )
    return False


def check_switch(key: str, value: Any) -> bool | str:
    """A ``true``/``false``/``auto`` setting, checked (omegaconf types cannot say ``bool or 'auto'``)."""
    if not (isinstance(value, bool) or value == "auto"):  # not `in (True, False)`: 1 == True
        raise ConfigError(f"{key} must be true, false or auto, got {value!r}")
    return value


def _positive_int(key: str, value: float) -> int:
    """Accepts integral floats too (``2e6`` on the command line is a float)."""
    if float(value).is_integer():
        value = int(value)
    if not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key} must be a positive integer, got {value!r}")
    return value


def _interval(
    key: str, value: float, num_updates: int, explicit: Collection[str], notes: list[str], allow_zero: bool
) -> float:
    """A fraction of training that must span at least one update (0 = never, where ``allow_zero``).

    One the user did not set becomes one update and a line in ``notes``; an explicit one is an error.
    """
    fraction = _fraction(key, value, allow_zero)
    if fraction == 0 or interval_updates(fraction, num_updates) >= 1:
        return fraction
    if key not in explicit:
        notes.append(
            f"{key}: the default {fraction} of training is less than one update of this run "
            f"({num_updates} updates); using one update"
        )
        return 1 / num_updates
    never = "0 (final checkpoint only) or " if allow_zero else ""
    raise ConfigError(
        f"{key}={fraction} is less than one update of this run ({num_updates} updates); use {never}a "
        f"fraction >= {_rounded_up(1 / num_updates)}"
    )


def interval_updates(fraction: float, num_updates: int) -> int:
    """Updates between two events every ``fraction`` of ``num_updates`` (0: never); ``1 / n`` of ``n`` is 1."""
    return math.floor(fraction * num_updates * (1 + 1e-12))


def _rounded_up(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits, rounded up (a suggested fraction that really is enough)."""
    scale = 10 ** (digits - 1 - math.floor(math.log10(value)))
    return f"{math.ceil(value * scale) / scale:.{digits}g}"


def _fraction(key: str, value: float, allow_zero: bool) -> float:
    low = "0 <=" if allow_zero else "0 <"
    if not (0 <= value <= 1) or (value == 0 and not allow_zero):
        raise ConfigError(f"{key} must be a fraction of training, {low} x <= 1, got {value!r}")
    return float(value)

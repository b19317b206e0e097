"""Typed schemas of every ``key=value`` configuration: the training run's (hydra) and the scripts' options.

``RunConfig`` is the schema behind ``configs/config.yaml`` (registered with hydra's ConfigStore as
``run_schema``, the first entry of its defaults list): it holds every top-level default, and its ``alg``
node is :class:`AlgPreset`, i.e. :class:`~pqn_torch.algo.pqn.PQNConfig` itself plus the run length the
preset is tuned for. So hydra and omegaconf type each value and refuse unknown keys as the config is
composed; :mod:`pqn_torch.training.settings` adds the checks a type cannot state (ranges, divisibility,
``true``/``false``/``auto`` switches, known tasks). The task group stays free-form below
``task.overrides``: each task checks its own options.

Omegaconf's errors span several lines (``full_key``, ``object_type``); :func:`explain` turns them into
one line that names the key, the value and what is valid, from the schema's types and ``valid`` notes.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException, MissingConfigException
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from pqn_torch.algo.pqn import PQNConfig

SWITCH = "true, false or auto"


def option(default: Any, valid: str) -> Any:
    """A schema field with its default and, for error messages, what values are valid."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"valid": valid})
    return field(default=default, metadata={"valid": valid})


def checkpoint_option() -> Any:
    """The required ``checkpoint`` option of the scripts that work on a checkpoint (evaluate.py, export.py)."""
    return option(MISSING, "a checkpoint file or run dir (checkpoint=<path>)")


@dataclass
class TaskConfig:
    """``configs/task/<Name>.yaml``: the task and its options (free-form: the task class checks them)."""

    name: str = option(MISSING, "a task name (configs/task/<Name>.yaml)")
    overrides: Optional[dict[str, Any]] = option({}, "a mapping of task options")


@dataclass
class AlgPreset(PQNConfig):
    """``configs/alg/<preset>.yaml``: PQN's hyperparameters and the run length they are tuned for."""

    total_timesteps: float = option(5e7, "a positive integer (2e6 allowed)")


@dataclass
class EvalConfig:
    """When and with how many envs the run evaluates its policy."""

    # also before the first update; the default becomes one update where 0.1 of training is less (said in the log)
    interval: float = option(0.1, "a fraction of training, 0 < x <= 1")
    num_envs: Optional[int] = option(None, "a positive integer, or null for alg.num_envs")


@dataclass
class RunConfig:
    """Every setting of a training run (``python scripts/train.py --cfg job`` shows them, composed)."""

    task: TaskConfig = field(default_factory=TaskConfig)
    alg: AlgPreset = field(default_factory=AlgPreset)
    seed: int = option(0, "an integer >= 0")
    # auto: CUDA if available, else cpu; or cpu, cuda, cuda:<index>
    device: str = option("auto", "auto, cpu, cuda or cuda:<index>")
    # auto: MuJoCo Warp on CUDA, native MuJoCo on the CPU
    backend: str = option("auto", "auto, warp or mujoco")
    num_threads: Optional[int] = option(None, "a positive integer, or null for all cores")  # native MuJoCo workers
    # torch intra-op threads on the CPU outside the update (split_update): the rollout's small ops lose more to
    # thread sync than they gain, and far more while other processes keep the cores busy (null = 1)
    torch_threads: Optional[int] = option(1, "a positive integer")
    # CPU: each gradient step's actor half (its loss through the critic) on a second thread next to the critic's
    # half (bit for bit the same results); auto = whichever of split/one thread was faster when last timed
    # (every 100 updates)
    split_update: Any = option("auto", SWITCH)
    total_timesteps: float = option("${alg.total_timesteps}", "a positive integer (2e6 allowed)")
    compile: Any = option("auto", SWITCH)  # torch.compile of the policy and minibatch steps; auto = on with CUDA
    cuda_graphs: Any = option("auto", SWITCH)  # rollout and update each one CUDA graph (CUDA only); auto = with CUDA
    resume: Any = option(None, "a run directory or checkpoint path")  # continue that run (in a new run dir)
    # GPU-sized alg preset -> its CPU-sized twin, which train.py runs instead when the run's device is the CPU
    # and the command line names no alg= (configs/config.yaml lists one entry per domain)
    cpu_presets: dict[str, str] = option({}, "a mapping of alg preset names")
    eval: EvalConfig = field(default_factory=EvalConfig)
    log_interval: int = option(10, "a positive integer")  # updates between tensorboard logs / progress refreshes
    # periodic checkpoint every this fraction of training (0 = final checkpoint only); the default becomes one
    # update where 0.1 of training is less (said in the log), a value set shorter than one update is refused
    checkpoint_interval: float = option(0.1, "a fraction of training, 0 <= x <= 1")
    # checkpoints a run keeps: the latest this many (the final one among them) and the best by eval return
    keep_checkpoints: Optional[int] = option(3, "a positive integer, or null to keep every checkpoint")


ConfigStore.instance().store(name="run_schema", node=RunConfig)


def typed(schema: type, values: Mapping[str, Any], error: Callable[[str], Exception]) -> dict[str, Any]:
    """``values`` over ``schema``'s defaults as a plain, resolved dict; a bad key or value raises ``error(line)``."""
    config = OmegaConf.structured(schema)
    key = None
    try:
        for key, value in values.items():  # key by key: omegaconf names no key when a whole group has a wrong type
            if key not in field_names(schema):
                raise error(_unknown(schema, [], key))
            config = OmegaConf.merge(config, {key: value})
        return plain(config, throw_on_missing=True)
    except OmegaConfBaseException as raised:
        if not raised.full_key and key is not None:
            raise error(_wrong_value(schema, key, values[key])) from None
        raise error(explain(raised, schema)) from None


def plain(config: Any, throw_on_missing: bool = False) -> dict[str, Any]:
    """A config node as a plain, resolved dict (what the settings and the checkpoints hold)."""
    container = OmegaConf.to_container(config, resolve=True, throw_on_missing=throw_on_missing)
    if not isinstance(container, dict):
        raise TypeError(f"expected a mapping config, got {type(container).__name__}")
    return {str(key): value for key, value in container.items()}


def explain(error: Exception, schema: type) -> str:
    """One line for an omegaconf or hydra error about a config of ``schema``: key, value, what is valid."""
    if isinstance(error, HydraException) and isinstance(error.__cause__, OmegaConfBaseException):
        error = error.__cause__
    if isinstance(error, MissingConfigException) and error.options:
        return f"{_first_line(error)}; valid: {', '.join(error.options)}"
    if not isinstance(error, OmegaConfBaseException) or not error.full_key:
        lines = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
        override = getattr(error, "override", None)  # hydra's override errors name the override
        return f"{override}: {lines}" if override else lines
    key = re.sub(r"\[\d+\]$", "", error.full_key)  # a list item: described by its list's field
    *parents, name = key.split(".")
    parent = _schema_at(schema, parents)
    if dataclasses.is_dataclass(parent) and name not in field_names(parent):
        return _unknown(parent, parents, name)
    if not dataclasses.is_dataclass(parent):
        if parents == ["task", "overrides"] and isinstance(error, ConfigAttributeError | ConfigKeyError):
            return (
                f"{key}: the task's config sets no {name} to change; task options are added with a leading +: "
                f"+{key}=<value>"
            )
        return f"{error.full_key}: {_first_line(error)}"
    if isinstance(error, MissingMandatoryValue):
        return f"{key} is not set; it must be {_valid(parent, name)}"
    return _wrong_value(schema, key, error.value)


def _unknown(parent: Any, parents: Sequence[str], name: str) -> str:
    group = f"{'.'.join(parents)} " if parents else ""
    return f"unknown {group}option(s) {[name]}; valid: {field_names(parent)}"


def _wrong_value(schema: type, key: str, value: Any) -> str:
    *parents, name = key.split(".")
    return f"{key} must be {_valid(_schema_at(schema, parents), name)}, got {value!r}"


def _valid(schema: Any, name: str) -> str:
    """What values field ``name`` of dataclass ``schema`` takes: its ``valid`` note, else its type in words."""
    note = next(f.metadata.get("valid") for f in dataclasses.fields(schema) if f.name == name)
    return note or _described(typing.get_type_hints(schema)[name])


def field_names(schema: Any) -> list[str]:
    """The option names of a dataclass schema, in declaration order."""
    return [f.name for f in dataclasses.fields(schema)]


def _schema_at(schema: type, path: Sequence[str]) -> Any:
    """The dataclass (or other type) of the node at ``path`` below ``schema``; None below a free-form node."""
    for part in path:
        if not dataclasses.is_dataclass(schema):
            return None
        hints = typing.get_type_hints(schema)
        if part not in hints:
            return None
        schema = hints[part]
    return schema


def _described(annotation: Any) -> str:
    """What values a type annotation takes, in words."""
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union and type(None) in arguments:
        return f"{_described(next(a for a in arguments if a is not type(None)))} or null"
    if origin in (list, tuple):
        return f"a list of {_described(arguments[0]).removeprefix('an ').removeprefix('a ')}s"
    words = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return words.get(
        annotation, "a mapping" if origin is dict or dataclasses.is_dataclass(annotation) else str(annotation)
    )


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__

"""``key=value`` command lines of the scripts that work on a checkpoint (evaluate.py, export.py)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf


class UsageError(ValueError):
    """A bad command line: one line naming what is wrong and what is valid."""


def checkpoint_options(script: str, argv: list[str], defaults: dict[str, Any]) -> DictConfig:
    """``argv`` over ``defaults``; unknown keys or a missing ``checkpoint`` are one :class:`UsageError` line."""
    options = OmegaConf.merge(OmegaConf.create(defaults), OmegaConf.from_dotlist(argv))
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise UsageError(f"{script}: unknown option(s) {unknown}; valid: {sorted(defaults)}")
    if not isinstance(options.checkpoint, str) or not options.checkpoint:
        raise UsageError(f"{script}: checkpoint must be a checkpoint file or run dir (checkpoint=<path>), got "
                         f"{options.checkpoint!r}")
    return options

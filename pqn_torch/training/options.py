"""``key=value`` command lines of the scripts besides train.py (evaluate.py, export.py, benchmark.py).

Each script (each benchmark mode) declares its options as a dataclass. The values are read with the
grammar of hydra's overrides, as train.py's are (``true``, ``null``, ``2e6``, ``cuda:1``, ``[64,64]``;
``yes`` stays a string), and typed by omegaconf against the dataclass; every bad argument, unknown key
or wrong type is one :class:`UsageError` line naming the key, the value and what is valid, as for
train.py's config (the same :mod:`pqn_torch.training.schema` machinery).
"""

from __future__ import annotations

from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException

from pqn_torch.training.schema import field_names, typed


class UsageError(ValueError):
    """A bad command line: one line naming what is wrong and what is valid."""


def parse_options(script: str, argv: list[str], schema: Any) -> Any:
    """``argv`` (``key=value`` items) over ``schema``'s defaults, as an instance of ``schema``."""
    parser = OverridesParser.create()
    values = {}
    for argument in argv:
        try:
            override = parser.parse_overrides([argument])[0]
        except OverrideParseException:
            override = None
        if override is None or "=" not in argument or override.is_sweep_override():
            raise UsageError(
                f"{script}: bad argument {argument!r}: expected key=value (one value) with key in {field_names(schema)}"
            )
        values[override.key_or_group] = override.value()
    return schema(**typed(schema, values, lambda message: UsageError(f"{script}: {message}")))

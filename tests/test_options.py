"""The scripts' key=value options (evaluate.py, export.py, benchmark.py): typed by their dataclass, one-line errors."""

from dataclasses import dataclass
from typing import Any, Optional

import pytest

from pqn_torch.training.options import UsageError, parse_options
from pqn_torch.training.schema import SWITCH, checkpoint_option, option


@dataclass
class Example:
    checkpoint: str = checkpoint_option()
    episodes: int = option(10, "a positive integer")
    output: Optional[str] = None
    compile: Any = option("auto", SWITCH)
    sizes: list[int] = option([64, 64], "a list of integers")


def test_values_are_typed_with_the_grammar_of_train_py():
    options = parse_options(
        "x.py",
        ["checkpoint=outputs/Run/2024-01-01_10-00-00_seed0", "episodes=20", "compile=yes", "sizes=[8,16]"],
        Example,
    )
    assert options == Example("outputs/Run/2024-01-01_10-00-00_seed0", 20, None, "yes", [8, 16])
    assert parse_options("x.py", ["checkpoint=a b.pt", "output=null"], Example).checkpoint == "a b.pt"
    assert Example().sizes is not Example().sizes  # a list default is fresh per instance


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["checkpoint=c", "episode=3"],
            "x.py: unknown option(s) ['episode']; valid: ['checkpoint', 'episodes', 'output', 'compile', 'sizes']",
        ),
        (["checkpoint=c", "episodes=ten"], "x.py: episodes must be a positive integer, got 'ten'"),
        (["checkpoint=c", "sizes=[8,x]"], "x.py: sizes must be a list of integers, got 'x'"),
        (["checkpoint=c", "episodes=1,2"], "x.py: bad argument 'episodes=1,2': expected key=value (one value)"),
        (["checkpoint"], "x.py: bad argument 'checkpoint': expected key=value (one value) with key in ['checkpoint', "),
        ([], "x.py: checkpoint is not set; it must be a checkpoint file or run dir (checkpoint=<path>)"),
    ],
)
def test_bad_arguments_are_one_line_naming_what_is_valid(argv, message):
    with pytest.raises(UsageError) as raised:
        parse_options("x.py", argv, Example)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)

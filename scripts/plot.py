"""Plot evaluation return against env steps and against wall time for one or more training runs, one PNG.

    python scripts/plot.py $RUN                         # RUN: a run dir; -> $RUN/eval.png
    python scripts/plot.py $SWEEP*_seed* [output=cheetah.png]   # SWEEP: a multirun dir

Runs of one task (seeds) are drawn as their mean with one standard deviation across runs; a single run
with the spread of its evaluation episodes. The default output is ``eval.png`` in the run dirs' common
folder. Only a PNG this script made is ever replaced. Needs ``pip install 'pqn-torch[plot]'``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pqn_torch.training.plots import PLOT_NAME, PlotUnavailable, plot_runs


def main(argv: list[str]) -> int:
    options = dict(argument.split("=", 1) for argument in argv if "=" in argument)
    run_dirs = [argument for argument in argv if "=" not in argument]
    unknown = sorted(set(options) - {"output"})
    if unknown or not run_dirs:
        problem = f"unknown option(s) {unknown}" if unknown else "no run dir given"
        print(f"plot.py: {problem}; usage: plot.py RUN_DIR [RUN_DIR ...] [output=FILE.png]", file=sys.stderr)
        return 2
    output = options.get("output") or Path(os.path.commonpath([Path(d).resolve() for d in run_dirs])) / PLOT_NAME
    try:
        path = plot_runs(run_dirs, output)
    except (ValueError, FileNotFoundError, FileExistsError, PlotUnavailable) as error:
        print(f"plot.py: {error}", file=sys.stderr)
        return 2
    print(f"plot: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

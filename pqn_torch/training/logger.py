"""Where training reports go: tensorboard scalars and ``eval.csv`` in the run dir, a progress bar on the terminal.

A report that cannot be written (a full disk, a file-size limit) must not end the training: the first
failure of each file is said in one line on the console, that file is written no more, and training goes on
to its next checkpoint, which says for itself whether it could be written. Tensorboard writes from a
background thread, whose errors would otherwise print a traceback; the logger keeps that thread quiet and
hears of the error at its next write.
"""

from __future__ import annotations

import csv
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from pqn_torch.algo.metrics import TAGS


class RunLogger:
    """Tensorboard writer (``run_dir/tensorboard``) plus a tqdm bar counted in env steps.

    The bar shows the run's own estimate of the time left (``left=``, see :mod:`pqn_torch.training.remaining`)
    instead of tqdm's, which would count evaluation pauses and start-up as training speed.
    """

    def __init__(
        self, run_dir: Path, total_env_steps: int, initial_env_steps: int = 0, show_progress: bool = True
    ) -> None:
        self.run_dir = Path(run_dir)
        self.writer: SummaryWriter | None = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))
        self._failed: set[str] = set()
        self._thread_hook = threading.excepthook
        threading.excepthook = self._quiet_tensorboard_thread
        self.bar = tqdm(
            total=total_env_steps,
            initial=initial_env_steps,
            unit="step",
            unit_scale=True,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed} elapsed{postfix}]",
            dynamic_ncols=True,
            disable=not show_progress,
            file=sys.stdout,
        )
        self._shown_steps = initial_env_steps
        self._postfix: dict[str, str] = {}

    def scalars(self, values: dict[str, float], env_steps: int) -> None:
        """Write ``tag -> value`` pairs at ``env_steps``."""
        writer = self.writer
        if writer is None:
            return

        def add() -> None:
            for tag, value in values.items():
                writer.add_scalar(tag, value, env_steps)

        self._guarded("tensorboard", add)

    def csv_row(self, name: str, row: dict[str, float]) -> None:
        """Append ``row`` to the run dir's csv file ``name`` (a header first when the file is new)."""
        path = self.run_dir / name

        def append() -> None:
            new = not path.exists()
            with path.open("a", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(row))
                if new:
                    writer.writeheader()
                writer.writerow(row)

        if name not in self._failed:
            self._guarded(name, append)

    def agent_metrics(self, metrics: dict[str, float], env_steps: int) -> None:
        """Write the agent's ``pop_metrics()`` under their tensorboard tags (other names, e.g. ``env/...``, as is)."""
        self.scalars({TAGS.get(name, name): value for name, value in metrics.items()}, env_steps)

    def progress(self, env_steps: int, **postfix: str) -> None:
        """Advance the bar to ``env_steps`` and update the fields shown after it (SPS, eval return...)."""
        self._postfix.update(postfix)
        self._postfix = {key: self._postfix[key] for key in sorted(self._postfix, key=lambda key: key != "left")}
        self.bar.set_postfix(self._postfix, refresh=False)
        self.bar.update(env_steps - self._shown_steps)
        self._shown_steps = env_steps

    def message(self, text: str) -> None:
        """A line on the terminal that does not break the bar."""
        tqdm.write(text, file=sys.stdout)

    def close(self) -> None:
        self.bar.close()
        writer = self.writer
        if writer is not None:
            self._guarded("tensorboard", writer.close)
        threading.excepthook = self._thread_hook

    def _guarded(self, name: str, write: Callable[[], object]) -> None:
        """Run ``write``; an ``OSError`` is said once, and ``name`` is not written again (see module docstring)."""
        try:
            write()
        except OSError as error:
            self._failed.add(name)
            if name == "tensorboard":
                self.writer = None
            self.message(
                f"warning: cannot write {self.run_dir / name}: {error.strerror or error}; it is written no more, "
                "training goes on"
            )

    def _quiet_tensorboard_thread(self, args: threading.ExceptHookArgs) -> None:
        """Tensorboard's writer thread failing (full disk): no traceback, the next write reports it once."""
        if not (issubclass(args.exc_type, OSError) and type(args.thread).__module__.startswith("tensorboard.")):
            self._thread_hook(args)


class QuietLogger:
    """The logger of ranks other than 0 under torchrun: rank 0 alone writes tensorboard and the console."""

    def scalars(self, values: dict[str, float], env_steps: int) -> None:
        """Rank 0 writes the scalars."""

    def agent_metrics(self, metrics: dict[str, float], env_steps: int) -> None:
        """Rank 0 writes the metrics."""

    def progress(self, env_steps: int, **postfix: str) -> None:
        """Rank 0 shows the progress bar."""

    def message(self, text: str) -> None:
        """Rank 0 prints."""

    def csv_row(self, name: str, row: dict[str, float]) -> None:
        """Rank 0 writes the csv files."""

    def close(self) -> None:
        """Nothing is open."""

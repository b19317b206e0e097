"""Where training reports go: tensorboard scalars in the run dir and a progress bar on the terminal."""

from __future__ import annotations

import sys
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
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))
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
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, env_steps)

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
        self.writer.close()


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

    def close(self) -> None:
        """Nothing is open."""

"""How long a training run has left: one estimate, printed once and shown on the progress bar.

The first update of a run pays for start-up (TorchScript, first allocations; with ``compile`` or CUDA graphs
the compilation and capture), so it is left out; the estimate averages the most recent updates only, since a
machine shared with other jobs changes speed during a run. Evaluations take a different time per env step
than training (no learning, often more envs), so they are counted at the measured time of the last one.
"""

from __future__ import annotations

from collections import deque

WINDOW_UPDATES = 20
"""Recent updates averaged for the estimate."""


class RemainingTime:
    """Remaining wall time of a run from its recent update durations and its last evaluation's duration.

    ``startup_updates``: updates at the start of the loop left out of the estimate (warm-up, compilation).
    """

    def __init__(
        self, num_updates: int, eval_every: int, startup_updates: int = 1, window: int = WINDOW_UPDATES
    ) -> None:
        self.num_updates = num_updates
        self.eval_every = eval_every
        self.startup_updates = startup_updates
        self.durations: deque[float] = deque(maxlen=window)
        self.eval_seconds: float | None = None
        self._seen_updates = 0

    def update_done(self, seconds: float) -> None:
        """One training update (its rollout, learning, logging and checkpoint; not its evaluation) took ``seconds``."""
        self._seen_updates += 1
        if self._seen_updates > self.startup_updates:
            self.durations.append(seconds)

    def evaluation_done(self, seconds: float) -> None:
        self.eval_seconds = seconds

    @property
    def measured_updates(self) -> int:
        """Updates in the window (the estimate exists once this is at least one)."""
        return len(self.durations)

    def evaluations_after(self, update: int) -> int:
        """Evaluations still to come after ``update``: every ``eval_every`` updates and after the last one."""
        periodic = self.num_updates // self.eval_every - update // self.eval_every
        final = 1 if self.num_updates % self.eval_every and update < self.num_updates else 0
        return periodic + final

    def seconds_after(self, update: int) -> float | None:
        """Estimated wall time from the end of ``update`` to the end of the run; None before any update is timed.

        Evaluations not timed yet (a resumed run before its first evaluation) are left out.
        """
        if not self.durations:
            return None
        updates_left = self.num_updates - update
        evaluations = self.evaluations_after(update) * (self.eval_seconds or 0.0)
        return updates_left * sum(self.durations) / len(self.durations) + evaluations


def duration(seconds: float) -> str:
    """``about 40 s``, ``about 7 min``, ``about 2.5 h``, ``about 3.1 days``."""
    if seconds < 90:
        return f"about {max(seconds, 1):.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"about {minutes:.0f} min"
    hours = minutes / 60
    return f"about {hours:.1f} h" if hours < 48 else f"about {hours / 24:.1f} days"

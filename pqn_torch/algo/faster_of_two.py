"""Run a phase whichever of two equivalent ways is faster right now, re-timing both now and then.

Used for the CPU update's thread split (see ``cpu_gradients.minibatch_gradients``): on an idle 2-core
machine, running the actor's half of each gradient step on a second thread next to the critic's made
the update faster, ~1.6x at the DM preset's sizes, but on a machine busy with other processes the two
threads keep waiting for each other (and for Python's GIL) and the split can be slower than one thread.
Both ways compute exactly the same, so the choice can follow the machine's load.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class FasterOfTwo:
    """Calls ``phase(option)`` with the option (``False`` or ``True``) that was faster when last timed.

    Calls number 1 and 2 of every ``interval`` time one option each (call 0 warms up with
    ``initial``); each later call uses the faster one. Timed calls do full work, so nothing is
    wasted but the difference in speed during the two timed calls.
    """

    def __init__(self, interval: int = 100, initial: bool = True) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 3:
            raise ValueError(f"interval must be an integer >= 3, got {interval!r}")
        self.interval = interval
        self.choice = initial
        self.calls = 0
        self.seconds: dict[bool, float] = {}

    def __call__(self, phase: Callable[[bool], None]) -> bool:
        """Run ``phase`` once; returns the option it ran with."""
        position = self.calls % self.interval
        self.calls += 1
        if position not in (1, 2):
            phase(self.choice)
            return self.choice
        option = position == 2
        start = time.perf_counter()
        phase(option)
        self.seconds[option] = time.perf_counter() - start
        if option:
            self.choice = self.seconds[True] < self.seconds[False]
        return option

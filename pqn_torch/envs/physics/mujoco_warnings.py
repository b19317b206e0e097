"""MuJoCo's own warnings ("Nan, Inf or huge value in QACC ..."): counted, shown rate-limited, no log file.

MuJoCo C reports an unstable world through ``mju_warning``, by default as a line on stderr plus a line
appended to ``MUJOCO_LOG.TXT`` in the current directory; the native backend's batch raises it at (nearly)
every step call while any world is unstable. With thousands of worlds that is a flood on the terminal
and an ever-growing file in the user's working directory. The env already handles unstable worlds
(terminates, resets and counts them), so these warnings are a symptom to report, not to repeat: the
handler installed here counts them by kind, prints the first of each kind and then at most one summary
line per ``interval`` seconds, and writes no file. MuJoCo calls it from its worker threads.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections import Counter
from typing import TextIO

import mujoco

REPORT_INTERVAL_S = 60.0
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")


class MujocoWarnings:
    """A ``mju_user_warning`` handler: counts warnings by kind (numbers stripped), prints them rate-limited."""

    def __init__(self, interval: float = REPORT_INTERVAL_S, stream: TextIO | None = None) -> None:
        self.interval = interval
        self.stream = stream
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._unreported = 0
        self._last_report = time.monotonic()

    @property
    def total(self) -> int:
        """Warnings received since the handler was installed."""
        return sum(self.counts.values())

    def __call__(self, message: str) -> None:
        kind = _NUMBER.sub("#", message).strip()
        with self._lock:
            self.counts[kind] += 1
            now = time.monotonic()
            if self.counts[kind] == 1:
                self._print(
                    f"MuJoCo warning: {message.strip()} (further MuJoCo warnings are counted and "
                    f"summarized at most every {self.interval:.0f} s)"
                )
                self._last_report = now
            else:
                self._unreported += 1
                if now - self._last_report >= self.interval:
                    self._print(
                        f"MuJoCo: {self._unreported:,} more warnings in the last {now - self._last_report:.0f}"
                        f" s ({self.total:,} in all)"
                    )
                    self._unreported = 0
                    self._last_report = now

    def _print(self, line: str) -> None:
        print(line, file=self.stream or sys.stderr, flush=True)


_installed: MujocoWarnings | None = None


def capture_mujoco_warnings() -> MujocoWarnings | None:
    """Install the process-wide handler once; returns it, or None when the user has set their own handler."""
    global _installed
    if _installed is None:
        if mujoco.get_mju_user_warning() is not None:
            return None
        _installed = MujocoWarnings()
        mujoco.set_mju_user_warning(_installed)
    return _installed

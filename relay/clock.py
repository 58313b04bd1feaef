"""Where the scheduler gets the time: the wall clock (due times are stored so) and the
monotonic one (pacing). The real ones by default; a test passes a clock it can move
forward, so that a 30 s outage or a cooldown takes no real 30 s."""

from __future__ import annotations

import time
from collections.abc import Callable


class Clock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class DatabaseClock(Clock):
    """The wall clock of a database that several relays share: this host's clock plus the
    offset the store measured, so that a lease or a retry time written by one relay means
    the same instant to the others, whatever their hosts' clocks say."""

    def __init__(self, offset: Callable[[], float]) -> None:
        self._offset = offset

    def time(self) -> float:
        return time.time() + self._offset()

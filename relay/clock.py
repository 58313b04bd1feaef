"""Where the scheduler gets the time: the wall clock (due times are stored so) and the
monotonic one (pacing). The real ones by default; a test passes a clock it can move
forward, so that a 30 s outage or a cooldown takes no real 30 s."""

from __future__ import annotations

import time


class Clock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

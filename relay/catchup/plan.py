"""Which windows to catch up, and what becomes of a run: pure functions, with table tests
(tests/test_catchup_plan.py).

- A **downtime** window: from the newest beat of any relay before this start (less a
  margin: the beat may be up to ``BEAT`` old when relay stopped, and clocks drift) until
  this start (plus the margin: a provider may still be sending what it had queued).
- An **interval** window, every ``interval``: the last two intervals, up to ``SETTLE``
  ago, so consecutive ones overlap and the provider has had time to give up on a delivery
  (GitHub at once, Paddle after its retries). What the provider is delivering right now is
  left to the webhook itself.
- Windows of one source that overlap are run once, as their union.
- A window older than the provider keeps is cut to what it keeps, said in a note; one
  entirely older is given up.
"""

from __future__ import annotations

from dataclasses import dataclass

from relay.records import Window

BEAT = 15.0  # seconds between a running relay's heartbeats
MARGIN = 60.0  # added on both sides of a downtime window
SETTLE = 60.0  # an interval window ends this long ago
GIVE_UP_TRIES = 50  # an automatic window failing this often is given up (alerted each time)


def downtime(source: str, last_beat: float | None, started: float) -> Window | None:
    """The window nobody received webhooks in before this start; None when no relay ever
    beat on this database (a first start has nothing to catch up)."""
    if last_beat is None or last_beat >= started:
        return None
    return Window(source, last_beat - MARGIN, started + MARGIN, "downtime")


def periodic(source: str, now: float, interval: float) -> Window:
    return Window(source, now - 2 * interval, now - SETTLE, "interval")


@dataclass(frozen=True, slots=True)
class Run:
    """Windows of one source run together: their union."""

    source: str
    since: float
    until: float
    windows: tuple[Window, ...]

    @property
    def reason(self) -> str:
        reasons = {w.reason for w in self.windows}
        return "downtime" if "downtime" in reasons else min(reasons)


def merge(windows: list[Window]) -> list[Run]:
    """Overlapping (or touching) windows of a source as one run each, oldest first."""
    runs: list[Run] = []
    for window in sorted(windows, key=lambda w: (w.source, w.since, w.until)):
        last = runs[-1] if runs else None
        if last is not None and last.source == window.source and window.since <= last.until:
            runs[-1] = Run(
                last.source,
                last.since,
                max(last.until, window.until),
                (*last.windows, window),
            )
        else:
            runs.append(Run(window.source, window.since, window.until, (window,)))
    return sorted(runs, key=lambda r: (r.since, r.source))


def within_retention(
    since: float, until: float, now: float, retention: float
) -> tuple[float, str | None] | None:
    """The start the provider still has data for, and a note when it had to be moved;
    None when the whole window is older than the provider keeps."""
    horizon = now - retention
    if until < horizon:
        return None
    if since < horizon:
        days = round(retention / 86400)
        return horizon, f"the provider keeps {days} days: the window starts there, not earlier"
    return since, None


def after_failure(window: Window, automatic: bool) -> str:
    """The state of a window whose run failed: 'open', to be tried again at the next
    interval, or 'failed'. An operator's run is not repeated (they saw the error). An
    automatic one is, even after a refused key (it may be fixed and the config reloaded),
    until it failed ``GIVE_UP_TRIES`` times; each failure alerts."""
    if not automatic or window.reason == "manual":
        return "failed"
    return "failed" if window.tries >= GIVE_UP_TRIES else "open"

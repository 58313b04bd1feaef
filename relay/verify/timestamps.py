"""Replay defence for schemes that sign a timestamp (reading providers' times:
``relay.instants``)."""

from __future__ import annotations

import math

from relay.verify.base import Rejected

DEFAULT_TOLERANCE = 300.0


def check_timestamp(raw: str | None, now: float, tolerance: float) -> int:
    """The signed Unix timestamp, if within ``tolerance`` seconds of ``now`` either way."""
    # Twelve digits reach the year 33658; longer ones could not even be compared as floats.
    if raw is None or not raw.strip().isdigit() or len(raw.strip()) > 12:
        raise Rejected("missing or malformed timestamp")
    stamp = int(raw.strip())
    check_window(stamp, now, tolerance)
    return stamp


def check_window(stamp: float, now: float, tolerance: float) -> None:
    if not math.isfinite(now) or not math.isfinite(stamp) or abs(now - stamp) > tolerance:
        raise Rejected(f"timestamp outside the {tolerance:g}s tolerance (replay defence)")

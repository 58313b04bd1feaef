"""Replay defence for schemes that sign a timestamp, and reading providers' times."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from relay.verify.base import Rejected

DEFAULT_TOLERANCE = 300.0

# RFC 3339 with any number of fractional digits (Twitch sends nanoseconds; Python's
# fromisoformat takes at most six).
_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:?\d{2})?$"
)


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


def parse_instant(value: object) -> float | None:
    """Unix seconds from what providers send as a time: seconds, milliseconds (numbers
    from 1e11 up, i.e. after 1973 in ms), or an RFC 3339 string. None if it is none of them."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        match = _RFC3339.match(text)
        if match is not None:
            return _from_rfc3339(match)
        try:
            number = float(text) if len(text) <= 24 else math.nan
        except ValueError:
            return None
    else:
        return None
    if not math.isfinite(number) or number < 0:
        return None
    seconds = number / 1000.0 if number >= 1e11 else number
    return seconds if seconds < 1e11 else None


def _from_rfc3339(match: re.Match[str]) -> float | None:
    main, fraction, zone = match.groups()
    text = main.replace("t", "T").replace(" ", "T")
    zone = "+00:00" if zone is None or zone in "Zz" else zone
    try:
        moment = datetime.fromisoformat(text + zone)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() + (float("0." + fraction) if fraction else 0.0)

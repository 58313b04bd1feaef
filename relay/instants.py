"""Times as providers send them (Unix seconds or milliseconds, RFC 3339), read into Unix
seconds. A leaf: the ingest path, the store's filters, the mappings and the verifiers all
read times, and none of them should load the others to do it."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

# RFC 3339 with any number of fractional digits (Twitch sends nanoseconds; Python's
# fromisoformat takes at most six).
_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:?\d{2})?$"
)


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

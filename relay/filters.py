"""One vocabulary for every list: the console's and the API's query strings and the CLI's
flags name the same things the same way, and are read into the store's filters here.

==============  ============================================================================
``source``      a source's name
``destination`` a destination's name (events: went there; with ``status``, in that state)
``type``        the event type: a prefix (``invoice``) or a glob (``invoice.*``)
``status``      events: ``pending``, ``delivered``, ``dead`` or ``unrouted``
``since``       from: a time (``2026-12-07 06:00``, RFC 3339, Unix seconds) or a duration
                ago (``2h``); when the event was received, a dead letter died, a request
                was refused, an action was taken
``until``       until, the same way
``key``         the event's idempotency key
``q``           text in the event's body (any case; form bodies decoded)
``error``       text in a dead letter's last error
``action``      an audit action (``replay``, ``pause`` …)
``before``      a page: rows older than this one (the ``next_before`` of the page before)
``limit``       rows per page (1 to 1000)
==============  ============================================================================

``LISTS`` says which of them each list takes; the API refuses any other with 400 naming
it, and ``relay/openapi.json`` documents exactly these (tests/test_filters.py checks both).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from relay.records import DeadFilter, EventFilter, since_to_time

LISTS: dict[str, tuple[str, ...]] = {
    "events": (
        "source",
        "destination",
        "type",
        "status",
        "since",
        "until",
        "key",
        "q",
        "before",
        "limit",
    ),
    "dead": (
        "source",
        "destination",
        "type",
        "since",
        "until",
        "key",
        "q",
        "error",
        "before",
        "limit",
    ),
    "rejections": ("source", "since", "until", "before", "limit"),
    "audit": ("action", "since", "until", "before", "limit"),
}
MAX_LIMIT = 1000
MAX_ID = 2**63 - 1  # SQLite's and PostgreSQL's largest integer


# What each field means, for relay/openapi.json (``since``/``until`` per list below).
MEANINGS = {
    "source": "a source's name",
    "destination": "a destination's name",
    "type": "event type: a prefix (invoice) or a glob (invoice.*)",
    "status": "pending | delivered | dead | unrouted",
    "key": "the event's idempotency key",
    "q": "text in the event's body (any case; form bodies decoded)",
    "error": "text in the last error",
    "action": "an audit action (replay, pause, resume, reload, prune, backup, sign-in …)",
    "before": "a page: rows older than this one (the next_before of the page before)",
    "limit": "page size, 1 to 1000 (anything else is refused with 400)",
}
WHEN = {"events": "received", "dead": "died", "rejections": "refused", "audit": "taken"}


def parameters(list_name: str) -> list[dict[str, object]]:
    """The list's query parameters as OpenAPI describes them."""
    found: list[dict[str, object]] = []
    for name in LISTS[list_name]:
        if name in ("since", "until"):
            edge = "at or after" if name == "since" else "before"
            meaning = (
                f"{WHEN[list_name]} {edge}: a time (RFC 3339, 2026-12-07 06:00, Unix "
                "seconds) or a duration ago (2h)"
            )
        else:
            meaning = MEANINGS[name]
        schema: dict[str, object] = {"type": "string"}
        if name == "limit":
            schema = {"type": "integer", "default": 50, "minimum": 1, "maximum": MAX_LIMIT}
        parameter = {"name": name, "in": "query", "required": False, "description": meaning}
        found.append(parameter | {"schema": schema})
    return found


# The CLI's flags that are named otherwise there (``relay events --search``).
FLAGS = {"q": "search"}


def from_flags(args: object, list_name: str) -> dict[str, str]:
    """A command's flags (an argparse namespace) as the list's query: each field of the
    vocabulary from its flag (``--source`` …, ``--search`` for ``q``), limit aside."""
    query: dict[str, str] = {}
    for name in LISTS[list_name]:
        value = getattr(args, FLAGS.get(name, name), None)
        if value is not None and name != "limit":
            query[name] = str(value)
    return query


class FilterError(ValueError):
    """A value a list cannot take; ``str()`` names the field."""


def _text(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name)
    return value if value else None  # an empty field (a form left blank) filters nothing


def _time(query: Mapping[str, str], name: str) -> float | None:
    try:
        return since_to_time(_text(query, name))
    except ValueError as exc:
        raise FilterError(f"{name}: {exc}") from None


def _whole(query: Mapping[str, str], name: str, low: int, high: int, what: str) -> int | None:
    given = _text(query, name)
    if given is None:
        return None
    if not (given.isascii() and given.isdigit()) or not low <= int(given) <= high:
        raise FilterError(f"{name}: {what}")
    return int(given)


def limit(query: Mapping[str, str], default: int) -> int:
    found = _whole(query, "limit", 1, MAX_LIMIT, f"a whole number from 1 to {MAX_LIMIT}")
    return default if found is None else found


def unknown(query: Mapping[str, str], list_name: str) -> list[str]:
    """The fields ``query`` gives that the list does not take."""
    return sorted(set(query) - set(LISTS[list_name]))


def events(query: Mapping[str, str], page: int) -> EventFilter:
    try:
        return EventFilter(
            source=_text(query, "source"),
            event_type=_text(query, "type"),
            status=_text(query, "status"),
            since=_time(query, "since"),
            until=_time(query, "until"),
            key=_text(query, "key"),
            destination=_text(query, "destination"),
            text=_text(query, "q"),
            before=_text(query, "before"),
            limit=page,
        )
    except FilterError:
        raise
    except ValueError as exc:
        raise FilterError(f"status: {exc}") from None


def dead(query: Mapping[str, str]) -> DeadFilter:
    """Dead letters not replayed yet; ``since`` and ``until`` are when they died."""
    before = _whole(query, "before", 1, MAX_ID, "a dead letter's delivery id (a whole number)")
    return DeadFilter(
        destination=_text(query, "destination"),
        source=_text(query, "source"),
        event_type=_text(query, "type"),
        died_since=_time(query, "since"),
        died_until=_time(query, "until"),
        error=_text(query, "error"),
        key=_text(query, "key"),
        text=_text(query, "q"),
        before_id=before,
    )


@dataclass(frozen=True, slots=True)
class Timed:
    """A list filtered by one field (a source, an action) and a time range, paged by id."""

    value: str | None
    since: float | None
    until: float | None
    before: int | None


def timed(query: Mapping[str, str], field: str) -> Timed:
    return Timed(
        _text(query, field),
        _time(query, "since"),
        _time(query, "until"),
        _whole(query, "before", 1, MAX_ID, "a row's id (a whole number)"),
    )


if __name__ == "__main__":  # write the lists' parameters into relay/openapi.json
    import json
    import sys
    from pathlib import Path

    target = Path(__file__).parent / "openapi.json"
    document = json.loads(target.read_text())
    for list_name in LISTS:
        document["paths"][f"/api/{list_name}"]["get"]["parameters"] = parameters(list_name)
    target.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote the parameters of {len(LISTS)} lists to {target}", file=sys.stderr)

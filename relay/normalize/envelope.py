"""The canonical envelope (``relay.event.v1``) and the item body a destination may ask for.

The envelope's fields are the event's columns; ``data`` is the item as the provider sent
it. docs/relay.event.v1.schema.json is its JSON Schema; a change that is not additive is a
new version (a destination pins one with ``schema``).
"""

from __future__ import annotations

import datetime
import json
from typing import Any
from urllib.parse import parse_qs

from relay.normalize.taxonomy import SCHEMA, TYPES
from relay.records import EventPayload, Facts


def _instant(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def item_of(event: EventPayload) -> Any:
    """The item as data: a split item's JSON, a JSON body, or a form's fields (first
    values); None when the body is neither (or was emptied by retention)."""
    if not event.body:
        return None
    content_type = (event.content_type or "").lower()
    if "x-www-form-urlencoded" in content_type:
        text = event.body.decode("utf-8", "replace")
        fields = parse_qs(text, keep_blank_values=True, max_num_fields=1000)
        return {name: values[0] for name, values in fields.items() if values}
    try:
        return json.loads(event.body)
    except (ValueError, RecursionError):
        return None


def item_body(event: EventPayload) -> bytes:
    """What ``body = "item"`` sends: the item's JSON."""
    facts = event.facts
    if facts is not None and facts.parent_id is not None:
        return event.body  # a split item is stored as its JSON
    return json.dumps(item_of(event), separators=(",", ":")).encode()


def envelope(event: EventPayload) -> dict[str, Any]:
    facts = event.facts or Facts()
    normalized = facts.provider is not None
    return {
        "schema": SCHEMA,
        "id": event.id,
        "source": event.source,
        "provider": facts.provider,
        "channel": facts.channel,
        "type": event.event_type if event.event_type in TYPES else None,
        "provider_type": facts.provider_type if normalized else event.event_type,
        "subject": facts.subject,
        "contact": facts.contact,
        "conversation": facts.conversation,
        "occurred_at": _instant(event.occurred_at),
        "received_at": _instant(event.received_at),
        "stale": event.stale,
        "request_id": facts.parent_id,
        "data": item_of(event),
    }


def envelope_body(event: EventPayload) -> bytes:
    """What ``body = "canonical"`` sends."""
    return json.dumps(envelope(event), separators=(",", ":")).encode()

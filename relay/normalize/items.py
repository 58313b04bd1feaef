"""A request's items, read by its source's mapping (or its split path). Pure.

What ingress needs to build events from a request: for a split batch, each item with what
the mapping read from it; for a request that is one item (Twilio, Mailgun, Postmark), what
the mapping read from the request itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from typing import Any

from relay.extract import Parsed, extract
from relay.instants import parse_instant
from relay.normalize.mapping import MappingConfig, Reading, read, value
from relay.normalize.split import MAX_ITEMS, TooManyItems, items_at, whole


@dataclass(frozen=True, slots=True)
class Item:
    parsed: Parsed  # the item as JSON, for routes and rules
    body: bytes  # its JSON, as a split item's event stores it
    reading: Reading | None  # None: split without a mapping (the source's rules apply)


@dataclass(frozen=True, slots=True)
class Items:
    split: list[Item]  # a batch's items
    single: Reading | None = None  # the request is one item the mapping read
    # The request is a batch (its source splits, and it is not one item the mapping read),
    # even with no items: it then goes only to destinations that want the request itself,
    # never whole to those that want items (issue 29: {"events": []} went to them whole).
    batch: bool = False


def _item(document: Any, reading: Reading | None) -> Item:
    body = json.dumps(document, separators=(",", ":")).encode()
    parsed = Parsed(body)
    parsed._done, parsed._value = True, document
    return Item(parsed, body, reading)


def items_of(
    mapping: MappingConfig | None,
    split: str | None,
    parsed: Parsed,
    content_type: str | None,
    headers: MappingABC[str, str],
) -> Items:
    if mapping is None:
        if split is None:
            return Items([])
        return Items([_item(doc, None) for doc in items_at(parsed.json(), split)], batch=True)
    found: list[Item] = []
    for kind in mapping.items:
        if kind.split is not None:
            for doc in items_at(parsed.json(), kind.split):
                found.append(_item(doc, read(mapping, kind, doc, headers)))
            if len(found) > MAX_ITEMS:  # each path within the cap, all of them over it
                raise TooManyItems
    if found:
        return Items(found, batch=True)
    document = whole(parsed, content_type)
    for kind in mapping.items:
        if kind.split is None and (kind.when is None or value(kind.when, document, headers)):
            return Items([], read(mapping, kind, document, headers))
    return Items([], batch=any(kind.split is not None for kind in mapping.items))


def key_type_time(
    item: Item,
    rules: tuple[str | None, str | None, str | None],
    headers: MappingABC[str, str],
) -> tuple[str | None, str | None, float | None]:
    """An item's idempotency key, type and time: the mapping's, or (split without one) the
    source's rules applied to the item."""
    reading = item.reading
    if reading is not None:
        return reading.key, reading.type or reading.provider_type, reading.occurred_at
    key_rule, type_rule, time_rule = rules
    stamp = extract(time_rule, headers, item.parsed) if time_rule else None
    return (
        extract(key_rule, headers, item.parsed, limit=None),  # checked whole by ingress
        extract(type_rule, headers, item.parsed),
        parse_instant(stamp) if stamp is not None else None,
    )

"""A verified request (or an object a provider's API gave back) made into the event(s) to
store: parsed once, split into items where the source says so, typed, routed, keyed,
ordered; refused when a key is too long to keep or a batch holds too many items."""

from __future__ import annotations

import json
from collections.abc import Mapping

from relay.config import Settings
from relay.extract import MAX_VALUE_LENGTH, Parsed, as_text, extract
from relay.ids import new_event_id
from relay.ingress.answers import Answer, error
from relay.ingress.guards import Source
from relay.instants import parse_instant
from relay.normalize.items import Item, Items, items_of, key_type_time
from relay.normalize.mapping import Reading
from relay.normalize.split import TooManyItems
from relay.records import Facts, NewEvent
from relay.route import destinations_for, ordering_keys
from relay.verify.base import redacted

NOT_SPLIT = Items([])
MAX_KEY = MAX_VALUE_LENGTH  # bytes of an idempotency key (Stripe's are at most 255)
ITEM_HEADERS = json.dumps([["Content-Type", "application/json"]])


class Builder:
    """What building an event needs of the config: ordering rules, which destinations
    take a batch's request as it came, which drop stale events."""

    def __init__(self, settings: Settings) -> None:
        self._ordering = settings.ordering()
        self._bodies = {d.name: d.body for d in settings.destinations}
        self._stale_drop = {d.name for d in settings.destinations if d.stale == "drop"}

    def build(
        self,
        source: Source,
        headers: Mapping[str, str],
        body: bytes,
        client: str | None,
        now: float,
        origin: str | None = None,
    ) -> tuple[NewEvent, bool] | Answer:
        """The event (its items in ``items``) and whether it is a split batch, or the
        answer that refuses it."""
        parsed = Parsed(body)
        config = source.config
        content_type = _text_or_none(headers.get("Content-Type"))
        items = NOT_SPLIT
        if source.mapping is not None or config.split is not None:
            try:
                items = items_of(source.mapping, config.split, parsed, content_type, headers)
            except TooManyItems as exc:
                return error(413, "too_large", str(exc))
        single = items.single
        event_type = extract(config.event_type, headers, parsed)
        if single is not None:
            event_type = single.type or single.provider_type
        destinations = destinations_for(source.routes, event_type, headers, parsed)
        if items.batch:  # the request itself goes only where the request is wanted
            destinations = tuple(d for d in destinations if self._bodies.get(d) == "original")
        occurred_at = (
            parse_instant(extract(config.occurred_at, headers, parsed))
            if config.occurred_at is not None
            else None
        )
        key = extract(config.idempotency_key, headers, parsed, limit=None)
        if single is not None:
            key = single.key or key
            occurred_at = single.occurred_at or occurred_at
        if key is not None and _too_long(key):
            text = f"the idempotency key ({config.idempotency_key}) is longer than {MAX_KEY} bytes"
            return error(400, "malformed", text)
        event = NewEvent(
            id=new_event_id(now),
            source=config.name,
            received_at=now,
            idempotency_key=None if items.batch else key,
            event_type=event_type,
            content_type=content_type,
            remote_addr=client,
            origin=origin,
            headers=stored_headers(headers, source.secret_headers),
            body=body,
            destinations=destinations,
            ordering_keys=ordering_keys(self._ordering, config.name, destinations, headers, parsed),
            occurred_at=occurred_at,
            facts=_facts(single, None),
            drop_stale=self._drops(destinations) if single is not None else (),
        )
        event.items = [self._item_event(source, event, item, headers) for item in items.split]
        for index, item_event in enumerate(event.items):
            if item_event.idempotency_key is not None and _too_long(item_event.idempotency_key):
                text = f"item {index}: its idempotency key is longer than {MAX_KEY} bytes"
                return error(400, "malformed", text)
        return event, items.batch

    def _drops(self, destinations: tuple[str, ...]) -> tuple[bool, ...]:
        if not self._stale_drop or not destinations:
            return ()  # no destination drops stale events: nothing to mark
        return tuple(d in self._stale_drop for d in destinations)

    def _item_event(
        self, source: Source, request: NewEvent, item: Item, headers: Mapping[str, str]
    ) -> NewEvent:
        """One item of a split batch as an event of its own, pointing at its request."""
        config = source.config
        rules = (config.idempotency_key, config.event_type, config.occurred_at)
        key, kind, occurred_at = key_type_time(item, rules, headers)
        wanted = destinations_for(source.routes, kind, headers, item.parsed)
        destinations = tuple(d for d in wanted if self._bodies.get(d) != "original")
        return NewEvent(
            id=new_event_id(request.received_at),
            source=config.name,
            received_at=request.received_at,
            idempotency_key=key,
            event_type=kind,
            content_type="application/json",
            remote_addr=request.remote_addr,
            headers=ITEM_HEADERS,
            body=item.body,
            destinations=destinations,
            ordering_keys=ordering_keys(
                self._ordering, config.name, destinations, headers, item.parsed
            ),
            occurred_at=occurred_at,
            facts=_facts(item.reading, request.id),
            drop_stale=self._drops(destinations),
        )


def stored_headers(headers: Mapping[str, str], secret: frozenset[str]) -> str:
    """The request's headers as kept: a JSON array of [name, value], byte-exact (json.dumps
    escapes the surrogates of bytes that were not UTF-8), except headers that carry the
    source's secret itself, whose value is replaced by "[redacted]"."""
    if not secret:
        return json.dumps(list(headers.items()))
    return json.dumps(redacted(headers.items(), secret, only=True))


def _too_long(key: str) -> bool:
    return len(key.encode("utf-8", "surrogatepass")) > MAX_KEY


def _facts(reading: Reading | None, parent: str | None) -> Facts | None:
    if reading is None:
        return Facts(parent_id=parent) if parent is not None else None
    return Facts(
        parent_id=parent,
        provider=reading.provider,
        channel=reading.channel,
        provider_type=reading.provider_type,
        subject=reading.subject,
        contact=reading.contact,
        conversation=reading.conversation,
        rank=reading.rank,
    )


def _text_or_none(value: str | None) -> str | None:
    return as_text(value) if value is not None else None

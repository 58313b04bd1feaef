"""Payloads of events just committed, kept at hand for their first delivery."""

from __future__ import annotations

from collections import OrderedDict

from relay.records import EventPayload, NewEvent


class RecentEvents:
    """Payloads of events just committed, so their first delivery need not read them back.

    Bounded in bytes; on a miss (evicted, after a restart, or
    received by another relay) the store reads the database, the only source of truth.
    """

    MAX_BYTES = 8 * 1024 * 1024
    MAX_ONE = 256 * 1024

    def __init__(self) -> None:
        self._items: OrderedDict[str, EventPayload] = OrderedDict()
        self._bytes = 0

    def add(self, event: NewEvent) -> None:
        size = len(event.body) + len(event.headers)
        if size > self.MAX_ONE:
            return
        self._items[event.id] = EventPayload.of(event)
        self._bytes += size
        while self._bytes > self.MAX_BYTES:
            _, old = self._items.popitem(last=False)
            self._bytes -= len(old.body) + len(old.headers)

    def get(self, event_id: str) -> EventPayload | None:
        return self._items.get(event_id)

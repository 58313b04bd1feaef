"""Alerts: relay's own events (source ``_relay``), stored, retried and visible like any other.

They enter through the same ingest path as a provider's events; the app hands this class
that path (``ingest``), so neither the scheduler nor anything else writes into the store
behind ingress's back.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from relay.errors import StorageUnavailable
from relay.ids import new_event_id
from relay.store import NewEvent, Stored

log = logging.getLogger("relay.scheduler")

ALERT_SOURCE = "_relay"  # relay's own events; no [[sources]] name can start with _


class Alerts:
    def __init__(self, ingest: Callable[[NewEvent], Awaitable[Stored]]) -> None:
        self._ingest = ingest

    async def send(self, destination: str, payload: dict[str, Any]) -> None:
        """One alert event to ``destination``: its body is ``payload`` as JSON."""
        now = time.time()
        event = NewEvent(
            id=new_event_id(now),
            source=ALERT_SOURCE,
            received_at=now,
            idempotency_key=None,
            event_type=str(payload.get("type")),
            content_type="application/json",
            remote_addr=None,
            headers=json.dumps([["Content-Type", "application/json"]]),
            body=json.dumps(payload).encode(),
            destinations=(destination,),
        )
        try:
            await self._ingest(event)
        except StorageUnavailable:
            log.error("destination.alert_failed", extra={"fields": {"to": destination}})

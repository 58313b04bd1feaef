"""Stripe: pulled. ``GET /v1/events`` lists every event of the last 30 days, newest first,
``limit`` 100 a page, ``starting_after`` the last id for the next one while ``has_more``
(tests/catchup/openapi/stripe-events.json, from Stripe's published description). Each event
is the very object a webhook carries, with the same ``evt_…`` id, so it enters as an event
of the source keyed by that id: one that arrived already, or arrives later as a webhook, is
a duplicate. The periodic re-check asks only for events not yet delivered everywhere
(``delivery_success=false``)."""

from __future__ import annotations

import json
import math

from relay.catchup.api import Api
from relay.catchup.target import Found, Target
from relay.configtypes import CatchUpConfig
from relay.records import Tally, Window

BASE_URL = "https://api.stripe.com"
RETENTION = 30 * 86400.0  # GET /v1/events goes back 30 days
PAGE = 100


def headers(config: CatchUpConfig) -> dict[str, str]:
    return {"Authorization": f"Bearer {config.api_key.value}"}


async def run(api: Api, config: CatchUpConfig, window: Window, target: Target) -> Found:
    params: dict[str, str | int] = {
        "created[gte]": math.floor(window.since),
        "created[lte]": math.ceil(window.until),
        "limit": PAGE,
    }
    if window.reason == "interval":
        # The periodic re-check wants only what some endpoint has not received (pending,
        # or failed for good): a busy account's every event each interval would cost
        # pages and duplicate checks for nothing. After a downtime, all of them are asked.
        params["delivery_success"] = "false"
    tally = Tally()
    while True:
        page = (await api.get("/v1/events", params)).data
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            raise ValueError("stripe: /v1/events did not answer a list")
        events = [e for e in page["data"] if isinstance(e, dict) and isinstance(e.get("id"), str)]
        if target.dry_run:
            had = await target.known([e["id"] for e in events])
            tally += Tally(len(events), len(events) - len(had), len(had))
        else:
            for event in events:
                # Stripe's own layout (two spaces), so the body reads as a webhook's does.
                new = await target.admit(json.dumps(event, indent=2).encode())
                tally += Tally(1, int(new), int(not new))
        if not page.get("has_more") or not events:
            return Found(tally)
        params["starting_after"] = events[-1]["id"]

"""Svix (and Standard Webhooks senders on Svix): pushed. ``GET
/api/v1/app/{app_id}/attempt/endpoint/{endpoint_id}?status=2`` lists the failed attempts to
relay's endpoint (``after``, ``before``; 250 a page, ``iterator`` while not ``done``;
tests/catchup/openapi/svix.json, from Svix's published description). Each message relay has
no event for, by its id (``webhook-id`` / ``svix-id``, the source's key), is sent again with
``POST /api/v1/app/{app_id}/msg/{msg_id}/endpoint/{endpoint_id}/resend``: only what did not
reach relay, where ``…/recover`` would send every failed message since a time."""

from __future__ import annotations

from typing import Any

from relay.catchup.api import Api
from relay.catchup.target import Found, Target, rfc3339
from relay.configtypes import CatchUpConfig
from relay.records import Tally, Window

BASE_URL = "https://api.svix.com"
RETENTION = 30 * 86400.0  # attempts older than this may be gone (it depends on the plan)
PAGE = 250
FAILED = 2  # MessageStatus: Success 0, Pending 1, Fail 2, Sending 3


def headers(config: CatchUpConfig) -> dict[str, str]:
    return {"Authorization": f"Bearer {config.api_key.value}"}


async def run(api: Api, config: CatchUpConfig, window: Window, target: Target) -> Found:
    app, endpoint = config.app_id, config.endpoint_id
    params: dict[str, Any] = {
        "status": FAILED,
        "after": rfc3339(window.since),
        "before": rfc3339(window.until, up=True),
        "limit": PAGE,
    }
    messages: set[str] = set()
    while True:
        page = (await api.get(f"/api/v1/app/{app}/attempt/endpoint/{endpoint}", params)).data
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            raise ValueError("svix: the attempts list is not a list")
        for attempt in page["data"]:
            if isinstance(attempt, dict) and isinstance(attempt.get("msgId"), str):
                messages.add(attempt["msgId"])
        if page.get("done", True) or not page.get("iterator"):
            break
        params["iterator"] = page["iterator"]
    had = await target.known(sorted(messages))
    missing = sorted(messages - had)
    if not target.dry_run:
        for msg in missing:
            await api.post(f"/api/v1/app/{app}/msg/{msg}/endpoint/{endpoint}/resend")
    return Found(Tally(len(messages), 0, len(had), len(missing)))

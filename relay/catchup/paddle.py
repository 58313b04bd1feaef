"""Paddle Billing: pushed. ``GET /notifications`` lists the notifications of the last 90
days (``status``, ``from``, ``to``, ``notification_setting_id``; 200 a page, the next page's
URL in ``meta.pagination.next`` while ``has_more``). A ``failed`` one (Paddle gave up) whose
``event_id`` relay lacks is replayed (``POST /notifications/{id}/replay``): Paddle sends it
again, signed, with the same ``event_id``, the source's key. One still ``needs_retry`` cannot
be replayed: Paddle is still trying, and a later run replays it if it fails for good."""

from __future__ import annotations

from typing import Any

from relay.catchup.api import Api
from relay.catchup.target import Found, Target, rfc3339
from relay.configtypes import CatchUpConfig
from relay.records import Tally, Window

BASE_URL = "https://api.paddle.com"
RETENTION = 90 * 86400.0  # notifications older than 90 days are not kept
PAGE = 200


def headers(config: CatchUpConfig) -> dict[str, str]:
    return {"Authorization": f"Bearer {config.api_key.value}"}


async def run(api: Api, config: CatchUpConfig, window: Window, target: Target) -> Found:
    params: dict[str, Any] | None = {
        "status": "failed,needs_retry",
        "from": rfc3339(window.since),
        "to": rfc3339(window.until, up=True),
        "per_page": PAGE,
    }
    assert params is not None
    if config.notification_setting_id is not None:
        params["notification_setting_id"] = config.notification_setting_id
    failed: dict[str, str] = {}  # event_id: a notification of it to replay
    retrying: set[str] = set()
    url = "/notifications"
    while True:
        page = (await api.get(url, params)).data
        params = None  # the next URL carries them
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            raise ValueError("paddle: /notifications did not answer a list")
        for note in page["data"]:
            if not isinstance(note, dict) or not isinstance(note.get("payload"), dict):
                continue
            event_id = note["payload"].get("event_id")
            if not isinstance(event_id, str) or not isinstance(note.get("id"), str):
                continue
            if note.get("status") == "failed" and note.get("origin", "event") == "event":
                failed.setdefault(event_id, note["id"])
            elif note.get("status") == "needs_retry":
                retrying.add(event_id)
        pagination = (page.get("meta") or {}).get("pagination") or {}
        following = pagination.get("next")
        if not pagination.get("has_more") or not isinstance(following, str):
            break
        url = following
    retrying -= set(failed)
    had = await target.known(sorted(set(failed) | retrying))
    missing = [note for event_id, note in failed.items() if event_id not in had]
    if not target.dry_run:
        for note_id in missing:
            await api.post(f"/notifications/{note_id}/replay")
    waiting = len(retrying - had)
    notes = (f"Paddle is still retrying {waiting}; a later run replays any it gives up on",)
    return Found(
        Tally(len(failed) + len(retrying), 0, len(had), len(missing)), notes if waiting else ()
    )

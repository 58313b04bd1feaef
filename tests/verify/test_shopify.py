"""Shopify: base64 HMAC-SHA256 of the body, both header spellings, rotation, presets."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import aiohttp

from tests.helpers import Receiver, query, running, settings_for, wait_for

SECRET, OLD = "shpss_current_client_secret", "shpss_previous_client_secret"
BODY = json.dumps({"id": 820982911946154508, "email": "jon@example.com"}).encode()


def sign(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


async def test_shopify_deliveries(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    db = tmp_path / "relay.db"
    source: dict[str, Any] = {"verify": "shopify", "secret": SECRET, "secrets": [OLD]}
    common = {"X-Shopify-Topic": "orders/create", "Content-Type": "application/json"}
    cases = [
        ({"X-Shopify-Hmac-Sha256": sign(BODY, SECRET), "X-Shopify-Webhook-Id": "w1"}, BODY, 200),
        ({"X-Shopify-Hmac-Sha256": sign(BODY, OLD), "X-Shopify-Webhook-Id": "w2"}, BODY, 200),
        ({"shopify-hmac-sha256": sign(BODY, SECRET), "X-Shopify-Webhook-Id": "w3"}, BODY, 200),
        (
            {"X-Shopify-Hmac-Sha256": sign(BODY, SECRET), "X-Shopify-Webhook-Id": "w4"},
            BODY + b" ",
            401,
        ),
        ({"X-Shopify-Hmac-Sha256": sign(BODY, "other"), "X-Shopify-Webhook-Id": "w5"}, BODY, 401),
        ({"X-Shopify-Hmac-Sha256": "not base64!", "X-Shopify-Webhook-Id": "w6"}, BODY, 401),
        ({"X-Shopify-Hmac-Sha256": sign(BODY, SECRET), "X-Shopify-Webhook-Id": "w1"}, BODY, 200),
    ]
    async with running(settings_for(db, receiver.url, only_source=source)) as relay:
        url = f"http://127.0.0.1:{relay.port}/in/demo"
        statuses = []
        for extra, body, _ in cases:
            async with client.post(url, data=body, headers={**common, **extra}) as r:
                statuses.append(r.status)
        await wait_for(lambda: len(receiver.received) == 3)
    assert statuses == [expected for _, _, expected in cases]
    # w1 came twice: one event; the topic is the event type.
    assert query(db, "SELECT idempotency_key, event_type FROM events ORDER BY received_at") == [
        ("w1", "orders/create"),
        ("w2", "orders/create"),
        ("w3", "orders/create"),
    ]

"""Slack: signed with the official SDK (slack_sdk), posted to the real relay; the
url_verification handshake answered by relay itself, not stored."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiohttp
from slack_sdk.signature import SignatureVerifier

from tests.helpers import Receiver, query, running, settings_for, wait_for

SECRET, OLD = "8f742231b10e8888abcd99yyyzzz85a5", "0ld5ecret0ld5ecret0ld5ecret0ld5e"


def headers(body: bytes, secret: str, at: float) -> dict[str, str]:
    stamp = str(int(at))
    signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body)
    assert signature is not None
    return {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": signature,
        "Content-Type": "application/json",
    }


async def test_slack_sdk_signatures_and_handshake(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    db = tmp_path / "relay.db"
    source: dict[str, Any] = {"verify": "slack", "secret": SECRET, "secrets": [OLD]}
    event = json.dumps(
        {"type": "event_callback", "event_id": "Ev123", "event": {"type": "app_mention"}}
    ).encode()
    challenge = json.dumps(
        {
            "type": "url_verification",
            "token": "x",
            "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
        }
    ).encode()
    now = time.time()
    async with running(settings_for(db, receiver.url, only_source=source)) as relay:
        url = f"http://127.0.0.1:{relay.port}/in/demo"

        async def send(body: bytes, hdrs: dict[str, str]) -> tuple[int, str]:
            async with client.post(url, data=body, headers=hdrs) as r:
                return r.status, await r.text()

        shake = await send(challenge, headers(challenge, SECRET, now))
        accepted = await send(event, headers(event, SECRET, now))
        rotated = await send(
            event.replace(b"Ev123", b"Ev124"), headers(event.replace(b"Ev123", b"Ev124"), OLD, now)
        )
        tampered = await send(event + b" ", headers(event, SECRET, now))
        wrong = await send(event, headers(event, "x" * 32, now))
        stale = await send(event, headers(event, SECRET, now - 301))
        unsigned_shake = await send(challenge, {"Content-Type": "application/json"})
        await wait_for(lambda: len(receiver.received) == 2)
    # Slack's docs: answer url_verification with the challenge value.
    assert shake == (200, "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")
    assert unsigned_shake[0] == 401  # the handshake is answered only after verification
    assert [accepted[0], rotated[0], tampered[0], wrong[0], stale[0]] == [200, 200, 401, 401, 401]
    assert query(db, "SELECT idempotency_key, event_type FROM events ORDER BY received_at") == [
        ("Ev123", "app_mention"),
        ("Ev124", "app_mention"),
    ]  # the handshake was neither stored nor forwarded

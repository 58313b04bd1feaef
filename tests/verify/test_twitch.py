"""Twitch EventSub: HMAC of id + timestamp + body, the 10-minute window, and the
webhook_callback_verification handshake (dev.twitch.tv/docs/eventsub/handling-webhook-events).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from tests.helpers import Receiver
from tests.verify.harness import Case, run_cases

SECRET, OLD = "twitch-secret-0123456789", "twitch-old-secret-0123456789"


def message(msg_id: str, kind: str, body: bytes, secret: str, at: float) -> Case:
    # RFC 3339 with nanoseconds, as Twitch sends it.
    stamp = datetime.fromtimestamp(at, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"
    signed = msg_id.encode() + stamp.encode() + body
    signature = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    headers = {
        "Twitch-Eventsub-Message-Id": msg_id,
        "Twitch-Eventsub-Message-Timestamp": stamp,
        "Twitch-Eventsub-Message-Signature": signature,
        "Twitch-Eventsub-Message-Type": kind,
        "Twitch-Eventsub-Subscription-Type": "channel.follow",
        "Content-Type": "application/json",
    }
    return Case(msg_id, headers, body, 200)


async def test_twitch_notifications_and_challenge(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    now = time.time()
    event = json.dumps({"subscription": {"type": "channel.follow"}, "event": {"user_id": "1"}})
    body = event.encode()
    challenge = json.dumps({"challenge": "pogchamp-kappa-360noscope-vohiyo"}).encode()
    verification = message("m0", "webhook_callback_verification", challenge, SECRET, now)
    verification.answer = b"pogchamp-kappa-360noscope-vohiyo"
    forged = message("m5", "webhook_callback_verification", challenge, "guess", now)
    forged.status = 401
    tampered = message("m3", "notification", body, SECRET, now)
    tampered.body = body.replace(b'"1"', b'"2"')
    tampered.status = 401
    stale = message("m4", "notification", body, SECRET, now - 601)
    stale.status = 401
    first = message("m1", "notification", body, SECRET, now)
    first.forwarded = True
    rotated = message("m2", "notification", body, OLD, now - 590)  # old secret, within 10 min
    rotated.forwarded = True
    cases = [verification, forged, first, rotated, tampered, stale]
    source = {"verify": "twitch", "secret": SECRET, "secrets": [OLD]}
    result = await run_cases(tmp_path, receiver, client, source, cases)
    assert result.content_types["m0"] == "text/plain"
    events = result.events()
    assert [(key, kind) for key, kind, _ in events] == [
        ("m1", "channel.follow"),
        ("m2", "channel.follow"),
    ]
    assert abs(events[0][2] - now) < 1.0  # occurred_at from the message timestamp

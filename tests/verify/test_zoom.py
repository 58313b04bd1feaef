"""Zoom: ``x-zm-signature`` v0 HMAC and the endpoint.url_validation handshake, as Zoom's
docs describe them (developers.zoom.us, "Using webhooks": validate your webhook endpoint)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path

import aiohttp
from multidict import CIMultiDict

from relay.verify import Inbound
from relay.verify.zoom import ZoomSource
from tests.helpers import Receiver
from tests.verify.harness import Case, run_cases

SECRET, OLD = "zoom-secret-token", "zoom-previous-secret-token"


def signed(name: str, body: bytes, secret: str, at: int, status: int = 200) -> Case:
    mac = hmac.new(secret.encode(), f"v0:{at}:".encode() + body, hashlib.sha256).hexdigest()
    headers = {
        "x-zm-signature": f"v0={mac}",
        "x-zm-request-timestamp": str(at),
        "Content-Type": "application/json",
    }
    return Case(name, headers, body, status)


async def test_zoom_events_and_url_validation(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    now = int(time.time())
    validation = json.dumps(
        {
            "payload": {"plainToken": "qgg8vlvZRS6UYooatFL8Aw"},
            "event_ts": now * 1000,
            "event": "endpoint.url_validation",
        }
    ).encode()
    body = json.dumps(
        {"event": "meeting.started", "event_ts": 1700000000123, "payload": {"object": {"id": 1}}}
    ).encode()
    check = signed("validation", validation, SECRET, now)
    expected_token = hmac.new(
        SECRET.encode(), b"qgg8vlvZRS6UYooatFL8Aw", hashlib.sha256
    ).hexdigest()
    check.answer = json.dumps(
        {"plainToken": "qgg8vlvZRS6UYooatFL8Aw", "encryptedToken": expected_token}
    ).encode()
    event = signed("event", body, SECRET, now)
    event.forwarded = True
    rotated = signed("rotated", body, OLD, now)
    rotated.forwarded = True  # Zoom events have no id: no idempotency key, stored again
    cases = [
        check,
        signed("validation-forged", validation, "guess", now, 401),
        event,
        rotated,
        signed("stale", body, SECRET, now - 301, 401),
        signed("wrong", body, "guess", now, 401),
    ]
    tampered = signed("tampered", body, SECRET, now, 401)
    tampered.body = body.replace(b"started", b"ended")
    cases.append(tampered)
    source = {"verify": "zoom", "secret": SECRET, "secrets": [OLD]}
    result = await run_cases(tmp_path, receiver, client, source, cases)
    assert result.content_types["validation"] == "application/json"
    assert result.events() == [
        (None, "meeting.started", 1700000000.123),
        (None, "meeting.started", 1700000000.123),
    ]


def test_zoom_reference_vector() -> None:
    """shared/reference/providers.md §5 hand-made value: key s3cr3t, ts 1700000000."""
    body = b'{"object":"page","entry":[{"id":"1","time":1700000000,"changes":[]}]}'
    sig = "v0=9cc63b44c5d64f12e130e6a513fa3c84b280914c3df9be00b13c36d7c8e56cfb"
    source = ZoomSource.model_validate({"name": "z", "verify": "zoom", "secret": "s3cr3t"})
    headers = CIMultiDict({"x-zm-signature": sig, "x-zm-request-timestamp": "1700000000"})
    source.build_verifier().verify(Inbound("POST", "u", headers, body, None), 1700000000.0)

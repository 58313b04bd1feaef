"""Discord: Ed25519 over timestamp + body with the application's public key, PING/PONG,
401 for Discord's deliberately bad probes, and deferred answers for stored interactions.
Signed here with cryptography's Ed25519 (the same curve and encoding as Discord's)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.helpers import Receiver
from tests.verify.harness import Case, run_cases

KEY = Ed25519PrivateKey.generate()
PUBLIC_HEX = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def signed(
    name: str,
    payload: dict[str, object],
    status: int,
    at: int | None = None,
    key: Ed25519PrivateKey = KEY,
) -> Case:
    body = json.dumps(payload).encode()
    stamp = str(at if at is not None else int(time.time()))
    headers = {
        "X-Signature-Ed25519": key.sign(stamp.encode() + body).hex(),
        "X-Signature-Timestamp": stamp,
        "Content-Type": "application/json",
    }
    return Case(name, headers, body, status)


async def test_discord_interactions(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    ping = signed("ping", {"id": "1", "type": 1, "application_id": "9", "token": "t"}, 200)
    ping.answer = b'{"type": 1}'
    command = signed("command", {"id": "2", "type": 2, "token": "t", "data": {"name": "x"}}, 200)
    command.answer = b'{"type": 5}'
    command.forwarded = True
    component = signed("component", {"id": "3", "type": 3, "token": "t"}, 200)
    component.answer = b'{"type": 6}'
    component.forwarded = True
    webhook_ping = signed("webhook-ping", {"version": 1, "application_id": "9", "type": 0}, 204)
    webhook_event = signed(
        "webhook-event",
        {
            "version": 1,
            "application_id": "9",
            "type": 1,
            "event": {"type": "APPLICATION_AUTHORIZED"},
        },
        204,
    )
    webhook_event.forwarded = True
    tampered = signed("tampered", {"id": "4", "type": 2, "token": "t"}, 401)
    tampered.body = tampered.body.replace(b'"4"', b'"5"')
    probe = signed(
        "probe", {"id": "1", "type": 1, "token": "t"}, 401, key=Ed25519PrivateKey.generate()
    )
    stale = signed("stale", {"id": "6", "type": 2, "token": "t"}, 401, at=int(time.time()) - 400)
    cases = [ping, probe, command, component, webhook_ping, webhook_event, tampered, stale]
    result = await run_cases(
        tmp_path, receiver, client, {"verify": "discord", "public_key": PUBLIC_HEX}, cases
    )
    assert [key for key, _, _ in result.events()] == ["2", "3", None]
    assert result.content_types["command"] == "application/json"

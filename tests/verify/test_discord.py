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

from tests.helpers import Receiver, running, settings_for
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


async def test_a_repeated_interaction_is_answered_as_a_duplicate(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    """Issue 14: Discord's deferred answer to a repeat came without X-Relay-Duplicate, so
    the metrics counted it as accepted. Every duplicate carries the header."""
    command = signed("command", {"id": "7", "type": 2, "token": "t", "data": {}}, 200)
    webhook = signed("event", {"version": 1, "type": 1, "event": {"type": "X"}, "id": "w1"}, 204)
    source = {"verify": "discord", "public_key": PUBLIC_HEX}
    settings = settings_for(tmp_path / "relay.db", receiver.url, only_source=source)
    answers = []
    async with running(settings) as relay:
        url = f"http://127.0.0.1:{relay.port}/in/demo"
        for case in (command, command, webhook, webhook):
            async with client.post(url, data=case.body, headers=case.headers) as response:
                answers.append((response.status, response.headers.get("X-Relay-Duplicate")))
        registry = relay.metrics.registry
        duplicates = registry.get_sample_value(
            "relay_requests_total", {"source": "demo", "outcome": "duplicate"}
        )
        accepted = registry.get_sample_value(
            "relay_requests_total", {"source": "demo", "outcome": "accepted"}
        )
    assert answers == [(200, None), (200, "true"), (204, None), (204, "true")]
    assert (accepted, duplicates) == (2.0, 2.0)

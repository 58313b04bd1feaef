"""Stripe: signed with the official SDK (stripe-python), posted to the real relay."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import stripe
from multidict import CIMultiDict

from relay.verify import Inbound, Rejected
from relay.verify.stripe import StripeSource
from tests.helpers import Receiver, query, running, settings_for, wait_for

SECRET, ROTATED = "whsec_test_secret_current", "whsec_test_secret_previous"
BODY = json.dumps({"id": "evt_1Q2w3E", "object": "event", "type": "invoice.paid"})


def signed(body: str, secret: str, at: float | None = None) -> str:
    header: str = stripe.WebhookSignature.generate_signature_header(
        body, secret, timestamp=int(at if at is not None else time.time())
    )
    return header


async def _post(client: aiohttp.ClientSession, port: int, body: str, header: str) -> int:
    url = f"http://127.0.0.1:{port}/in/demo"
    headers = {"Stripe-Signature": header, "Content-Type": "application/json"}
    async with client.post(url, data=body.encode(), headers=headers) as response:
        return response.status


async def test_stripe_sdk_signatures_against_the_relay(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    db = tmp_path / "relay.db"
    source: dict[str, Any] = {"verify": "stripe", "secret": SECRET, "secrets": [ROTATED]}
    async with running(settings_for(db, receiver.url, only_source=source)) as relay:
        port = relay.port
        assert await _post(client, port, BODY, signed(BODY, SECRET)) == 200
        assert await _post(client, port, BODY, signed(BODY, ROTATED)) == 200  # rotation
        tampered = BODY.replace("invoice.paid", "invoice.void")
        assert await _post(client, port, tampered, signed(BODY, SECRET)) == 401
        assert await _post(client, port, BODY, signed(BODY, "whsec_wrong")) == 401
        stale = signed(BODY, SECRET, at=time.time() - 301)
        assert await _post(client, port, BODY, stale) == 401
        future = signed(BODY, SECRET, at=time.time() + 305)
        assert await _post(client, port, BODY, future) == 401
        await wait_for(lambda: len(receiver.received) == 1)
    # Preset metadata: Stripe's event id is the idempotency key (the rotated post was a
    # duplicate of the first), its type the event type.
    assert query(db, "SELECT idempotency_key, event_type FROM events") == [
        ("evt_1Q2w3E", "invoice.paid")
    ]


def test_stripe_vector_and_multiple_v1() -> None:
    """Vector from shared/reference/providers.md §5 #13 (stripe-python and stripe-node agree)."""
    body = b'{"id":"evt_test_webhook","object":"event","type":"payment_intent.succeeded"}'
    good = "130dc37d5a27b1b232a61e4f2ff00ed245f498112c11e8b747aff3d0fb754056"
    source = StripeSource.model_validate(
        {"name": "s", "verify": "stripe", "secret": "whsec_test_secret"}
    )
    verifier = source.build_verifier()

    def inbound(header: str) -> Inbound:
        return Inbound("POST", "u", CIMultiDict({"Stripe-Signature": header}), body, None)

    verifier.verify(inbound(f"t=1700000000,v1={good}"), 1_700_000_010)
    verifier.verify(inbound(f"t=1700000000,v1={'0' * 64},v1={good},v0=ab"), 1_700_000_010)
    for header in (f"t=1700000000,v0={good}", f"v1={good}", f"t=1700000001,v1={good}"):
        try:
            verifier.verify(inbound(header), 1_700_000_010)
        except Rejected:
            continue
        raise AssertionError(f"accepted {header!r}")

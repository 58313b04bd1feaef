"""Paddle Billing: signed with the official SDK's HMAC (paddle-python-sdk PaddleSignature),
posted to the real relay; and the SDK's own test vector."""

from __future__ import annotations

import json
import time
from pathlib import Path

import aiohttp
from multidict import CIMultiDict
from paddle_billing.Notifications.PaddleSignature import PaddleSignature

from relay.verify import Inbound
from relay.verify.paddle import PaddleSource
from tests.helpers import Receiver
from tests.verify.harness import Case, run_cases

SECRET, OLD = "pdl_ntfset_01current_secret", "pdl_ntfset_01previous_secret"
BODY = json.dumps(
    {
        "event_id": "evt_01h",
        "event_type": "transaction.completed",
        "occurred_at": "2024-04-12T10:18:49.621022Z",
    }
).encode()


def signed(name: str, secrets: list[str], status: int, at: int | None = None) -> Case:
    stamp = at if at is not None else int(time.time())
    hashes = [
        PaddleSignature.calculate_hmac(s, f"{stamp}:".encode() + BODY).hexdigest() for s in secrets
    ]
    header = f"ts={stamp};" + ";".join(f"h1={h}" for h in hashes)
    return Case(
        name, {"Paddle-Signature": header, "Content-Type": "application/json"}, BODY, status
    )


async def test_paddle_sdk_signatures_against_the_relay(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    ok = signed("ok", [SECRET], 200)
    ok.forwarded = True
    tampered = signed("tampered", [SECRET], 401)
    tampered.body = BODY.replace(b"completed", b"refunded")
    cases = [
        ok,
        signed("two-h1", ["pdl_other", OLD], 200),  # any h1, any configured secret
        signed("wrong", ["pdl_ntfset_wrong"], 401),
        tampered,
        signed("stale", [SECRET], 401, at=int(time.time()) - 301),
    ]
    source = {"verify": "paddle", "secret": SECRET, "secrets": [OLD]}
    result = await run_cases(tmp_path, receiver, client, source, cases)
    assert result.events() == [("evt_01h", "transaction.completed", 1712917129.621022)]


def test_paddle_sdk_vector() -> None:
    """paddle-python-sdk tests/Unit/Notification/test_Verifier.py (providers.md §5 #8)."""
    secret = "pdl_ntf_01hbpjmytsa32fhr36nqgc3kgb_WvRO0eL4Bj9rgYYIBZY6wZhG4EHy9jzh"
    header = "ts=1696195954;h1=d96299976a6eb066f484d7fde011ac56fc32b38fc9940bc419d6e537fdc6ef02"
    source = PaddleSource.model_validate({"name": "p", "verify": "paddle", "secret": secret})
    inbound = Inbound("POST", "u", CIMultiDict({"Paddle-Signature": header}), b"hello-world", None)
    source.build_verifier().verify(inbound, 1696195954.0)

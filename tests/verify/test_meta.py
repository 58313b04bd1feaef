"""Meta (WhatsApp Cloud API, Messenger, Instagram): the body's HMAC and the GET handshake.

Meta publishes no signing SDK; the construction is from developers.facebook.com ("Graph API
Webhooks: Validating payloads"), and the hand-made vector is in shared/reference/providers.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import aiohttp
from multidict import CIMultiDict

from relay.verify import Inbound
from relay.verify.meta import MetaSource
from tests.helpers import Receiver
from tests.verify.harness import Case, run_cases

SECRET, OLD = "meta-app-secret", "meta-previous-app-secret"
# Meta signs its escaped-unicode JSON ("\u00e4"), so the raw bytes must be used as sent.
BODY = (
    b'{"object":"whatsapp_business_account","entry":[{"id":"1","time":1700000000,"changes":'
    b'[{"field":"messages","value":{"messages":[{"id":"wamid.A1","text":{"body":"gr\\u00fc\\u00df"}}]}}]}]}'
)


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def test_meta_signatures_and_subscribe_handshake(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    source = {
        "verify": "meta",
        "secret": SECRET,
        "secrets": [OLD],
        "verify_token": "my-verify-token",
        "idempotency_key": "json:/entry/0/changes/0/value/messages/0/id",
    }
    json_type = {"Content-Type": "application/json"}
    subscribe = "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=my-verify-token"
    cases = [
        Case("subscribe", {}, b"", 200, query=subscribe, method="GET", answer=b"1158201444"),
        Case(
            "subscribe-bad-token",
            {},
            b"",
            403,
            query=subscribe.replace("my-verify-token", "guess"),
            method="GET",
        ),
        Case(
            "event",
            {**json_type, "X-Hub-Signature-256": sign(BODY, SECRET)},
            BODY,
            200,
            forwarded=True,
        ),
        Case("rotated", {**json_type, "X-Hub-Signature-256": sign(BODY, OLD)}, BODY, 200),
        Case(
            "tampered",
            {**json_type, "X-Hub-Signature-256": sign(BODY, SECRET)},
            BODY.replace(b"wamid.A1", b"wamid.A2"),
            401,
        ),
        Case("wrong", {**json_type, "X-Hub-Signature-256": sign(BODY, "x")}, BODY, 401),
    ]
    result = await run_cases(tmp_path, receiver, client, source, cases)
    # The rotated post carried the same wamid: a duplicate, stored once.
    assert result.events() == [("wamid.A1", "whatsapp_business_account", 1700000000.0)]
    assert result.content_types["subscribe"] == "text/plain"
    # The GET that failed is a rejection too, so an operator can see the wrong token.
    statuses = [status for status, _, _ in result.rejections()]
    assert statuses == [403, 401, 401]


def test_meta_reference_vector() -> None:
    """The hand-made value of shared/reference/providers.md §5 (key s3cr3t)."""
    body = b'{"object":"page","entry":[{"id":"1","time":1700000000,"changes":[]}]}'
    expected = "5916d8af8dc77909dec78b7b063b85b03ef31d7280461fd37b2dd54e8e6989a8"
    verifier = MetaSource.model_validate({"name": "m", "verify": "meta", "secret": "s3cr3t"})
    headers = CIMultiDict({"X-Hub-Signature-256": "sha256=" + expected})
    verifier.build_verifier().verify(Inbound("POST", "u", headers, body, None), 0.0)
    assert json.loads(body)["object"] == "page"

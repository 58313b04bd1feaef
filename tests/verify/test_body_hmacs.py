"""Linear, Intercom, Square, HubSpot and Mailgun: HMACs over the body (and, for Square and
HubSpot, the URL), posted to the real relay; plus each provider's published vectors.
HubSpot requests are signed with HubSpot's own SDK (hubspot-api-client)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
from hubspot.utils.signature import Signature
from multidict import CIMultiDict

from relay.verify import Inbound
from relay.verify.hubspot import HubspotSource
from relay.verify.intercom import IntercomSource
from relay.verify.square import SquareSource
from tests.helpers import Receiver
from tests.verify.harness import Case, run_cases

PUBLIC = "https://hooks.example.com/in/demo"


def hexmac(secret: str, data: bytes, algorithm: Any = hashlib.sha256) -> str:
    return hmac.new(secret.encode(), data, algorithm).hexdigest()


def b64mac(secret: str, data: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), data, hashlib.sha256).digest()).decode()


async def test_linear(tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession) -> None:
    """Linear's SDK (LinearWebhookClient): hex HMAC of the body; webhookTimestamp within 60 s."""

    def case(name: str, secret: str, at_ms: int, status: int) -> Case:
        body = json.dumps(
            {
                "type": "Issue",
                "action": "create",
                "createdAt": "2024-01-01T00:00:00.000Z",
                "webhookTimestamp": at_ms,
            }
        ).encode()
        headers = {
            "Linear-Signature": hexmac(secret, body),
            "Linear-Delivery": f"d-{name}",
            "Linear-Event": "Issue",
        }
        return Case(name, headers, body, status, forwarded=status == 200)

    now_ms = int(time.time() * 1000)
    tampered = case("tampered", "lin_wh_s", now_ms, 401)
    tampered.body = tampered.body.replace(b"create", b"remove")
    cases = [
        case("ok", "lin_wh_s", now_ms, 200),
        case("rotated", "lin_wh_old", now_ms, 200),
        case("wrong", "lin_wh_x", now_ms, 401),
        case("stale", "lin_wh_s", now_ms - 61_000, 401),
        tampered,
    ]
    source = {"verify": "linear", "secret": "lin_wh_s", "secrets": ["lin_wh_old"]}
    result = await run_cases(tmp_path, receiver, client, source, cases)
    assert result.events() == [
        ("d-ok", "Issue", 1704067200.0),
        ("d-rotated", "Issue", 1704067200.0),
    ]


async def test_intercom(tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession) -> None:
    """developers.intercom.com (webhooks, signed notifications): X-Hub-Signature sha1=."""
    body = json.dumps(
        {
            "type": "notification_event",
            "id": "notif_1",
            "topic": "conversation.user.created",
            "created_at": 1700000000,
        }
    ).encode()

    def case(name: str, secret: str, status: int) -> Case:
        header = {"X-Hub-Signature": "sha1=" + hexmac(secret, body, hashlib.sha1)}
        return Case(name, header, body, status, forwarded=status == 200)

    cases = [case("ok", "ic-secret", 200), case("wrong", "ic-x", 401)]
    result = await run_cases(
        tmp_path, receiver, client, {"verify": "intercom", "secret": "ic-secret"}, cases
    )
    assert result.events() == [("notif_1", "conversation.user.created", 1700000000.0)]


async def test_square(tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession) -> None:
    body = json.dumps(
        {
            "merchant_id": "M1",
            "type": "payment.updated",
            "event_id": "ev-1",
            "created_at": "2024-01-01T00:00:00Z",
        }
    ).encode()

    def case(name: str, url: str, status: int) -> Case:
        header = {"x-square-hmacsha256-signature": b64mac("sq-key", url.encode() + body)}
        return Case(name, header, body, status, forwarded=status == 200)

    cases = [case("ok", PUBLIC, 200), case("other-url", "https://elsewhere.example/in/demo", 401)]
    source = {"verify": "square", "secret": "sq-key", "public_url": PUBLIC}
    result = await run_cases(tmp_path, receiver, client, source, cases)
    assert result.events() == [("ev-1", "payment.updated", 1704067200.0)]


def test_square_published_vectors() -> None:
    """square-python-sdk tests/utilities/test_webhooks_helper.py (providers.md §5 #10, #11)."""
    vectors = [
        (
            "Ibxx_5AKakO-3qeNVR61Dw",
            "https://webhook.site/679a4f3a-dcfa-49ee-bac5-9d0edad886b9",
            b'{"merchant_id":"MLEFBHHSJGVHD","type":"webhooks.test_notification","event_id":'
            b'"ac3ac95b-f97d-458c-a6e6-18981597e05f","created_at":"2022-07-13T20:30:59.037339943Z",'
            b'"data":{"type":"webhooks","id":"bc368e64-01aa-407e-b46e-3231809b1129"}}',
            "GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N4=",
        ),
        (
            "signature-key",
            "https://webhook.site/webhooks",
            b'{"data":{"type":"webhooks","id":">id<"}}',
            "Cxt7+aTi4rKgcA0bC4g9EHdVtLSDWdqccmL5MvihU4U=",
        ),
    ]
    for key, url, body, signature in vectors:
        source = SquareSource.model_validate(
            {"name": "s", "verify": "square", "secret": key, "public_url": url}
        )
        headers = CIMultiDict({"x-square-hmacsha256-signature": signature})
        source.build_verifier().verify(Inbound("POST", url, headers, body, None), 0.0)


async def test_hubspot_sdk_signatures(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    body = json.dumps(
        [{"eventId": 100, "subscriptionType": "contact.creation", "occurredAt": 1700000000000}]
    )

    def case(
        name: str, secret: str, status: int, at_ms: int, url: str = PUBLIC + "?portal=1"
    ) -> Case:
        stamp = str(at_ms)
        signature = Signature.get_signature(
            secret, body, "v3", http_uri=url, http_method="POST", timestamp=stamp
        )
        headers = {
            "X-HubSpot-Signature-v3": signature,
            "X-HubSpot-Request-Timestamp": stamp,
            "Content-Type": "application/json",
        }
        return Case(name, headers, body.encode(), status, query="portal=1", forwarded=status == 200)

    now_ms = int(time.time() * 1000)
    cases = [
        case("ok", "hs-secret", 200, now_ms),
        case("wrong", "hs-x", 401, now_ms),
        case("stale", "hs-secret", 401, now_ms - 301_000),
        case("other-url", "hs-secret", 401, now_ms, url="https://elsewhere.example/x?portal=1"),
    ]
    source = {"verify": "hubspot", "secret": "hs-secret", "public_url": PUBLIC}
    result = await run_cases(tmp_path, receiver, client, source, cases)
    assert result.events() == [("100", "contact.creation", 1700000000.0)]


def test_hubspot_published_vector() -> None:
    """hubspot-api-python tests/spec/utils/test_signature.py (providers.md §5 #9)."""
    source = HubspotSource.model_validate(
        {
            "name": "h",
            "verify": "hubspot",
            "secret": "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy",
            "public_url": "https://www.example.com/webhook_uri",
        }
    )
    headers = CIMultiDict(
        {
            "X-HubSpot-Signature-v3": "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y=",
            "X-HubSpot-Request-Timestamp": "1693657560000",
        }
    )
    inbound = Inbound("POST", "u", headers, b"{'example_field':'example_value'}", None)
    source.build_verifier().verify(inbound, 1693657560.0 + 5)


async def test_mailgun(tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession) -> None:
    """Mailgun (documentation.mailgun.com, securing webhooks): hex HMAC of timestamp + token."""

    def case(name: str, key: str, status: int, at: int, form: bool = False) -> Case:
        token = f"token-{name}"
        signature = {
            "timestamp": str(at),
            "token": token,
            "signature": hexmac(key, f"{at}{token}".encode()),
        }
        if form:
            from urllib.parse import urlencode

            body = urlencode({**signature, "event": "delivered"}).encode()
        else:
            body = json.dumps(
                {
                    "signature": signature,
                    "event-data": {"id": f"id-{name}", "event": "delivered", "timestamp": at},
                }
            ).encode()
        return Case(name, {}, body, status, forwarded=status == 200)

    now = int(time.time())
    cases = [
        case("ok", "mg-key", 200, now),
        case("form", "mg-key", 200, now, form=True),
        case("wrong", "mg-x", 401, now),
        case("stale", "mg-key", 401, now - 901),
    ]
    result = await run_cases(
        tmp_path, receiver, client, {"verify": "mailgun", "secret": "mg-key"}, cases
    )
    assert [(key, kind) for key, kind, _ in result.events()] == [
        ("id-ok", "delivered"),
        (None, None),
    ]


def test_intercom_reference_vector() -> None:
    """shared/reference/providers.md §5 hand-made value (key s3cr3t)."""
    body = b'{"object":"page","entry":[{"id":"1","time":1700000000,"changes":[]}]}'
    headers = CIMultiDict({"X-Hub-Signature": "sha1=f03b314c118d7577ba4190495417eedb94e0b8ef"})
    source = IntercomSource.model_validate({"name": "i", "verify": "intercom", "secret": "s3cr3t"})
    source.build_verifier().verify(Inbound("POST", "u", headers, body, None), 0.0)

"""Normalized events end to end (issue 19): batches split into items, one canonical shape
for five providers, message status kept in order. A real relay (aiohttp app) on a real
SQLite file, real receivers on 127.0.0.1.

Bodies follow ../shared/reference/messaging-events.md, each built from the documented
fields of the provider page it names (values invented, as there).
"""

from __future__ import annotations

import base64
import hmac
import json
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from relay.config import Settings
from relay.verify.sendgrid import SIGNATURE, TIMESTAMP
from tests.helpers import SECRET, Receiver, query, running, sign, wait_for

ROOT = Path(__file__).resolve().parent.parent
SIGNING_SECRET = "whsec_" + base64.b64encode(b"relay-test-signing-key-32-bytes!").decode()
SIGNING_KEY = b"relay-test-signing-key-32-bytes!"

SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())
SENDGRID_PUBLIC = base64.b64encode(
    SENDGRID_KEY.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
).decode()


def sendgrid_event(n: int, event: str, email: str = "ana@example.com", **extra: Any) -> Any:
    """An element of the Event Webhook array (twilio.com/docs/sendgrid/for-developers/
    tracking-events/event; sendgrid/docs event.md examples)."""
    return {
        "email": email,
        "timestamp": 1764424800 + n,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": event,
        "sg_event_id": f"sg-event-{n}",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        **extra,
    }


def sendgrid_headers(body: bytes) -> dict[str, str]:
    stamp = str(int(time.time()))
    signature = SENDGRID_KEY.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "Content-Type": "application/json",
        SIGNATURE: base64.b64encode(signature).decode(),
        TIMESTAMP: stamp,
    }


def whatsapp_statuses(*statuses: tuple[str, int]) -> bytes:
    """A WhatsApp Cloud API status webhook (developers.facebook.com/documentation/
    business-messaging/whatsapp/webhooks/reference/messages/status/)."""
    items = [
        {
            "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA",
            "status": status,
            "timestamp": str(stamp),
            "recipient_id": "16505551234",
        }
        for status, stamp in statuses
    ]
    body = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": "106540352242922",
                            },
                            "statuses": items,
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(body).encode()


def settings(
    db: Path, sources: list[dict[str, Any]], destinations: list[dict[str, Any]], **extra: Any
) -> Settings:
    routes = [
        {"source": s["name"], "destinations": [d["name"] for d in destinations]} for s in sources
    ]
    for d in destinations:
        d.setdefault("timeout", 2.0)
        d.setdefault("retry", {"max_attempts": 3, "base": 0.05, "cap": 0.1})
    return Settings(
        server={"listen": "127.0.0.1:0", "shutdown_grace": 1.0},
        storage={"path": str(db)},
        sources=sources,
        destinations=destinations,
        routes=routes,
        **extra,
    )


@pytest.fixture
async def second() -> AsyncIterator[Receiver]:
    rx = await Receiver().start()
    yield rx
    await rx.stop()


async def post(
    client: aiohttp.ClientSession, port: int, source: str, body: bytes, headers: dict[str, str]
) -> tuple[int, Any]:
    async with client.post(
        f"http://127.0.0.1:{port}/in/{source}", data=body, headers=headers
    ) as response:
        return response.status, await response.json()


def verified(received: Any) -> bool:
    """The Standard Webhooks signature relay put on a delivery covers the bytes sent."""
    h = received.headers
    signed = f"{h['webhook-id']}.{h['webhook-timestamp']}.".encode() + received.body
    expected = base64.b64encode(hmac.digest(SIGNING_KEY, signed, "sha256")).decode()
    return bool(h["webhook-signature"] == f"v1,{expected}")


async def test_a_sendgrid_batch_becomes_its_new_items_each_delivered_signed(
    tmp_path: Path, receiver: Receiver, second: Receiver, client: aiohttp.ClientSession
) -> None:
    db = tmp_path / "relay.db"
    source = {
        "name": "email",
        "verify": "sendgrid",
        "public_key": SENDGRID_PUBLIC,
        "normalize": "sendgrid",
    }
    items_to = {
        "name": "items",
        "url": receiver.url,
        "body": "item",
        "signing_secret": SIGNING_SECRET,
    }
    raw_to = {"name": "raw", "url": second.url}  # body = "original": the request as sent
    earlier = [sendgrid_event(1, "processed"), sendgrid_event(2, "delivered")]
    batch = [
        *earlier,  # two repeats of the earlier batch
        sendgrid_event(3, "open"),
        sendgrid_event(4, "bounce", "bo@example.com", type="bounce", reason="500 unknown"),
        sendgrid_event(5, "click", url="https://example.com/invoice"),
    ]
    first_body = json.dumps(earlier).encode() + b"\r\n"  # SendGrid appends CRLF
    body = json.dumps(batch).encode() + b"\r\n"
    async with running(settings(db, [source], [items_to, raw_to])) as relay:
        status, answer = await post(
            client, relay.port, "email", first_body, sendgrid_headers(first_body)
        )
        assert (status, answer["items"], answer["new_items"]) == (200, 2, 2)
        status, answer = await post(client, relay.port, "email", body, sendgrid_headers(body))
        assert (status, answer["duplicate"], answer["items"], answer["new_items"]) == (
            200,
            False,
            5,
            3,
        )
        status, repeat = await post(client, relay.port, "email", body, sendgrid_headers(body))
        assert (status, repeat["duplicate"], repeat["new_items"]) == (200, True, 0)
        await wait_for(lambda: len(receiver.received) == 5 and len(second.received) == 2)
    # Five item events, one per distinct sg_event_id; two requests kept (the repeat: none).
    items = query(
        db,
        "SELECT idempotency_key, event_type, provider_type, parent_id FROM events"
        " WHERE parent_id IS NOT NULL ORDER BY rowid",
    )
    assert [row[0] for row in items] == [f"sg-event-{n}" for n in range(1, 6)]
    assert [row[1] for row in items] == [
        "message.queued",
        "message.delivered",
        "message.opened",
        "message.bounced",
        "message.clicked",
    ]
    assert items[3][2] == "bounce:bounce"
    requests = query(db, "SELECT id, body FROM events WHERE parent_id IS NULL ORDER BY rowid")
    assert [r[1] for r in requests] == [first_body, body]
    assert {row[3] for row in items[:2]} == {requests[0][0]}
    assert {row[3] for row in items[2:]} == {requests[1][0]}
    # Each item reached the item destination as its own request, signed over its bytes.
    sent = sorted((json.loads(r.body) for r in receiver.received), key=lambda i: i["timestamp"])
    assert sent == [*earlier, *batch[2:]]
    assert all(verified(r) for r in receiver.received)
    assert all(r.headers["Content-Type"] == "application/json" for r in receiver.received)
    # The original destination got each stored request once, byte for byte.
    assert sorted(r.body for r in second.received) == sorted([first_body, body])
    # An operator sees both ways: the request lists its items, an item names its request.
    from tests.process import run_cli

    shown = run_cli("show", requests[1][0], "--db", str(db))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("item      ") == 3
    item_id = query(db, "SELECT id FROM events WHERE idempotency_key = 'sg-event-4'")[0][0]
    shown = run_cli("show", item_id, "--db", str(db))
    assert f"split from {requests[1][0]}" in shown.stdout
    assert "provider  sendgrid (email): bounce:bounce" in shown.stdout


async def test_whatsapp_statuses_out_of_order_keep_the_message_at_read(
    tmp_path: Path, receiver: Receiver, second: Receiver, client: aiohttp.ClientSession
) -> None:
    db = tmp_path / "relay.db"
    source = {"name": "wa", "verify": "meta", "secret": SECRET, "normalize": "whatsapp"}
    dropping = {"name": "drop", "url": receiver.url, "body": "canonical", "stale": "drop"}
    keeping = {"name": "keep", "url": second.url, "body": "canonical"}
    # read, then sent, then delivered: the order a provider's retries can produce.
    body = whatsapp_statuses(("read", 1750263773), ("sent", 1750263770), ("delivered", 1750263771))
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body)}
    async with running(settings(db, [source], [dropping, keeping])) as relay:
        status, answer = await post(client, relay.port, "wa", body, headers)
        assert (status, answer["new_items"]) == (200, 3)
        # Every delivery of the batch was created in the commit that stored it, so once
        # none is pending, each receiver has all it will ever get.
        await wait_for(
            lambda: query(db, "SELECT COUNT(*) FROM deliveries WHERE state = 'pending'") == [(0,)]
        )
    dropped = [json.loads(r.body) for r in receiver.received]
    assert [(e["provider_type"], e["stale"]) for e in dropped] == [("read", False)]
    kept = {json.loads(r.body)["provider_type"]: r for r in second.received}
    assert {k: json.loads(r.body)["stale"] for k, r in kept.items()} == {
        "read": False,
        "sent": True,
        "delivered": True,
    }
    assert kept["sent"].headers.get("X-Relay-Stale") == "true"
    assert "X-Relay-Stale" not in kept["read"].headers
    wamid = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA"
    assert query(db, "SELECT status FROM statuses WHERE subject = ?", (wamid,)) == [
        ("message.read",)
    ]
    history = query(
        db,
        "SELECT provider_type, stale FROM events WHERE subject = ? ORDER BY occurred_at",
        (wamid,),
    )
    assert history == [("sent", 1), ("delivered", 1), ("read", 0)]
    # Stored, counted, not delivered: two stale events have no delivery to 'drop'.
    assert query(db, "SELECT COUNT(*) FROM deliveries WHERE destination = 'drop'") == [(1,)]


TWILIO_URL = "https://hooks.example.com/in/twilio"


def twilio_delivered() -> tuple[bytes, dict[str, str]]:
    """A status callback (twilio.com/docs/messaging/guides/track-outbound-message-status),
    signed with the official SDK's RequestValidator."""
    from twilio.request_validator import RequestValidator

    params = {
        "AccountSid": "AC0123456789abcdef0123456789abcdef",
        "MessageSid": "SM1342fe1b2c904d1ab04f0fc7a58abca9",
        "SmsSid": "SM1342fe1b2c904d1ab04f0fc7a58abca9",
        "MessageStatus": "delivered",
        "SmsStatus": "delivered",
        "From": "+14155238886",
        "To": "+15005550006",
        "ApiVersion": "2010-04-01",
        "RawDlrDoneDate": "2611291431",
    }
    body = urllib.parse.urlencode(params).encode()
    signature = RequestValidator("twilio-token").compute_signature(TWILIO_URL, params)
    return body, {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": signature,
    }


def mailgun_delivered() -> tuple[bytes, dict[str, str]]:
    """A delivered event (documentation.mailgun.com …/webhooks/webhook-payloads)."""
    stamp, token = str(int(time.time())), "c1a3a0a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5"
    signature = hmac.new(b"mailgun-key", (stamp + token).encode(), "sha256").hexdigest()
    body = {
        "signature": {"timestamp": stamp, "token": token, "signature": signature},
        "event-data": {
            "id": "G9Bn5sl1TC6nu79C8C0bwg",
            "timestamp": 1764424900.512345,
            "event": "delivered",
            "log-level": "info",
            "recipient": "bo@example.com",
            "delivery-status": {"code": 250, "message": "OK", "attempt-no": 1},
            "message": {"headers": {"message-id": "20261129143000.1.ABC@mg.example.com"}},
        },
    }
    return json.dumps(body).encode(), {"Content-Type": "application/json"}


def postmark_delivery() -> tuple[bytes, dict[str, str]]:
    """A Delivery record (postmarkapp.com/developer/webhooks/delivery-webhook)."""
    body = {
        "RecordType": "Delivery",
        "ServerID": 23,
        "MessageStream": "outbound",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Recipient": "bo@example.com",
        "Tag": "invoice",
        "DeliveredAt": "2026-11-29T13:28:10.2735393-04:00",
        "Details": "Test delivery webhook details",
        "Metadata": {"order_id": "A-1001"},
    }
    auth = base64.b64encode(b"postmark:postmark-pass").decode()
    return json.dumps(body).encode(), {
        "Content-Type": "application/json",
        "Authorization": f"Basic {auth}",
    }


async def test_five_providers_give_one_canonical_shape(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    db = tmp_path / "relay.db"
    sources = [
        {
            "name": "twilio",
            "verify": "twilio",
            "secret": "twilio-token",
            "public_url": TWILIO_URL,
            "normalize": "twilio",
        },
        {"name": "wa", "verify": "meta", "secret": SECRET, "normalize": "whatsapp"},
        {
            "name": "sendgrid",
            "verify": "sendgrid",
            "public_key": SENDGRID_PUBLIC,
            "normalize": "sendgrid",
        },
        {"name": "mailgun", "verify": "mailgun", "secret": "mailgun-key", "normalize": "mailgun"},
        {
            "name": "postmark",
            "verify": "postmark",
            "username": "postmark",
            "password": "postmark-pass",
            "normalize": "postmark",
        },
    ]
    canonical = {
        "name": "canonical",
        "url": receiver.url,
        "body": "canonical",
        "signing_secret": SIGNING_SECRET,
    }
    wa_body = whatsapp_statuses(("delivered", 1750263771))
    sg_body = json.dumps([sendgrid_event(7, "delivered", "bo@example.com")]).encode()
    requests = [
        ("twilio", *twilio_delivered()),
        ("wa", wa_body, {"Content-Type": "application/json", "X-Hub-Signature-256": sign(wa_body)}),
        ("sendgrid", sg_body, sendgrid_headers(sg_body)),
        ("mailgun", *mailgun_delivered()),
        ("postmark", *postmark_delivery()),
    ]
    async with running(settings(db, sources, [canonical])) as relay:
        for name, body, headers in requests:
            status, _ = await post(client, relay.port, name, body, headers)
            assert status == 200, name
        await wait_for(lambda: len(receiver.received) == 5)
    schema = json.loads((ROOT / "docs" / "relay.event.v1.schema.json").read_text())
    envelopes = {}
    for received in receiver.received:
        envelope = json.loads(received.body)
        jsonschema.validate(envelope, schema)  # raises on any mismatch
        assert set(envelope) == set(schema["properties"])  # v1 as documented, no more
        assert verified(received)
        envelopes[envelope["source"]] = envelope
    assert {e["type"] for e in envelopes.values()} == {"message.delivered"}
    assert {s: e["channel"] for s, e in envelopes.items()} == {
        "twilio": "sms",
        "wa": "whatsapp",
        "sendgrid": "email",
        "mailgun": "email",
        "postmark": "email",
    }
    assert {s: e["provider_type"] for s, e in envelopes.items()} == {
        "twilio": "delivered",
        "wa": "delivered",
        "sendgrid": "delivered",
        "mailgun": "delivered",
        "postmark": "Delivery",
    }
    assert envelopes["twilio"]["subject"] == "SM1342fe1b2c904d1ab04f0fc7a58abca9"
    assert envelopes["twilio"]["data"]["RawDlrDoneDate"] == "2611291431"
    assert envelopes["postmark"]["subject"] == "883953f4-6105-42a2-a16a-77a8eac79483:bo@example.com"
    assert envelopes["postmark"]["occurred_at"] == "2026-11-29T17:28:10.273Z"
    assert envelopes["mailgun"]["contact"] == "bo@example.com"
    assert envelopes["wa"]["request_id"] is not None  # split from its batch
    assert envelopes["twilio"]["request_id"] is None  # the request is the item


async def test_a_mapping_in_the_config_normalizes_an_unknown_provider(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    """No code: a [[mappings]] entry for a made-up SMS provider that batches its reports."""
    db = tmp_path / "relay.db"
    mapping = {
        "name": "acme-sms",
        "provider": "acme",
        "channel": "sms",
        "items": [
            {
                "split": "json:/reports",
                "id": "json:/report_id",
                "type": "json:/state",
                "types": {
                    "ACCEPTED": "message.sent",
                    "DELIVRD": "message.delivered",
                    "UNDELIV": "message.failed",
                },
                "subject": "json:/msg",
                "contact": "json:/to",
                "occurred_at": "json:/at",
            }
        ],
    }
    source = {
        "name": "acme",
        "verify": "hmac",
        "secret": SECRET,
        "prefix": "sha256=",
        "normalize": "acme-sms",
    }
    canonical = {"name": "canonical", "url": receiver.url, "body": "canonical"}
    body = json.dumps(
        {
            "reports": [
                {
                    "report_id": "r2",
                    "msg": "m-1",
                    "state": "DELIVRD",
                    "to": "+15550001",
                    "at": "2026-11-29T14:31:05Z",
                },
                {
                    "report_id": "r1",
                    "msg": "m-1",
                    "state": "ACCEPTED",
                    "to": "+15550001",
                    "at": "2026-11-29T14:31:01Z",
                },
            ]
        }
    ).encode()
    headers = {"Content-Type": "application/json", "X-Signature": sign(body)}
    async with running(settings(db, [source], [canonical], mappings=[mapping])) as relay:
        status, answer = await post(client, relay.port, "acme", body, headers)
        assert (status, answer["new_items"]) == (200, 2)
        await wait_for(lambda: len(receiver.received) == 2)
    schema = json.loads((ROOT / "docs" / "relay.event.v1.schema.json").read_text())
    envelopes = sorted(
        (json.loads(r.body) for r in receiver.received), key=lambda e: e["occurred_at"]
    )
    for envelope in envelopes:
        jsonschema.validate(envelope, schema)
    assert [(e["provider"], e["type"], e["stale"]) for e in envelopes] == [
        ("acme", "message.sent", True),
        ("acme", "message.delivered", False),
    ]
    assert query(db, "SELECT status FROM statuses WHERE subject = 'm-1'") == [
        ("message.delivered",)
    ]


async def test_split_without_a_mapping_uses_the_sources_rules_per_item(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    db = tmp_path / "relay.db"
    source = {
        "name": "batch",
        "verify": "hmac",
        "secret": SECRET,
        "prefix": "sha256=",
        "split": "json:/events",
        "idempotency_key": "json:/id",
        "event_type": "json:/type",
    }
    items_to = {"name": "items", "url": receiver.url, "body": "item"}
    body = json.dumps(
        {"events": [{"id": "a", "type": "x.created"}, {"id": "b", "type": "x.updated"}]}
    ).encode()
    headers = {"Content-Type": "application/json", "X-Signature": sign(body)}
    async with running(settings(db, [source], [items_to])) as relay:
        status, answer = await post(client, relay.port, "batch", body, headers)
        assert (status, answer["items"], answer["new_items"]) == (200, 2, 2)
        await wait_for(lambda: len(receiver.received) == 2)
    assert query(
        db,
        "SELECT idempotency_key, event_type FROM events WHERE parent_id IS NOT NULL ORDER BY rowid",
    ) == [("a", "x.created"), ("b", "x.updated")]
    assert sorted(json.loads(r.body)["id"] for r in receiver.received) == ["a", "b"]


def test_check_config_names_what_is_wrong_with_a_mapping(tmp_path: Path) -> None:
    from tests.process import run_cli

    base = f"""
[storage]
path = "{tmp_path}/relay.db"
[[sources]]
name = "sms"
verify = "none"
"""
    mapping = """
[[mappings]]
name = "acme"
[[mappings.items]]
type = "json:/state"
"""
    cases = {
        'normalize = "nope"\n': ("sources[0].normalize", "'nope' is not a mapping"),
        'normalize = "sendgrid"\nsplit = "json:/"\n': ("sources[0].split", "remove split"),
        'split = "/events"\n': ("split", "is not a split path"),
        'normalize = "acme"\n' + mapping + 'types = { DELIVRD = "delivered" }\n': (
            "mappings[0].items[0].types",
            "DELIVRD = 'delivered': not a shared type",
        ),
        'normalize = "acme"\n' + mapping + 'subject = "jsn:/msg"\n': (
            "mappings[0].items[0].subject",
            "'jsn:/msg' is not a value rule",
        ),
    }
    for extra, (key, message) in cases.items():
        config = tmp_path / "relay.toml"
        config.write_text(base + extra)
        result = run_cli("check-config", str(config))
        assert result.returncode == 1, extra
        assert key in result.stderr, result.stderr
        assert message in result.stderr, (extra, result.stderr)


async def test_the_console_shows_a_batch_and_its_items(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    from tests.test_console import TOKEN, _cookie, _sign_in

    db = tmp_path / "relay.db"
    source = {"name": "wa", "verify": "meta", "secret": SECRET, "normalize": "whatsapp"}
    dest = {"name": "app", "url": receiver.url, "body": "canonical"}
    body = whatsapp_statuses(("read", 1750263773), ("sent", 1750263770))
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body)}
    admin = {"listen": "127.0.0.1:0", "token": TOKEN}
    async with running(settings(db, [source], [dest], admin=admin)) as relay:
        status, answer = await post(client, relay.port, "wa", body, headers)
        assert status == 200
        base = f"http://{relay.admin_address}"
        _, _, raw = await _sign_in(client, base)
        cookie = _cookie(raw)
        async with client.get(f"{base}/ui/events/{answer['id']}", headers=cookie) as r:
            request_page = await r.text()
        [(item_id,)] = query(db, "SELECT id FROM events WHERE provider_type = 'sent'")
        async with client.get(f"{base}/ui/events/{item_id}", headers=cookie) as r:
            item_page = await r.text()
    assert "Items (2)" in request_page
    assert item_id in request_page
    assert f'href="/ui/events/{answer["id"]}"' in item_page  # split from
    assert "whatsapp (whatsapp): sent" in item_page
    assert ">stale<" in item_page


async def test_a_batch_over_the_item_cap_is_refused_whole(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    """Issue 28: a signed 100,000-item batch was answered 200 {"items": 10000}: 90% of it
    never became events. Now a batch over the cap is a 413 that names it, and nothing of it
    is stored; a batch at the cap is stored whole."""
    from relay.normalize.split import MAX_ITEMS

    db = tmp_path / "relay.db"
    source = {
        "name": "batch",
        "verify": "hmac",
        "secret": SECRET,
        "prefix": "sha256=",
        "split": "json:/events",
        "idempotency_key": "json:/id",
    }
    held = {"name": "items", "url": receiver.url, "body": "item", "paused": True}
    async with running(settings(db, [source], [held])) as relay:  # stored, kept pending
        for count, expected in ((100_000, 413), (MAX_ITEMS + 1, 413), (MAX_ITEMS, 200)):
            raw = json.dumps({"events": [7] * count}).encode()  # within the body limit
            headers = {"Content-Type": "application/json", "X-Signature": sign(raw)}
            status, answer = await post(client, relay.port, "batch", raw, headers)
            assert status == expected, (count, answer)
            if expected == 413:
                assert str(MAX_ITEMS) in answer["error"]
                assert query(db, "SELECT count(*) FROM events") == [(0,)]
            else:
                assert answer["items"] == MAX_ITEMS
    assert query(db, "SELECT count(*) FROM events WHERE parent_id IS NOT NULL") == [(MAX_ITEMS,)]


async def test_an_empty_batch_goes_to_no_item_destination_and_a_split_batch_is_not_unrouted(
    tmp_path: Path, receiver: Receiver, second: Receiver, client: aiohttp.ClientSession
) -> None:
    """Issue 29: {"events": []} was delivered whole to a `body = "item"` destination, and
    batches whose items were all delivered were listed as unrouted."""
    from tests.process import run_cli

    db = tmp_path / "relay.db"
    source = {
        "name": "batch",
        "verify": "hmac",
        "secret": SECRET,
        "prefix": "sha256=",
        "split": "json:/events",
        "idempotency_key": "json:/id",
    }
    items_to = {"name": "items", "url": receiver.url, "body": "item"}
    async with running(settings(db, [source], [items_to])) as relay:
        ids = []
        for events in ([], [{"id": "a"}, {"id": "b"}]):
            raw = json.dumps({"events": events}).encode()
            headers = {"Content-Type": "application/json", "X-Signature": sign(raw)}
            status, answer = await post(client, relay.port, "batch", raw, headers)
            assert (status, answer.get("items", 0)) == (200, len(events))
            ids.append(answer["id"])
        await wait_for(lambda: len(receiver.received) == 2)
    assert sorted(json.loads(r.body)["id"] for r in receiver.received) == ["a", "b"]
    assert query(db, "SELECT count(*) FROM deliveries WHERE event_id = ?", (ids[0],)) == [(0,)]
    result = run_cli("events", "--status", "unrouted", "--json", "--db", str(db))
    assert result.returncode == 0, result.stderr
    unrouted = [row["id"] for row in json.loads(result.stdout)]
    assert unrouted == [ids[0]]  # the empty batch went nowhere; the split one did
    listed = {
        row["id"]: row for row in json.loads(run_cli("events", "--json", "--db", str(db)).stdout)
    }
    assert listed[ids[1]]["items"] == 2

"""The pure parts of normalized events: the status state machine, value rules, type
lookup, split paths, and every preset read against its provider's documented shapes."""

from __future__ import annotations

from typing import Any

import pytest
from multidict import CIMultiDict

from relay.normalize.mapping import lookup, presets, read, value
from relay.normalize.split import items_at
from relay.normalize.taxonomy import RANKS, Verdict, rank_of, transition

Q, DF, S, D, R, F, B = (
    RANKS[f"message.{t}"]
    for t in ("queued", "deferred", "sent", "delivered", "read", "failed", "bounced")
)


@pytest.mark.parametrize(
    ("current", "new", "expected"),
    [
        (None, S, Verdict(moves=True, stale=False)),  # the first status
        (S, D, Verdict(moves=True, stale=False)),
        (S, R, Verdict(moves=True, stale=False)),  # WhatsApp: read with no delivered
        (R, S, Verdict(moves=False, stale=True)),  # backwards
        (R, D, Verdict(moves=False, stale=True)),
        (D, D, Verdict(moves=False, stale=False)),  # the same step again: not backwards
        (Q, DF, Verdict(moves=True, stale=False)),  # deferred moves up from queued only
        (S, DF, Verdict(moves=False, stale=True)),
        (D, F, Verdict(moves=True, stale=False)),  # a failure after delivery wins (rank)
        (R, B, Verdict(moves=True, stale=False)),
        (F, R, Verdict(moves=False, stale=True)),  # nothing after an end
        (B, F, Verdict(moves=False, stale=False)),  # another end: not backwards
        (D, None, Verdict(moves=False, stale=False)),  # opened, clicked: never move it
        (None, None, Verdict(moves=False, stale=False)),
    ],
)
def test_transition(current: int | None, new: int | None, expected: Verdict) -> None:
    assert transition(current, new) == expected


def test_only_status_types_have_ranks() -> None:
    assert rank_of("message.opened") is None
    assert rank_of("message.received") is None
    assert rank_of(None) is None
    assert rank_of("message.bounced") == rank_of("message.failed")


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("failed:permanent:suppress-bounce", "message.failed"),
        ("failed:permanent:bounce", "message.bounced"),
        ("failed:temporary", "message.deferred"),
        ("failed", "message.failed"),
        ("delivered", "message.delivered"),
        ("stored", None),
        (None, None),
    ],
)
def test_lookup_takes_the_longest_prefix(key: str | None, expected: str | None) -> None:
    table = presets()["mailgun"].items[0].types
    assert lookup(table, key) == expected


def test_lookup_falls_back_to_star() -> None:
    assert lookup({"*": "message.received", "x": "message.sent"}, "text") == "message.received"
    assert lookup({"*": "message.received"}, None) == "message.received"


HEADERS = CIMultiDict({"X-Trace": "t-1"})


@pytest.mark.parametrize(
    ("rule", "item", "expected"),
    [
        (("json:/a",), {"a": "x"}, "x"),
        (("json:/a",), {"a": 7}, "7"),
        (("json:/a",), {"a": True}, "true"),
        (("json:/a",), {"a": {"b": 1}}, None),  # not a scalar
        (("json:/a|json:/b",), {"b": "y"}, "y"),  # the first that gives a value
        (("json:/a", "json:/b"), {"a": "x", "b": "y"}, "x:y"),
        (("json:/a", "json:/b"), {"a": "x"}, "x"),  # missing at the end: left out
        (("json:/a", "json:/b", "json:/c"), {"a": "x", "c": "z"}, "x::z"),
        (("json:/a", "json:/b"), {"b": "y"}, None),  # needs its first part
        (("form:To",), {"To": "whatsapp:+1"}, "whatsapp:+1"),
        (("header:X-Trace",), {}, "t-1"),
        (("const:received",), {}, "received"),
        (("json:/a|const:none",), {}, "none"),
    ],
)
def test_value_rules(rule: tuple[str, ...], item: Any, expected: str | None) -> None:
    assert value(rule, item, HEADERS) == expected


def test_split_paths() -> None:
    whatsapp = {
        "entry": [
            {"changes": [{"value": {"statuses": [1, 2]}}, {"value": {}}]},
            {"changes": [{"value": {"statuses": [3]}}]},
        ]
    }
    assert items_at(whatsapp, "json:/entry/*/changes/*/value/statuses") == [1, 2, 3]
    assert items_at([{"a": 1}, {"a": 2}], "json:/") == [{"a": 1}, {"a": 2}]
    assert items_at({"events": {"one": 1}}, "json:/events") == [{"one": 1}]  # an object: one
    assert items_at({"x": 1}, "json:/events") == []
    assert items_at(None, "json:/") == []


def _read(name: str, item: Any, kind: int = 0) -> Any:
    mapping = presets()[name]
    return read(mapping, mapping.items[kind], item, HEADERS)


@pytest.mark.parametrize(
    ("name", "kind", "item", "expected"),
    [
        # Twilio WhatsApp read receipt (track-outbound-message-status, EventType=READ).
        (
            "twilio",
            1,
            {
                "MessageSid": "SM1",
                "MessageStatus": "read",
                "EventType": "READ",
                "ChannelPrefix": "whatsapp",
                "To": "whatsapp:+15005550006",
            },
            ("SM1:read:READ", "read", "message.read", "SM1", "whatsapp:+15005550006", "whatsapp"),
        ),
        (
            "twilio",
            1,
            {"MessageSid": "SM2", "MessageStatus": "undelivered", "To": "+1555"},
            ("SM2:undelivered", "undelivered", "message.failed", "SM2", "+1555", "sms"),
        ),
        # Twilio inbound (webhook-request): no MessageStatus, a WhatsApp sender.
        (
            "twilio",
            0,
            {
                "MessageSid": "SM3",
                "SmsStatus": "received",
                "NumMedia": "0",
                "From": "whatsapp:+1444",
                "Body": "hi",
            },
            ("SM3", "received", "message.received", "SM3", "whatsapp:+1444", "whatsapp"),
        ),
        # WhatsApp inbound message.
        (
            "whatsapp",
            1,
            {
                "from": "16505551234",
                "id": "wamid.X",
                "timestamp": "1750263773",
                "type": "text",
                "text": {"body": "hi"},
            },
            ("wamid.X", "text", "message.received", "wamid.X", "16505551234", "whatsapp"),
        ),
        # SendGrid blocked bounce; dropped; group unsubscribe.
        (
            "sendgrid",
            0,
            {
                "event": "bounce",
                "type": "blocked",
                "sg_event_id": "e1",
                "sg_message_id": "m1",
                "email": "a@x",
            },
            ("e1", "bounce:blocked", "message.bounced", "m1:a@x", "a@x", "email"),
        ),
        (
            "sendgrid",
            0,
            {"event": "dropped", "sg_event_id": "e2", "sg_message_id": "m1", "email": "a@x"},
            ("e2", "dropped", "message.failed", "m1:a@x", "a@x", "email"),
        ),
        (
            "sendgrid",
            0,
            {"event": "group_unsubscribe", "sg_event_id": "e3", "email": "a@x"},
            ("e3", "group_unsubscribe", "contact.unsubscribed", None, "a@x", "email"),
        ),
        # Mailgun temporary failure (webhook-payloads).
        (
            "mailgun",
            0,
            {
                "event-data": {
                    "id": "g1",
                    "timestamp": 1.5,
                    "event": "failed",
                    "severity": "temporary",
                    "recipient": "b@x",
                    "message": {"headers": {"message-id": "mid"}},
                }
            },
            ("g1:1.5", "failed:temporary", "message.deferred", "mid:b@x", "b@x", "email"),
        ),
        # Postmark soft bounce, and a subscription change (postmark.js payload models).
        (
            "postmark",
            0,
            {
                "RecordType": "Bounce",
                "ID": 42,
                "Type": "SoftBounce",
                "MessageID": "pm1",
                "Email": "c@x",
                "BouncedAt": "2026-11-29T14:31:02Z",
            },
            (
                "Bounce:42:c@x:2026-11-29T14:31:02Z",
                "Bounce:SoftBounce",
                "message.deferred",
                "pm1:c@x",
                "c@x",
                "email",
            ),
        ),
        (
            "postmark",
            0,
            {
                "RecordType": "SubscriptionChange",
                "MessageID": "pm2",
                "Recipient": "d@x",
                "SuppressSending": True,
                "ChangedAt": "2026-11-29T14:31:02Z",
            },
            (
                "SubscriptionChange:pm2:d@x:2026-11-29T14:31:02Z",
                "SubscriptionChange:true",
                "contact.unsubscribed",
                "pm2:d@x",
                "d@x",
                "email",
            ),
        ),
    ],
)
def test_presets_read_the_documented_shapes(
    name: str, kind: int, item: Any, expected: tuple[Any, ...]
) -> None:
    r = _read(name, item, kind)
    assert (r.key, r.provider_type, r.type, r.subject, r.contact, r.channel) == expected

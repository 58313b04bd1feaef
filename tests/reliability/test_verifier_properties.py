"""Property tests: whatever a request holds, a verifier either accepts or raises Rejected."""

from __future__ import annotations

import base64
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from pydantic import TypeAdapter

from relay.verify import Inbound, Rejected
from relay.verify.base import acknowledgement_of, challenge_of, handshake_of
from relay.verify.schemes import SCHEMES, SourceConfig
from tests.verify.test_discord import PUBLIC_HEX
from tests.verify.test_sendgrid import PUBLIC as SENDGRID_KEY

ADAPTER: TypeAdapter[SourceConfig] = TypeAdapter(SourceConfig)
WHSEC = "whsec_czNjcmV0LXN0YW5kYXJk"
WHPK = "whpk_" + base64.b64encode(bytes.fromhex(PUBLIC_HEX)).decode()
CONFIGS: list[dict[str, Any]] = [
    {"verify": "hmac", "secret": "s3cret-hmac-key", "header": "X-Sig", "prefix": "sha256="},
    {"verify": "hmac", "secret": "s3cret-hmac-key", "encoding": "base64", "algorithm": "sha1"},
    {"verify": "hmac", "secret": "s3cret-hmac-key", "timestamp_header": "X-Ts"},
    {"verify": "token", "secret": "s3cret-token"},
    {"verify": "basic", "username": "u", "password": "s3cret-pw"},
    {"verify": "none"},
    {"verify": "stripe", "secret": "whsec_s3cret"},
    {"verify": "github", "secret": "s3cret-gh"},
    {"verify": "gitlab", "secret": "s3cret-gl", "signing_token": WHSEC},
    {"verify": "slack", "secret": "s3cret-slack"},
    {"verify": "shopify", "secret": "s3cret-shop"},
    {"verify": "standard-webhooks", "secret": WHSEC, "public_key": WHPK},
    {"verify": "twilio", "secret": "s3cret-twilio"},
    {"verify": "twilio", "secret": "s3cret-twilio", "public_url": "https://h.example/in/x"},
    {"verify": "meta", "secret": "s3cret-meta", "verify_token": "s3cret-vt"},
    {"verify": "twitch", "secret": "s3cret-twitch"},
    {"verify": "discord", "public_key": PUBLIC_HEX},
    {"verify": "telegram", "secret": "s3cret-tg"},
    {"verify": "sendgrid", "public_key": SENDGRID_KEY},
    {"verify": "paddle", "secret": "s3cret-paddle"},
    {"verify": "linear", "secret": "s3cret-linear"},
    {"verify": "hubspot", "secret": "s3cret-hubspot"},
    {"verify": "square", "secret": "s3cret-square"},
    {"verify": "zoom", "secret": "s3cret-zoom"},
    {"verify": "mailgun", "secret": "s3cret-mailgun"},
    {"verify": "intercom", "secret": "s3cret-intercom"},
    {"verify": "postmark", "username": "u", "password": "s3cret-pw"},
]
SOURCES = [ADAPTER.validate_python({"name": f"s{i}", **c}) for i, c in enumerate(CONFIGS)]
VERIFIERS = [source.build_verifier() for source in SOURCES]


def test_every_scheme_is_covered() -> None:
    assert {c["verify"] for c in CONFIGS} == set(SCHEMES)


HEADER_NAMES = st.sampled_from(
    [
        "X-Sig",
        "X-Signature",
        "Authorization",
        "Content-Type",
        "X",
        "Stripe-Signature",
        "X-Hub-Signature-256",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "svix-id",
        "svix-timestamp",
        "svix-signature",
        "X-Ts",
        "X-Twilio-Signature",
        "X-Twilio-Webhooks-Signature-Settings",
        "Twitch-Eventsub-Message-Id",
        "Twitch-Eventsub-Message-Timestamp",
        "Twitch-Eventsub-Message-Signature",
        "Twitch-Eventsub-Message-Type",
        "X-Signature-Ed25519",
        "X-Signature-Timestamp",
        "X-Telegram-Bot-Api-Secret-Token",
        "X-Twilio-Email-Event-Webhook-Signature",
        "X-Twilio-Email-Event-Webhook-Timestamp",
        "Paddle-Signature",
        "Linear-Signature",
        "X-HubSpot-Signature-v3",
        "X-HubSpot-Request-Timestamp",
        "x-square-hmacsha256-signature",
        "x-zm-signature",
        "x-zm-request-timestamp",
        "X-Hub-Signature",
        "X-Gitlab-Token",
    ]
)
# Header values as aiohttp hands them over: text, with surrogates for undecodable bytes.
VALUES = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=100).map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.sampled_from(
        [
            "sha256=",
            "sha256=zz",
            "Bearer ",
            "Bearer s3cret-token",
            "Basic dTpzM2NyZXQtcHc=",
            "sha256=" + "0" * 64,
            "1700000000",
            "2023-07-19T14:56:51.634234626Z",
            "webhook_callback_verification",
            "algorithm=HMAC_SHA256",
            "algorithm=MD5",
            "ts=1;h1=00",
            "v1a,AAAA v1,AAAA",
            "0" * 128,
            "MEUCIQ==",
        ]
    ),
)


@settings(max_examples=400, deadline=None)
@given(
    headers=st.lists(st.tuples(HEADER_NAMES, VALUES), max_size=5),
    body=st.one_of(
        st.binary(max_size=500),
        st.sampled_from(
            [
                b'{"type": "url_verification", "challenge": 1}',
                b'{"type": "url_verification"}',
                b"url_verification[",
                b"[]",
                b'{"type": 1}',
                b'{"type": 2, "token": "t"}',
                b'{"version": 1, "type": 0}',
                b'{"event": "endpoint.url_validation", "payload": {"plainToken": "x"}}',
                b'{"challenge": "c"}',
                b'{"signature": {"timestamp": "1", "token": "t", "signature": "00"}}',
                b'{"webhookTimestamp": 1700000000000}',
                b"timestamp=1&token=t&signature=00&a=%ff%fe",
            ]
        ),
    ),
    now=st.floats(allow_nan=True, allow_infinity=True),
    query=st.one_of(
        st.text(max_size=80),
        st.sampled_from(
            ["bodySHA256=00", "hub.mode=subscribe&hub.challenge=1&hub.verify_token=x", "a=%zz"]
        ),
    ),
    url=st.sampled_from(["http://relay/in/x", "http://[::1/in/x", "http://h:99999/x", "x"]),
)
def test_verifiers_only_accept_or_reject(
    headers: list[tuple[str, str]], body: bytes, now: float, query: str, url: str
) -> None:
    inbound = Inbound("POST", url, CIMultiDict(headers), body, "127.0.0.1", query)
    for verifier in VERIFIERS:
        # The optional answers never raise either, whatever the request holds.
        handshake_of(verifier, inbound)
        challenge_of(verifier, inbound)
        acknowledgement_of(verifier, inbound)
        outcome: Any = None
        reason = None
        try:
            outcome = verifier.verify(inbound, now)
        except Rejected as rejected:
            reason = rejected.reason
        assert outcome is None
        if reason is not None:
            assert reason  # always a reason to show the sender ...
            assert "s3cret" not in reason  # ... that never echoes a secret

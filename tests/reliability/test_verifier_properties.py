"""Property tests: whatever a request holds, a verifier either accepts or raises Rejected."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from relay.verify import Inbound, Rejected, SourceConfig
from relay.verify.github import GithubSource
from relay.verify.hmac import HmacSource
from relay.verify.none import NoneSource
from relay.verify.shopify import ShopifySource
from relay.verify.slack import SlackSource
from relay.verify.standard_webhooks import StandardWebhooksSource
from relay.verify.stripe import StripeSource
from relay.verify.token import TokenSource

SOURCES: list[SourceConfig] = [
    HmacSource.model_validate(
        {
            "name": "h",
            "verify": "hmac",
            "secret": "s3cret-hmac-key",
            "header": "X-Sig",
            "prefix": "sha256=",
        }
    ),
    HmacSource.model_validate(
        {
            "name": "b",
            "verify": "hmac",
            "secret": "s3cret-hmac-key",
            "encoding": "base64",
            "algorithm": "sha1",
        }
    ),
    TokenSource.model_validate({"name": "t", "verify": "token", "secret": "s3cret-token"}),
    NoneSource.model_validate({"name": "n", "verify": "none"}),
    StripeSource.model_validate({"name": "s", "verify": "stripe", "secret": "whsec_s3cret"}),
    GithubSource.model_validate({"name": "g", "verify": "github", "secret": "s3cret-gh"}),
    SlackSource.model_validate({"name": "k", "verify": "slack", "secret": "s3cret-slack"}),
    ShopifySource.model_validate({"name": "p", "verify": "shopify", "secret": "s3cret-shop"}),
    StandardWebhooksSource.model_validate(
        {"name": "w", "verify": "standard-webhooks", "secret": "whsec_czNjcmV0LXN0YW5kYXJk"}
    ),
]
VERIFIERS = [source.build_verifier() for source in SOURCES]

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
    ]
)
# Header values as aiohttp hands them over: text, with surrogates for undecodable bytes.
VALUES = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=100).map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.sampled_from(
        ["sha256=", "sha256=zz", "Bearer ", "Bearer s3cret-token", "sha256=" + "0" * 64]
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
            ]
        ),
    ),
    now=st.floats(allow_nan=True, allow_infinity=True),
)
def test_verifiers_only_accept_or_reject(
    headers: list[tuple[str, str]], body: bytes, now: float
) -> None:
    inbound = Inbound("POST", "http://relay/in/x", CIMultiDict(headers), body, "127.0.0.1")
    for verifier in VERIFIERS:
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

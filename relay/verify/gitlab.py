"""``verify = "gitlab"``: GitLab's secret token, and its newer signing token.

The classic scheme: ``X-Gitlab-Token`` equals the webhook's secret token (nothing is
signed). Newer GitLab can sign instead, the Standard Webhooks way (``webhook-id``,
``webhook-timestamp``, ``webhook-signature: v1,…`` with a ``whsec_`` token). With
``signing_token`` set, a request that carries ``webhook-signature`` must verify with it;
relay never falls back to the plain token for such a request (GitLab's own advice). A
request without a signature is checked against ``secret``, if one is set.
"""

from __future__ import annotations

from typing import Literal

from relay.configtypes import Duration, Rule, SecretRef, SourceBase
from relay.verify.base import Inbound, Rejected
from relay.verify.standard_webhooks import StandardWebhooksVerifier, decode_secret
from relay.verify.timestamps import DEFAULT_TOLERANCE
from relay.verify.token import TokenVerifier


class GitlabSource(SourceBase):
    verify: Literal["gitlab"]
    secret: SecretRef | None = None  # the webhook's "Secret token"
    secrets: tuple[SecretRef, ...] = ()
    signing_token: SecretRef | None = None  # whsec_…, when GitLab signs its webhooks
    tolerance: Duration = DEFAULT_TOLERANCE
    idempotency_key: Rule = "header:X-Gitlab-Event-UUID"
    event_type: Rule = "header:X-Gitlab-Event"

    def secret_headers(self) -> frozenset[str]:
        return frozenset({"x-gitlab-token"})

    def build_verifier(self) -> GitlabVerifier:
        tokens = tuple(s.value.encode() for s in (self.secret, *self.secrets) if s is not None)
        if not tokens and self.signing_token is None:
            raise ValueError(
                'gitlab needs the secret token (secret = "env:GITLAB_TOKEN") or the '
                'signing token (signing_token = "env:GITLAB_SIGNING_TOKEN")'
            )
        token = TokenVerifier("X-Gitlab-Token", b"", tokens) if tokens else None
        signed = None
        if self.signing_token is not None:
            key = decode_secret(self.signing_token.value)
            signed = StandardWebhooksVerifier((key,), (), self.tolerance)
        return GitlabVerifier(token, signed)


class GitlabVerifier:
    def __init__(
        self, token: TokenVerifier | None, signed: StandardWebhooksVerifier | None
    ) -> None:
        self._token = token
        self._signed = signed

    def verify(self, request: Inbound, now: float) -> None:
        if self._signed is not None and "webhook-signature" in request.headers:
            self._signed.verify(request, now)
        elif self._token is not None:
            self._token.verify(request, now)
        else:
            raise Rejected("missing webhook-signature header")

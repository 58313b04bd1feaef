"""Verifiers: one module per scheme, all behind the ``Verifier`` interface.

Adding a scheme is adding one module with a ``SourceBase`` subclass (its config, with
``verify: Literal["name"]``) and a verifier class, then one line in ``SourceConfig`` below.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from relay.verify.base import Inbound, Rejected, Verifier
from relay.verify.github import GithubSource
from relay.verify.hmac import HmacSource
from relay.verify.none import NoneSource
from relay.verify.shopify import ShopifySource
from relay.verify.slack import SlackSource
from relay.verify.standard_webhooks import StandardWebhooksSource
from relay.verify.stripe import StripeSource
from relay.verify.token import TokenSource

SourceConfig = Annotated[
    HmacSource
    | TokenSource
    | NoneSource
    | StripeSource
    | GithubSource
    | StandardWebhooksSource
    | SlackSource
    | ShopifySource,
    Field(discriminator="verify"),
]

SCHEMES = ("hmac", "token", "none", "stripe", "github", "standard-webhooks", "slack", "shopify")

__all__ = ["SCHEMES", "Inbound", "Rejected", "SourceConfig", "Verifier"]

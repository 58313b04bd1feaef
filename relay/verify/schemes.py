"""Every scheme's source config, as the union the config file is read with.

Adding a scheme is adding one module with a ``SourceBase`` subclass (its config, with
``verify: Literal["name"]``) and a verifier class, then one line in ``SourceConfig`` below.
Loading this loads every verifier: only the config file's reader (``relay.config``) and the
ingest path need it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from relay.verify.basic import BasicSource
from relay.verify.discord import DiscordSource
from relay.verify.github import GithubSource
from relay.verify.gitlab import GitlabSource
from relay.verify.hmac import HmacSource
from relay.verify.hubspot import HubspotSource
from relay.verify.intercom import IntercomSource
from relay.verify.linear import LinearSource
from relay.verify.mailgun import MailgunSource
from relay.verify.meta import MetaSource
from relay.verify.none import NoneSource
from relay.verify.paddle import PaddleSource
from relay.verify.postmark import PostmarkSource
from relay.verify.sendgrid import SendgridSource
from relay.verify.shopify import ShopifySource
from relay.verify.slack import SlackSource
from relay.verify.square import SquareSource
from relay.verify.standard_webhooks import StandardWebhooksSource
from relay.verify.stripe import StripeSource
from relay.verify.telegram import TelegramSource
from relay.verify.token import TokenSource
from relay.verify.twilio import TwilioSource
from relay.verify.twitch import TwitchSource
from relay.verify.zoom import ZoomSource

SourceConfig = Annotated[
    HmacSource
    | TokenSource
    | BasicSource
    | NoneSource
    | StripeSource
    | GithubSource
    | GitlabSource
    | StandardWebhooksSource
    | SlackSource
    | ShopifySource
    | TwilioSource
    | MetaSource
    | TwitchSource
    | DiscordSource
    | TelegramSource
    | SendgridSource
    | PaddleSource
    | LinearSource
    | HubspotSource
    | SquareSource
    | ZoomSource
    | MailgunSource
    | IntercomSource
    | PostmarkSource,
    Field(discriminator="verify"),
]

SCHEMES = (
    "hmac",
    "token",
    "basic",
    "none",
    "stripe",
    "github",
    "gitlab",
    "standard-webhooks",
    "slack",
    "shopify",
    "twilio",
    "meta",
    "twitch",
    "discord",
    "telegram",
    "sendgrid",
    "paddle",
    "linear",
    "hubspot",
    "square",
    "zoom",
    "mailgun",
    "intercom",
    "postmark",
)

__all__ = ["SCHEMES", "SourceConfig"]

"""``verify = "github"``: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``.

The generic HMAC with GitHub's header and prefix, and GitHub's event metadata:
``X-GitHub-Delivery`` (stable across redeliveries) as the idempotency key and
``X-GitHub-Event`` as the type. GitHub signs no timestamp, so there is no replay window
to check; duplicates are caught by the delivery id.
"""

from __future__ import annotations

from typing import Literal

from relay.configtypes import Rule
from relay.verify.hmac import HmacSource


class GithubSource(HmacSource):
    verify: Literal["github"]  # type: ignore[assignment]
    header: str = "X-Hub-Signature-256"
    prefix: str = "sha256="
    idempotency_key: Rule = "header:X-GitHub-Delivery"
    catch_up_api = "github"
    event_type: Rule = "header:X-GitHub-Event"

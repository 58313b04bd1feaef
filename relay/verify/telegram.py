"""``verify = "telegram"``: the ``secret_token`` given to Telegram's ``setWebhook``.

Telegram sends it back in ``X-Telegram-Bot-Api-Secret-Token`` (1 to 256 characters of
``A-Za-z0-9_-``). Nothing is signed; the comparison is constant-time. ``update_id`` is the
idempotency key. An update names its kind by which field it carries (``message``,
``callback_query``, …), so there is no type rule by default.
"""

from __future__ import annotations

from typing import Literal

from relay.configtypes import Rule
from relay.verify.token import TokenSource


class TelegramSource(TokenSource):
    verify: Literal["telegram"]  # type: ignore[assignment]
    header: str = "X-Telegram-Bot-Api-Secret-Token"
    prefix: str = ""
    idempotency_key: Rule = "json:/update_id"

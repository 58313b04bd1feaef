"""``verify = "twilio"``: ``X-Twilio-Signature``, base64 HMAC-SHA1 keyed with the Auth Token.

What is signed is the URL Twilio called, query string included, as Twilio wrote it:

- form bodies: the URL followed by every parameter name and value, names sorted, the values
  of a repeated name sorted and de-duplicated (``name1value1name2value2…``);
- JSON bodies: the URL alone, which then carries ``bodySHA256=<hex SHA-256 of the body>``;
  relay checks that hash too.

Behind a proxy relay cannot know that URL, so set ``public_url`` to the address given to
Twilio (without a query string). A webhook SharedKey (``X-Twilio-Webhooks-Signature-Settings``
naming ``HMAC_SHA256``) is the same construction with SHA-256; put the SharedKey secret in
``secrets``. Like Twilio's SDKs, relay accepts the URL with and without
the default port (``:443``/``:80``), since Twilio is not consistent about it.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Literal
from urllib.parse import parse_qs, parse_qsl, urlsplit, urlunsplit

from relay.configtypes import Rule, SharedSecretSource
from relay.verify.base import Inbound, Rejected, any_equal, equal, header_bytes, mac

MAX_FIELDS = 1000


class TwilioSource(SharedSecretSource):
    verify: Literal["twilio"]
    public_url: str | None = None  # e.g. "https://hooks.example.com/in/twilio"
    idempotency_key: Rule = "header:I-Twilio-Idempotency-Token"

    def build_verifier(self) -> TwilioVerifier:
        keys = self.keys('twilio needs the Auth Token: secret = "env:TWILIO_AUTH_TOKEN"')
        return TwilioVerifier(keys, self.public_url)


def signing_string(url: str, params: list[tuple[str, str]]) -> str:
    """The string Twilio signs for a form request (also what tests build)."""
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    return url + "".join(name + v for name in sorted(values) for v in sorted(values[name]))


def port_variants(url: str) -> list[str]:
    """The URL with its default port removed and added, as Twilio's validators try both."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a Host header relay could not make sense of
        return [url]
    default = {"https": 443, "http": 80}.get(parts.scheme)
    if default is None or parts.hostname is None or port not in (None, default):
        return [url]
    userinfo, _, host = parts.netloc.rpartition("@")
    userinfo = userinfo + "@" if userinfo else ""
    bare = host if port is None else host[: host.rfind(":")]
    without = urlunsplit(parts._replace(netloc=f"{userinfo}{bare}"))
    with_port = urlunsplit(parts._replace(netloc=f"{userinfo}{bare}:{default}"))
    return [without, with_port]


def _algorithm(settings: str | None) -> str:
    """The MAC named by a SharedKey's ``X-Twilio-Webhooks-Signature-Settings`` (``key=…,
    algorithm=HMAC_SHA256``); HMAC-SHA1, the Auth Token scheme, when there is none."""
    for part in (settings or "").split(","):
        name, _, value = part.partition("=")
        if name.strip() == "algorithm" and value.strip():
            found = {"HMAC_SHA1": "sha1", "HMAC_SHA256": "sha256"}.get(value.strip().upper())
            if found is None:
                raise Rejected("unsupported signature algorithm in the signature settings")
            return found
    return "sha1"


class TwilioVerifier:
    def __init__(self, keys: tuple[bytes, ...], public_url: str | None) -> None:
        self._keys = keys
        self._public_url = public_url

    def verify(self, request: Inbound, now: float) -> None:
        provided = request.headers.get("X-Twilio-Signature")
        if provided is None:
            raise Rejected("missing X-Twilio-Signature header")
        url = request.public_url(self._public_url)
        try:
            query = parse_qs(request.query_string, max_num_fields=MAX_FIELDS)
            body_hash = query.get("bodySHA256")
            if body_hash is not None:
                digest = hashlib.sha256(request.body).hexdigest().encode()
                if not equal(digest, header_bytes(body_hash[0].lower())):
                    raise Rejected("bodySHA256 does not match the body")
                params: list[tuple[str, str]] = []
            else:
                text = request.body.decode("utf-8", "replace")
                params = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
        except ValueError:
            raise Rejected("too many form or query fields") from None
        algorithm = _algorithm(request.headers.get("X-Twilio-Webhooks-Signature-Settings"))
        given = [header_bytes(provided.strip())]
        expected = [
            base64.b64encode(mac(key, signing_string(u, params).encode(), algorithm))
            for u in port_variants(url)
            for key in self._keys
        ]
        if not any_equal(expected, given):
            raise Rejected("signature does not match (is public_url the URL Twilio calls?)")

"""``verify = "hmac"``: a generic HMAC of the raw body in one header.

Covers the many providers that sign ``HMAC(secret, body)`` and send it hex or base64,
with or without a prefix such as ``sha256=``. With ``timestamp_header`` set, what is signed
is ``"{timestamp}{separator}{body}"`` and the timestamp (Unix seconds) must be within
``tolerance``: the common "signed timestamp" shape of in-house senders.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac as _hmac
from typing import ClassVar, Literal

from relay.configtypes import Duration, SharedSecretSource
from relay.verify.base import Inbound, Rejected, equal, header_bytes
from relay.verify.timestamps import DEFAULT_TOLERANCE, check_timestamp

ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}


class HmacSource(SharedSecretSource):
    verify: Literal["hmac"]
    header: str = "X-Signature"
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""  # e.g. "sha256=" as GitHub sends it
    timestamp_header: str = ""  # when set, "{timestamp}{separator}{body}" is signed
    separator: str = "."
    tolerance: Duration = DEFAULT_TOLERANCE
    verifier_class: ClassVar[type[HmacVerifier]]

    def build_verifier(self) -> HmacVerifier:
        keys = self.keys(f'{self.verify} needs a secret: set secret = "env:NAME" or similar')
        verifier = self.verifier_class(
            self.header, self.algorithm, self.encoding, self.prefix, keys
        )
        if self.timestamp_header:
            verifier.sign_timestamp(self.timestamp_header, self.separator, self.tolerance)
        return verifier


class HmacVerifier:
    def __init__(
        self, header: str, algorithm: str, encoding: str, prefix: str, keys: tuple[bytes, ...]
    ) -> None:
        self._header = header
        self._algorithm = algorithm  # a name: hmac.digest() then takes OpenSSL's fast path
        self._hex = encoding == "hex"
        self._prefix = prefix
        self._keys = keys
        self._timestamp: tuple[str, bytes, float] | None = None

    def sign_timestamp(self, header: str, separator: str, tolerance: float) -> None:
        self._timestamp = (header, separator.encode(), tolerance)

    def verify(self, request: Inbound, now: float) -> None:
        provided = request.headers.get(self._header)
        if provided is None:
            raise Rejected(f"missing {self._header} header")
        if not provided.startswith(self._prefix):
            raise Rejected(f"{self._header} does not start with {self._prefix!r}")
        given = self._decode(provided[len(self._prefix) :].strip())
        body, algorithm = request.body, self._algorithm
        if self._timestamp is not None:
            header, separator, tolerance = self._timestamp
            raw = request.headers.get(header)
            check_timestamp(raw, now, tolerance)
            assert raw is not None  # check_timestamp rejected a missing one
            body = raw.strip().encode() + separator + body
        matched = [equal(_hmac.digest(key, body, algorithm), given) for key in self._keys]
        if not any(matched):
            raise Rejected("signature does not match")

    def _decode(self, text: str) -> bytes:
        try:
            if self._hex:
                return bytes.fromhex(text)
            return base64.b64decode(header_bytes(text), validate=True)
        except (ValueError, binascii.Error):
            raise Rejected("signature is not valid " + ("hex" if self._hex else "base64")) from None


HmacSource.verifier_class = HmacVerifier

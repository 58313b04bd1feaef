"""Public-key signatures (Ed25519, ECDSA P-256) for the schemes that use them.

Built on ``cryptography`` (OpenSSL), imported only when a source needs it, so a relay whose
sources all use HMAC does not pay for loading it at start-up.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

Check = Callable[[bytes, bytes], bool]  # (signature, message) -> authentic?


def ed25519(public_key: bytes) -> Check:
    """A check against a raw 32-byte Ed25519 public key."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if len(public_key) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, this one is {len(public_key)}")
    key = Ed25519PublicKey.from_public_bytes(public_key)

    def check(signature: bytes, message: bytes) -> bool:
        if len(signature) != 64:
            return False
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    return check


def ecdsa_p256(spki_der_base64: str) -> Check:
    """A check of DER-encoded ECDSA-SHA256 signatures against a base64 SubjectPublicKeyInfo."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    try:
        key = load_der_public_key(base64.b64decode(spki_der_base64.strip(), validate=True))
    except (binascii.Error, ValueError):
        raise ValueError("not a base64 DER public key (copy it as shown by the provider)") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("not an ECDSA P-256 public key")
    algorithm = ec.ECDSA(hashes.SHA256())

    def check(signature: bytes, message: bytes) -> bool:
        try:
            key.verify(signature, message, algorithm)
        except (InvalidSignature, ValueError):
            return False
        return True

    return check

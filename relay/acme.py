"""An ACME (RFC 8555) client: an account, an order, its challenges, a certificate.

Small on purpose: ``cryptography`` (already a dependency) signs the requests (JWS, ES256)
and makes the keys and the CSR, aiohttp carries them. The certbot project's ``acme``
package would bring pyOpenSSL, josepy and requests into the executable for the same five
requests. Challenges are answered by whoever serves them (``Responder``): HTTP-01 by
``relay.certificates``' plain listener, TLS-ALPN-01 by the HTTPS listener itself.

Every error a user can act on is an ``AcmeError`` naming the directory and what the CA
said (its problem document's ``detail``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from relay.errors import RelayError

log = logging.getLogger("relay.acme")

CHALLENGE_TYPES = ("tls-alpn-01", "http-01")
POLL_LIMIT = 120.0  # seconds an authorization or an order may take to become valid
BAD_NONCE_RETRIES = 5


class AcmeError(RelayError):
    """The CA refused, or could not be reached: the message says which and why."""


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise AcmeError("the stored ACME account key is not an EC key; delete it to make a new one")
    return key


def jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    numbers = key.public_key().public_numbers()
    return {
        "crv": "P-256",
        "kty": "EC",
        "x": b64(numbers.x.to_bytes(32, "big")),
        "y": b64(numbers.y.to_bytes(32, "big")),
    }


def thumbprint(key: ec.EllipticCurvePrivateKey) -> str:
    """RFC 7638: SHA-256 of the JWK's required members, sorted, without spaces."""
    canonical = json.dumps(jwk(key), sort_keys=True, separators=(",", ":")).encode()
    return b64(hashlib.sha256(canonical).digest())


def sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ES256: the raw r || s of an ECDSA P-256 signature over SHA-256."""
    der = key.sign(data, ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def csr(key: ec.EllipticCurvePrivateKey, domains: list[str]) -> bytes:
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domains[0])]))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in domains]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True, slots=True)
class Challenge:
    type: str  # 'http-01' or 'tls-alpn-01'
    domain: str
    token: str
    key_authorization: str


Responder = Callable[
    [Challenge, bool], Awaitable[None]
]  # (challenge, True: serve it / False: stop)


class Client:
    """One directory, one account key. ``context``: the TLS trust for the directory (a
    private CA's root with ``ca_file``; the system's otherwise)."""

    def __init__(
        self,
        directory: str,
        account_key: ec.EllipticCurvePrivateKey,
        context: ssl.SSLContext | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.directory = directory
        self._key = account_key
        self._context = context or ssl.create_default_context()
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, Any] = {}
        self._nonce: str | None = None
        self._kid: str | None = None

    async def __aenter__(self) -> Client:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            connector=aiohttp.TCPConnector(ssl=self._context),
            headers={"User-Agent": "relay-acme"},
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    def _fail(self, what: str, detail: object) -> AcmeError:
        return AcmeError(f"ACME directory {self.directory}: {what}: {detail}")

    async def _request(
        self, method: str, url: str, **kwargs: Any
    ) -> tuple[int, Mapping[str, str], bytes]:
        assert self._session is not None, "use: async with Client(...)"
        try:
            async with self._session.request(method, url, **kwargs) as response:
                body = await response.read()
                if "Replay-Nonce" in response.headers:
                    self._nonce = response.headers["Replay-Nonce"]
                return response.status, response.headers, body
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise self._fail("cannot reach it", f"{type(exc).__name__}: {exc}") from None

    async def _directory(self) -> dict[str, Any]:
        if not self._urls:
            status, _, body = await self._request("GET", self.directory)
            if status != 200:
                raise self._fail("the directory answered", status)
            try:
                self._urls = json.loads(body)
            except ValueError:
                raise self._fail("not an ACME directory", body[:100]) from None
        return self._urls

    async def _fresh_nonce(self) -> str:
        if self._nonce is None:
            url = (await self._directory())["newNonce"]
            await self._request("HEAD", url)
            if self._nonce is None:
                raise self._fail("no Replay-Nonce from", url)
        nonce, self._nonce = self._nonce, None
        return nonce

    async def post(
        self, url: str, payload: dict[str, Any] | None
    ) -> tuple[int, Mapping[str, str], bytes]:
        """A signed POST (``payload`` None: POST-as-GET). A bad nonce is retried."""
        for _ in range(BAD_NONCE_RETRIES):
            protected: dict[str, Any] = {
                "alg": "ES256",
                "nonce": await self._fresh_nonce(),
                "url": url,
            }
            if self._kid is None:
                protected["jwk"] = jwk(self._key)
            else:
                protected["kid"] = self._kid
            head = b64(json.dumps(protected).encode())
            body = "" if payload is None else b64(json.dumps(payload).encode())
            signature = b64(sign(self._key, f"{head}.{body}".encode()))
            status, headers, raw = await self._request(
                "POST",
                url,
                data=json.dumps({"protected": head, "payload": body, "signature": signature}),
                headers={"Content-Type": "application/jose+json"},
            )
            if status == 400 and b"badNonce" in raw:
                continue  # a new nonce came with the refusal
            if status >= 400:
                raise self._fail(f"refused {url.rsplit('/', 1)[-1] or url}", _problem(raw, status))
            return status, headers, raw
        raise self._fail("kept refusing nonces", url)

    async def account(self, email: str | None) -> str:
        """Register (or find) the account of this key; its URL."""
        urls = await self._directory()
        payload: dict[str, Any] = {"termsOfServiceAgreed": True}
        if email:
            payload["contact"] = [f"mailto:{email}"]
        _, headers, _ = await self.post(urls["newAccount"], payload)
        kid = headers.get("Location")
        if not kid:
            raise self._fail("no account URL in", "newAccount")
        self._kid = kid
        return kid

    async def _poll(self, url: str, done: set[str], what: str) -> dict[str, Any]:
        deadline = time.monotonic() + POLL_LIMIT
        while True:
            _, headers, raw = await self.post(url, None)
            state = json.loads(raw)
            status = state.get("status")
            if status in done:
                return dict(state)
            if status == "invalid":
                raise self._fail(f"{what} is invalid", _reason(state))
            if time.monotonic() > deadline:
                raise self._fail(f"{what} still {status}", f"after {POLL_LIMIT:.0f}s")
            await asyncio.sleep(_retry_after(headers))

    async def issue(
        self,
        domains: list[str],
        key: ec.EllipticCurvePrivateKey,
        respond: Responder,
        types: tuple[str, ...] = CHALLENGE_TYPES,
    ) -> bytes:
        """Order a certificate for ``domains`` (the account must exist), prove control of
        each with the first of ``types`` the CA offers, and return the PEM chain."""
        urls = await self._directory()
        identifiers = [{"type": "dns", "value": d} for d in domains]
        _, headers, raw = await self.post(urls["newOrder"], {"identifiers": identifiers})
        order_url = headers.get("Location", "")
        order = json.loads(raw)
        for authz_url in order.get("authorizations", []):
            _, _, raw = await self.post(authz_url, None)
            authz = json.loads(raw)
            if authz.get("status") == "valid":
                continue
            domain = authz["identifier"]["value"]
            offered = {c["type"]: c for c in authz.get("challenges", [])}
            kind = next((t for t in types if t in offered), None)
            if kind is None:
                raise self._fail(
                    f"no challenge relay can answer for {domain}",
                    f"offered {sorted(offered)}, relay answers {list(types)}",
                )
            token = offered[kind]["token"]
            challenge = Challenge(kind, domain, token, f"{token}.{thumbprint(self._key)}")
            await respond(challenge, True)
            try:
                await self.post(offered[kind]["url"], {})
                await self._poll(authz_url, {"valid"}, f"the {kind} challenge for {domain}")
            finally:
                await respond(challenge, False)
            log.info("acme.validated", extra={"fields": {"domain": domain, "challenge": kind}})
        order = await self._poll(order_url, {"ready", "valid"}, "the order")
        if order["status"] == "ready":
            await self.post(order["finalize"], {"csr": b64(csr(key, domains))})
            order = await self._poll(order_url, {"valid"}, "the order")
        _, _, chain = await self.post(order["certificate"], None)
        if b"BEGIN CERTIFICATE" not in chain:
            raise self._fail("the certificate download was not PEM", chain[:100])
        return chain


def _problem(raw: bytes, status: int) -> str:
    try:
        problem = json.loads(raw)
    except ValueError:
        return f"HTTP {status}"
    return f"{problem.get('type', '').rsplit(':', 1)[-1]} {problem.get('detail', '')}".strip()


def _reason(state: dict[str, Any]) -> str:
    for challenge in state.get("challenges", []):
        error = challenge.get("error")
        if error:
            return f"{challenge.get('type')}: {error.get('detail', error)}"
    error = state.get("error")
    return str(error.get("detail", error)) if isinstance(error, dict) else "no reason given"


def _retry_after(headers: Mapping[str, str]) -> float:
    try:
        return min(10.0, max(0.2, float(headers.get("Retry-After", "1"))))
    except ValueError:
        return 1.0

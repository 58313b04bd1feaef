"""The public listener's certificate: from files, or obtained and renewed over ACME.

Files (``cert_file``/``key_file``): loaded at start, and again on SIGHUP or when either
file changes on disk (looked at every ``WATCH`` seconds); a pair that fails to load is
logged and the one in use stays.

ACME (``acme = true``): the account key and each certificate live in the state folder
(0600). At start a stored certificate that covers the domains and has not expired is used
as it is; with none, one is obtained before relay says it is ready (``obtain``), and a CA
that cannot be reached then is an error naming the directory. Renewal runs in the
background (``run``): due ``renew_before`` ahead of expiry or at two thirds of the
lifetime, whichever is first; a failure is retried after a jittered, growing wait, and
after ``ALERT_AFTER`` failures in a row, or with less than ``ALERT_EXPIRY`` left, an
alert says so. A new certificate is served to new connections; open ones keep theirs.

Challenges are answered here: HTTP-01 tokens for the plain listener (``http_app``) and
TLS-ALPN-01 contexts that the HTTPS listener picks by the ClientHello (``for_hello``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from relay import acme
from relay.clienthello import Hello
from relay.errors import RelayError
from relay.sections import ServerTls
from relay.tls import ACME_TLS, CertificateFacts, challenge_context, facts, server_context

log = logging.getLogger("relay.tls")

WATCH = 2.0  # seconds between looks at cert_file and key_file
MIN_GAP = 3600.0  # after a renewal, the next one waits at least this long
RETRY_FIRST, RETRY_MOST = 60.0, 6 * 3600.0  # seconds: a failed renewal's retry waits
ALERT_AFTER = 3  # failed renewals in a row before an alert
ALERT_EXPIRY = 7 * 86400.0  # or: less than this left on the certificate

Alert = Callable[[dict[str, Any]], Awaitable[None]]


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only, atomically."""
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)


class Certificates:
    def __init__(
        self,
        config: ServerTls,
        state_dir: Path,
        alert: Alert | None = None,
        clock: Callable[[], float] = time.time,
        installed: Callable[[CertificateFacts], None] | None = None,
    ) -> None:
        self.config = config
        self._installed = installed  # told of each certificate put in use (the metric)
        self.state_dir = state_dir
        self._alert = alert
        self._clock = clock
        self.context: ssl.SSLContext | None = None
        self.facts: CertificateFacts | None = None
        self.alpn: dict[str, ssl.SSLContext] = {}  # pending TLS-ALPN-01, by domain
        self.tokens: dict[str, str] = {}  # pending HTTP-01: token -> key authorization
        self.renewed = 0
        self.failures = 0
        self._stamp: tuple[float, float] | None = None  # the files' mtimes when loaded
        self._last_issued = 0.0

    # -- where things are -----------------------------------------------------------------

    @property
    def _name(self) -> str:
        return self.config.domains[0] if self.config.domains else "certificate"

    @property
    def cert_path(self) -> Path:
        if self.config.cert_file is not None:
            return self.config.cert_file
        return self.state_dir / f"{self._name}.crt"

    @property
    def key_path(self) -> Path:
        if self.config.key_file is not None:
            return self.config.key_file
        return self.state_dir / f"{self._name}.key"

    # -- loading ------------------------------------------------------------------------------

    def _install(self, cert: Path, key: Path) -> CertificateFacts:
        context = server_context(cert, key)
        found = facts(cert.read_bytes())
        self.context, self.facts = context, found
        if self._installed is not None:
            self._installed(found)
        log.info(
            "tls.certificate",
            extra={
                "fields": {
                    "names": ",".join(found.names),
                    "expires": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(found.not_after)),
                    "issuer": found.issuer,
                }
            },
        )
        return found

    def _mtimes(self) -> tuple[float, float] | None:
        try:
            return (os.stat(self.cert_path).st_mtime, os.stat(self.key_path).st_mtime)
        except OSError:
            return None

    def load(self) -> bool:
        """Files: load them (RelayError if they will not). ACME: use the stored certificate
        if it covers the domains and has not expired; False when one must be obtained."""
        if not self.config.acme:
            try:
                self._install(self.cert_path, self.key_path)
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise RelayError(
                    f"server.tls: cannot load {self.cert_path} with {self.key_path} ({exc})"
                ) from None
            self._stamp = self._mtimes()
            return True
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not (self.cert_path.exists() and self.key_path.exists()):
            return False
        try:
            found = facts(self.cert_path.read_bytes())
        except (OSError, ValueError):
            return False
        if not found.covers(list(self.config.domains)) or found.not_after <= self._clock():
            return False
        try:
            self._install(self.cert_path, self.key_path)
        except (OSError, ssl.SSLError):
            return False
        self._last_issued = 0.0  # not issued by this process: renew at once if due
        return True

    def reload_files(self) -> str | None:
        """Files mode, on SIGHUP or a change on disk: the new pair, or why not (the old
        one stays in use)."""
        if self.config.acme:
            return None
        try:
            self._install(self.cert_path, self.key_path)
        except (OSError, ssl.SSLError, ValueError) as exc:
            problem = f"cannot load {self.cert_path} with {self.key_path} ({exc})"
            log.error("tls.reload_refused", extra={"fields": {"error": problem}})
            return problem
        self._stamp = self._mtimes()
        return None

    # -- ACME -------------------------------------------------------------------------------

    def _trust(self) -> ssl.SSLContext:
        if self.config.ca_file is not None:
            return ssl.create_default_context(cafile=str(self.config.ca_file))
        return ssl.create_default_context()

    def _account_key(self) -> Any:
        path = self.state_dir / "account.key"
        if path.exists():
            return acme.load_key(path.read_bytes())
        key = acme.new_key()
        _write_private(path, acme.key_pem(key))
        return key

    async def _respond(self, challenge: acme.Challenge, serve: bool) -> None:
        if challenge.type == "http-01":
            if serve:
                self.tokens[challenge.token] = challenge.key_authorization
            else:
                self.tokens.pop(challenge.token, None)
        elif serve:
            self.alpn[challenge.domain] = challenge_context(
                challenge.domain, challenge.key_authorization
            )
        else:
            self.alpn.pop(challenge.domain, None)

    async def obtain(self) -> None:
        """Get a certificate for the domains now, store it, and serve it to new
        connections. AcmeError names the directory and what went wrong."""
        config = self.config
        domains = list(config.domains)
        started = time.monotonic()
        async with acme.Client(config.directory, self._account_key(), self._trust()) as client:
            await client.account(config.email)
            key = acme.new_key()
            chain = await client.issue(domains, key, self._respond, (config.challenge,))
        _write_private(self.key_path, acme.key_pem(key))
        _write_private(self.cert_path, chain)
        found = self._install(self.cert_path, self.key_path)
        self._last_issued = self._clock()
        log.info(
            "tls.issued",
            extra={
                "fields": {
                    "domains": ",".join(domains),
                    "serial": f"{found.serial:x}",
                    "seconds": round(time.monotonic() - started, 2),
                }
            },
        )

    def next_renewal(self) -> float:
        """When the background loop renews next (a Unix time)."""
        assert self.facts is not None
        f = self.facts
        lifetime = f.not_after - f.not_before
        due = min(f.not_after - self.config.renew_before, f.not_before + lifetime * 2 / 3)
        return max(due, self._last_issued + MIN_GAP)

    async def run(self) -> None:
        """Files: watch them for changes. ACME: renew when due, retry when it fails."""
        if not self.config.acme:
            while True:
                await asyncio.sleep(WATCH)
                stamp = self._mtimes()
                if stamp is not None and stamp != self._stamp:
                    self.reload_files()
                    self._stamp = stamp
            return
        while True:
            wait = self.next_renewal() - self._clock()
            if wait > 0:
                await asyncio.sleep(min(wait, 3600.0))  # look again at least hourly
                continue
            try:
                await self.obtain()
            except (acme.AcmeError, OSError, ssl.SSLError, ValueError) as exc:
                self.failures += 1
                delay = min(RETRY_MOST, RETRY_FIRST * 2 ** (self.failures - 1))
                delay *= random.uniform(0.5, 1.5)
                log.error(
                    "tls.renewal_failed",
                    extra={
                        "fields": {
                            "error": str(exc),
                            "failures": self.failures,
                            "retry_in": round(delay),
                        }
                    },
                )
                await self._maybe_alert(str(exc))
                await asyncio.sleep(delay)
            else:
                self.renewed += 1
                self.failures = 0

    async def _maybe_alert(self, error: str) -> None:
        left = (self.facts.not_after - self._clock()) if self.facts else 0.0
        if self._alert is None or (self.failures < ALERT_AFTER and left > ALERT_EXPIRY):
            return
        with contextlib.suppress(Exception):
            await self._alert(
                {
                    "type": "certificate.renewal_failed",
                    "text": (
                        f"relay cannot renew the certificate for {', '.join(self.config.domains)}"
                        f" ({self.failures} attempts; it expires in {left / 86400:.1f} days): "
                        f"{error}"
                    ),
                    "domains": list(self.config.domains),
                    "failures": self.failures,
                    "expires_in_seconds": int(left),
                    "error": error,
                }
            )

    # -- serving challenges -----------------------------------------------------------------

    def for_hello(self, hello: Hello | None) -> ssl.SSLContext | None:
        """The context for a connection whose ClientHello is ``hello``: a pending
        TLS-ALPN-01 challenge's, or the certificate's."""
        if hello is not None and ACME_TLS in hello.alpn and hello.server_name in self.alpn:
            return self.alpn[hello.server_name]
        return self.context

    def http_app(self, https_port: int) -> web.Application:
        """The plain listener (``http_listen``): HTTP-01 answers, and a redirect to HTTPS
        for everything else (308 keeps a POST a POST)."""

        async def challenge(request: web.Request) -> web.Response:
            answer = self.tokens.get(request.match_info["token"])
            if answer is None:
                return web.Response(status=404, text="no such challenge")
            return web.Response(text=answer, content_type="application/octet-stream")

        async def redirect(request: web.Request) -> web.Response:
            host = request.host.rsplit(":", 1)[0] if request.host else self._name
            port = "" if https_port == 443 else f":{https_port}"
            location = f"https://{host}{port}{request.rel_url}"
            return web.Response(status=308, headers={"Location": location})

        app = web.Application()
        app.router.add_get("/.well-known/acme-challenge/{token}", challenge)
        app.router.add_route("*", "/{tail:.*}", redirect)
        return app

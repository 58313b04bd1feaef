"""The config file's sections ([server], [storage], [admin], [retention], [alerts], [log],
[[destinations]], [[agents]]) as models, for the parts of relay that need one of them.

The whole file, with its sources (and so every verifier), mappings and routes, is
``relay.config``; importing a section from here loads none of that (``relay agent``,
``relay.retry`` and the scheduler need only these).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import ssl
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, field_validator, model_validator

from relay.configtypes import (
    NAME_PATTERN,
    ByteSize,
    Duration,
    Network,
    RateLimit,
    Rule,
    Secret,
    SecretRef,
    StrictModel,
    shown_url,
)
from relay.people import People, Person, digest

DOMAIN = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$"
)
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"


class ServerTls(StrictModel):
    """HTTPS on the public listener: certificate files, or certificates from ACME."""

    cert_file: Path | None = Field(
        None, description="certificate chain (PEM), the server's first; reloaded on change"
    )
    key_file: Path | None = Field(None, description="the certificate's private key (PEM)")
    acme: bool = Field(False, description="obtain and renew certificates over ACME")
    domains: tuple[str, ...] = Field((), description="with acme: the names to certify")
    email: str | None = Field(None, description="with acme: the account's contact")
    directory: str = Field(
        LETS_ENCRYPT,
        description="with acme: the ACME directory (Let's Encrypt by default; staging or a "
        "private CA by URL)",
    )
    ca_file: Path | None = Field(
        None, description="with acme: the root that the directory's HTTPS is signed by"
    )
    challenge: Literal["tls-alpn-01", "http-01"] = Field(
        "tls-alpn-01",
        description="with acme: tls-alpn-01 on this HTTPS port, or http-01 on http_listen",
    )
    http_listen: str | None = Field(
        None,
        description='a plain listener (e.g. ":80") for http-01 and redirects to HTTPS',
    )
    renew_before: Duration = Field(
        30 * 86400.0,
        description="with acme: renew this long before expiry (or at two thirds of the "
        "lifetime, if sooner)",
    )
    state_dir: Path | None = Field(
        None,
        description="with acme: where the account key and certificates are kept (default: "
        "tls/ beside the database)",
    )

    @field_validator("domains")
    @classmethod
    def _check_domains(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for domain in value:
            if not DOMAIN.match(domain.lower()):
                raise ValueError(
                    f"{domain!r} is not a domain name; write it bare, e.g. hooks.example.com "
                    "(no scheme, port, path or wildcard)"
                )
        return tuple(d.lower() for d in value)

    @field_validator("http_listen")
    @classmethod
    def _check_http_listen(cls, value: str | None) -> str | None:
        if value is not None:
            split_address(value)
        return value

    @model_validator(mode="after")
    def _check_mode(self) -> ServerTls:
        files = self.cert_file is not None or self.key_file is not None
        if self.acme and files:
            raise ValueError("set acme = true or cert_file/key_file, not both")
        if not self.acme and not files:
            raise ValueError("set cert_file and key_file, or acme = true with domains")
        if files:
            if self.cert_file is None or self.key_file is None:
                raise ValueError("cert_file and key_file go together; set both")
            from relay.tls import check_pair

            check_pair(self.cert_file, self.key_file)
            return self
        if not self.domains:
            raise ValueError('acme = true needs domains, e.g. domains = ["hooks.example.com"]')
        if self.email is not None and "@" not in self.email:
            raise ValueError(f"email {self.email!r} is not an address")
        if urlsplit(self.directory).scheme != "https":
            raise ValueError(f"directory {self.directory!r} must be an https:// URL")
        if self.ca_file is not None and not os.access(self.ca_file, os.R_OK):
            raise ValueError(f"cannot read ca_file {self.ca_file}; give a readable PEM file")
        if self.challenge == "http-01" and self.http_listen is None:
            raise ValueError('challenge = "http-01" needs http_listen, e.g. ":80"')
        return self


class ServerConfig(StrictModel):
    listen: str = Field("127.0.0.1:8080", description="host:port the ingress listens on")
    max_body_size: ByteSize = Field(1024 * 1024, description="largest body accepted (413 above)")
    max_header_size: ByteSize = Field(
        16 * 1024, description="largest total of request headers accepted (431 above)"
    )
    read_timeout: Duration = Field(10.0, description="time allowed to read one request body")
    keepalive_timeout: Duration = Field(15.0, description="idle time before closing a connection")
    header_timeout: Duration = Field(
        5.0,
        description="a new connection must send a whole request head within this (over "
        "HTTPS, the TLS handshake included)",
    )
    backlog: int = Field(
        1024,
        ge=16,
        le=65535,
        description="connections the kernel queues while relay is busy or restarting (with "
        "relay.socket, its Backlog= decides; the kernel caps both at net.core.somaxconn)",
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="open connections at once; at the cap the oldest idle or unfinished one "
        "is closed to make room, and only when all are busy is a new one answered 503",
    )
    max_connections_per_address: int = Field(
        64,
        ge=1,
        description="open connections from one client address (an IPv6 /64); more are "
        "answered 503; trusted_proxies are exempt",
    )
    shutdown_grace: Duration = Field(
        10.0, description="on SIGTERM, how long in-flight deliveries may finish"
    )
    trusted_proxies: tuple[Network, ...] = Field(
        (), description="peers whose X-Forwarded-For / Forwarded headers are believed"
    )
    tls: ServerTls | None = Field(None, description="HTTPS on this listener (docs/deploy.md)")

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        split_address(value)
        return value


def split_address(value: str) -> tuple[str, int]:
    """``"host:port"`` (or ``"[::1]:port"``) into its parts; ValueError with the fix."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port; write e.g. 127.0.0.1:8080")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - an empty host means all


class StorageConfig(StrictModel):
    path: Path = Field(Path("relay.db"), description="SQLite database file (WAL mode)")
    url: SecretRef | None = Field(
        None,
        description="postgresql://… (or env:NAME, file:/path): PostgreSQL instead of the "
        "SQLite file, for several relays on one database (docs/scale-out.md)",
    )
    durability: Literal["full", "normal"] = Field(
        "full",
        description="full: an acknowledged event survives power loss; normal: a process crash",
    )
    busy_timeout: Duration = Field(5.0, description="how long a write waits for a lock")
    max_batch: int = Field(
        512, ge=1, le=4096, description="most writes per group commit (1 disables grouping)"
    )
    keep_rejections: int = Field(
        10_000, ge=0, description="rejected requests kept in the rejections table (0: none)"
    )
    max_size: ByteSize | None = Field(
        None, description="database + WAL size beyond which ingress answers 507 (unset: none)"
    )
    alert: str | None = Field(None, description="destination told when max_size is reached")
    lease_margin: Duration = Field(
        30.0,
        description="how long a lease outlives its destination's timeout: after a crash, "
        "its deliveries go again this long after the timeout",
    )

    @model_validator(mode="after")
    def _one_database(self) -> StorageConfig:
        if self.url is None:
            return self
        if "path" in self.model_fields_set:
            raise ValueError(
                "storage.path and storage.url both set: path selects SQLite and url "
                "PostgreSQL; keep the one you mean"
            )
        scheme = urlsplit(self.url.value).scheme
        if scheme not in ("postgresql", "postgres"):
            raise ValueError(
                f"storage.url: scheme {scheme or '(none)'!r} is not PostgreSQL; write "
                "postgresql://user:password@host:5432/database"
            )
        return self

    @property
    def postgresql(self) -> bool:
        return self.url is not None

    def describe(self) -> str:
        """Where the data is, for logs: the file, or the URL without its password."""
        if self.url is None:
            return str(self.path)
        return shown_url(self.url.value)


class ListenerTls(StrictModel):
    cert_file: Path = Field(description="certificate chain (PEM), the server's first")
    key_file: Path = Field(description="the certificate's private key (PEM)")

    @model_validator(mode="after")
    def _check_pair(self) -> ListenerTls:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                self.cert_file, self.key_file
            )
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(
                f"cannot load {self.cert_file} with {self.key_file} ({exc}); give a readable "
                "PEM certificate chain and its private key"
            ) from None
        return self

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


class AdminUser(StrictModel):
    """A person who may use the admin API, the console and the CLI (relay.people)."""

    name: str = Field(
        pattern=r"^[a-z][a-z0-9._-]{0,63}$",
        description="who they are, as the audit trail names them (alice, ops.bob)",
    )
    role: Literal["viewer", "operator", "admin"] = Field(
        description="viewer: reads; operator: also replays, pauses, resumes, catches up; "
        "admin: also reloads, prunes, backs up"
    )
    token: SecretRef | None = Field(None, description="their token: inline, env: or file:")
    token_sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="or the SHA-256 of their token, hex (what relay user add prints)",
    )

    @model_validator(mode="after")
    def _one_token(self) -> AdminUser:
        if (self.token is None) == (self.token_sha256 is None):
            raise ValueError(
                f"user {self.name}: give token or token_sha256 (exactly one; relay user add "
                "prints a token and its token_sha256)"
            )
        return self

    def person(self) -> Person:
        if self.token is not None:
            return Person(self.name, self.role, digest(self.token.value))
        assert self.token_sha256 is not None
        return Person(self.name, self.role, bytes.fromhex(self.token_sha256))


class AdminConfig(StrictModel):
    listen: str = Field(
        "127.0.0.1:8081", description="host:port, or unix:/path, of the admin API and /metrics"
    )
    token: SecretRef | None = Field(
        None, description="bearer token of a person named admin, with the admin role"
    )
    users: list[AdminUser] = Field(
        default_factory=list, description="named people with roles ([[admin.users]])"
    )
    public_url: str | None = Field(
        None, description="the console's address as people reach it, for links in alerts"
    )
    tls: ListenerTls | None = Field(
        None, description="serve the admin API and the console over HTTPS (cert_file, key_file)"
    )

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        if not value.startswith("unix:"):
            split_address(value)
        return value

    @model_validator(mode="after")
    def _distinct_people(self) -> AdminConfig:
        names = [u.name for u in self.users] + (["admin"] if self.token is not None else [])
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            why = " ([admin] token is the user admin)" if "admin" in twice else ""
            raise ValueError(f"users: {', '.join(twice)} named twice{why}; names must differ")
        return self

    @property
    def enabled(self) -> bool:
        """The admin listener runs when somebody may use it."""
        return self.token is not None or bool(self.users)

    def people(self) -> People:
        persons = [u.person() for u in self.users]
        if self.token is not None:
            persons.insert(0, Person("admin", "admin", digest(self.token.value)))
        return People(persons)


class RetentionConfig(StrictModel):
    delivered_after: Duration | None = Field(
        None, description="delete events delivered everywhere (or routed nowhere) this old"
    )
    dead_after: Duration | None = Field(
        None, description="delete events with dead deliveries (none pending) this old"
    )
    rejections_after: Duration | None = Field(None, description="delete rejections this old")
    redact_after: Duration | None = Field(
        None, description="empty the body of events delivered everywhere this old"
    )
    audit_after: Duration | None = Field(None, description="delete audit rows this old")
    incidents_after: Duration | None = Field(
        None, description="delete incidents resolved this long ago"
    )
    interval: Duration = Field(60.0, description="how often the pruner runs")
    batch: int = Field(500, ge=1, le=10_000, description="rows per pruning transaction")


class RejectionsAlert(StrictModel):
    share: float = Field(gt=0.0, le=1.0, description="refused share of a source's requests")
    window: Duration = Field(600.0, description="over this long")
    min: int = Field(20, ge=1, description="and at least this many requests in the window")


class AlertsConfig(StrictModel):
    destination: str | None = Field(
        None, description="where alerts go: any [[destinations]] entry (unset: no alerts)"
    )
    format: Literal["json", "slack"] = Field(
        "json", description='json: the documented schema; slack: {"text": …}'
    )
    every: Duration = Field(
        300.0, description="at most one alert per kind and subject per interval"
    )
    dead: bool = Field(True, description="deliveries died")
    catch_up: bool = Field(True, description="a catch-up from a provider's API failed")
    backlog: Duration | None = Field(
        None, description="a destination's oldest pending delivery is older than this"
    )
    rejections: RejectionsAlert | None = Field(
        None, description="a source refuses more than this share of its requests"
    )
    quiet: dict[str, Duration] = Field(
        {}, description="per source: it received nothing for this long"
    )


class LogConfig(StrictModel):
    level: Literal["debug", "info", "warning", "error"] = Field(
        "info",
        description=(
            "debug: a line per event received and per attempt; info: retries, lifecycle "
            "and problems; warning: problems only"
        ),
    )
    format: Literal["auto", "logfmt", "json"] = Field(
        "auto", description="auto: logfmt (no timestamps under journald)"
    )


class RetryPolicy(StrictModel):
    max_attempts: int = Field(10, ge=1, description="attempts before a delivery is dead")
    max_age: Duration = Field(
        3 * 86400.0, description="a delivery older than this is dead instead of retried"
    )
    base: Duration = Field(1.0, description="first backoff (before jitter)")
    factor: float = Field(2.0, ge=1.0, description="backoff growth per attempt")
    cap: Duration = Field(600.0, description="longest backoff (before jitter)")
    schedule: tuple[Duration, ...] = Field(
        (), description="explicit waits after attempt 1, 2, …; the last repeats (replaces base)"
    )
    jitter: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="share of each wait that is random; default 1 (exponential), 0.1 (schedule)",
    )
    retry_after_max: Duration = Field(
        3600.0, description="longest Retry-After from a receiver that is honoured"
    )


class HeaderTransform(StrictModel):
    add: dict[str, SecretRef] = Field({}, description="headers added (kept beside any same name)")
    set: dict[str, SecretRef] = Field({}, description="headers set (replacing any same name)")
    remove: tuple[str, ...] = Field((), description="header names removed")


class TlsConfig(StrictModel):
    ca_file: Path | None = Field(None, description="CA bundle the destination's cert must chain to")
    cert_file: Path | None = Field(None, description="client certificate (PEM), for mTLS")
    key_file: Path | None = Field(None, description="the client certificate's key (PEM)")
    verify: bool = Field(True, description="false skips certificate checks (logged as a warning)")

    @model_validator(mode="after")
    def _check_files(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("set cert_file and key_file together (the client certificate)")
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not os.access(path, os.R_OK):
                raise ValueError(f"{name}: cannot read {path}; fix the path or permissions")
        return self


class CircuitConfig(StrictModel):
    failures: int = Field(5, ge=1, description="consecutive failed attempts that open it")
    cooldown: Duration = Field(30.0, description="wait before one probe delivery")
    pause_after: Duration | None = Field(
        None, description="an outage longer than this pauses the destination"
    )
    alert: str | None = Field(None, description="destination that gets the pause notification")


class DestinationConfig(StrictModel):
    # `schema` in the file; `schema_version` in code (BaseModel has a `schema` method).
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    url: str = Field(description="http:// or https:// URL deliveries are POSTed to")
    timeout: Duration = Field(10.0, description="time allowed for one attempt")
    max_concurrency: int = Field(10, ge=1, le=1000, description="attempts in flight at once")
    keep_response: int = Field(
        512,
        ge=0,
        le=65536,
        description="bytes of each attempt's response body kept (shown in the console)",
    )
    rate_limit: RateLimit | None = Field(None, description="deliveries per second, and burst")
    retry: RetryPolicy = RetryPolicy()
    circuit: CircuitConfig | None = Field(None, description="stop sending to a failing service")
    paused: bool | None = Field(
        None, description="true: hold deliveries; false: resume at start; unset: as it was"
    )
    ordering: Literal["none", "source", "key"] = Field(
        "none", description="deliver in order: per source, or per ordering_key"
    )
    ordering_key: Rule = Field(None, description="with ordering = key: e.g. json:/customer")
    forward_headers: bool = Field(True, description="pass the sender's headers through")
    headers: HeaderTransform = HeaderTransform()
    signing_secret: SecretRef | None = Field(
        None, description="whsec_… : sign each delivery the Standard Webhooks way"
    )
    tls: TlsConfig = TlsConfig()
    proxy: str | None = Field(None, description="HTTP proxy URL for this destination")
    agent: str | None = Field(
        None, description="deliver through this [[agents]] group (the URL as the agent sees it)"
    )
    body: Literal["original", "item", "canonical"] = Field(
        "original",
        description="what is sent: the request as received, the split item's JSON, or the "
        "relay.event.v1 envelope (docs/events.md)",
    )
    stale: Literal["deliver", "drop"] = Field(
        "deliver", description="a status that would move a message back: flagged, or not sent"
    )
    schema_version: Literal["relay.event.v1"] = Field(
        "relay.event.v1",
        alias="schema",
        description="with body = canonical: the envelope version this receiver is written for",
    )

    @field_validator("url", "proxy")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL; write e.g. http://127.0.0.1:9000/")
        return value

    @field_validator("signing_secret")
    @classmethod
    def _check_signing_secret(cls, value: Secret | None) -> Secret | None:
        if value is not None:
            try:
                base64.b64decode(value.value.removeprefix("whsec_"), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(
                    "must be whsec_ followed by base64 (a Standard Webhooks secret)"
                ) from None
        return value

    @model_validator(mode="after")
    def _check_ordering(self) -> DestinationConfig:
        if self.ordering == "key" and self.ordering_key in (None, "none"):
            raise ValueError('ordering = "key" needs ordering_key, e.g. "json:/customer_id"')
        return self


class AgentGroupConfig(StrictModel):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    token: SecretRef | None = Field(None, description="the token its agents present")
    tokens: tuple[SecretRef, ...] = Field(
        (), description="more accepted tokens (a rotation); kept hashed in memory"
    )
    heartbeat: Duration = Field(
        15.0, description="seconds between pings to its agents; silent for 1.5 of them: gone"
    )

    @model_validator(mode="after")
    def _some_token(self) -> AgentGroupConfig:
        if self.token is None and not self.tokens:
            raise ValueError('an agent group needs a token: token = "env:NAME"')
        return self

    def token_values(self) -> list[str]:
        return [t.value for t in (self.token, *self.tokens) if t is not None]

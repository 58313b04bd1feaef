"""Value types used across the config: secrets, durations, sizes, and the source base model.

They live apart from ``relay.config`` so that verifier modules can define their own source
models without importing the whole config (data flows config → verify, never back).
"""

from __future__ import annotations

import ipaddress
import os
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    model_validator,
)

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class StrictModel(BaseModel):
    """Every config section forbids unknown keys: a typo must fail loudly, not be ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Secret:
    """A secret value plus where it came from; never shows the value in repr or output."""

    __slots__ = ("reference", "value")

    def __init__(self, value: str, reference: str) -> None:
        self.value = value
        self.reference = reference

    def __repr__(self) -> str:
        return f"Secret({self.masked()!r})"

    def masked(self) -> str:
        return f"{self.reference} (***)" if self.reference != "inline" else "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


# Set while a config with problems is read a second time, only to find its other problems
# (load_config): a secret that cannot be read is then a placeholder instead of an error,
# since its own error was said already.
LENIENT_SECRETS: ContextVar[bool] = ContextVar("lenient_secrets", default=False)


def resolve_secret(raw: Any) -> Secret:
    """Turn ``env:NAME``, ``file:/path`` or an inline string into a Secret."""
    try:
        return _resolve_secret(raw)
    except ValueError:
        if LENIENT_SECRETS.get() and isinstance(raw, str) and raw:
            return Secret("unread", raw)
        raise


def _resolve_secret(raw: Any) -> Secret:
    if isinstance(raw, Secret):
        return raw
    if not isinstance(raw, str) or not raw:
        raise ValueError("must be a non-empty string: the secret, env:NAME or file:/path")
    if raw.startswith("env:"):
        name = raw[4:]
        value = os.environ.get(name)
        if not value:
            raise ValueError(
                f"environment variable {name} is not set or empty; export it or write the "
                "secret inline"
            )
        return Secret(value, raw)
    if raw.startswith("file:"):
        path = Path(raw[5:])
        try:
            value = path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ValueError(
                f"cannot read secret file {path} ({exc.strerror}); create it or fix the path"
            ) from None
        if not value:
            raise ValueError(f"secret file {path} is empty; put the secret in it")
        return Secret(value, raw)
    return Secret(raw, "inline")


SecretRef = Annotated[
    Secret,
    PlainValidator(resolve_secret),
    PlainSerializer(lambda s: s.masked(), return_type=str),
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(raw: Any) -> float:
    """Seconds from a number or a string such as ``"500ms"``, ``"5s"``, ``"30m"``, ``"2h"``."""
    if isinstance(raw, bool):
        raise ValueError("must be a duration such as 5s, 10m or 2h")
    if isinstance(raw, int | float):
        seconds = float(raw)
    elif isinstance(raw, str) and (match := _DURATION.match(raw)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(
            f"{raw!r} is not a duration; write a number of seconds or e.g. 5s, 10m, 2h"
        )
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


Duration = Annotated[
    float, BeforeValidator(parse_duration), Field(json_schema_extra={"format": "duration"})
]

_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KB": 1000,
    "KiB": 1024,
    "MB": 1000**2,
    "MiB": 1024**2,
    "GB": 1000**3,
    "GiB": 1024**3,
}


def parse_size(raw: Any) -> int:
    """Bytes from an integer or a string such as ``"1MiB"`` or ``"512KiB"``."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and (match := _SIZE.match(raw)):
        return int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    raise ValueError(f"{raw!r} is not a size; write bytes or e.g. 512KiB, 1MiB")


ByteSize = Annotated[int, BeforeValidator(parse_size)]

_RULE = re.compile(r"^(none|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+|json:(/.*)?|form:.+)$")


def check_rule(raw: Any) -> str | None:
    """An extraction rule: ``header:Name``, ``json:/pointer``, ``form:field`` or ``none``."""
    if raw is None:
        return None
    if not isinstance(raw, str) or not _RULE.match(raw):
        raise ValueError(
            f"{raw!r} is not a rule; write header:Header-Name, json:/pointer, form:field or none"
        )
    return raw


Rule = Annotated[str | None, BeforeValidator(check_rule)]


def check_split(raw: Any) -> str | None:
    """A split path: ``json:/`` or a JSON pointer with ``*`` (relay.normalize.split)."""
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw.startswith("json:/"):
        raise ValueError(
            f"{raw!r} is not a split path; write json:/ (a top-level array) or a pointer "
            "with * for every element of a list, e.g. json:/entry/*/changes/*/value/statuses"
        )
    return raw


SplitPath = Annotated[str | None, BeforeValidator(check_split)]


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_network(raw: Any) -> IPNetwork:
    """A CIDR block (``"10.0.0.0/8"``) or one address (``"192.0.2.7"``)."""
    if isinstance(raw, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return raw
    if not isinstance(raw, str):
        raise ValueError("must be a CIDR block such as 10.0.0.0/8 or an address")
    try:
        return ipaddress.ip_network(raw.strip(), strict=False)
    except ValueError:
        raise ValueError(
            f"{raw!r} is not a CIDR block or an address; write e.g. 203.0.113.0/24"
        ) from None


Network = Annotated[
    IPNetwork,
    PlainValidator(parse_network),
    PlainSerializer(str, return_type=str),
]


class RateLimit(StrictModel):
    rate: float = Field(gt=0, description="requests per second, on average")
    burst: int = Field(gt=0, description="requests allowed at once before the rate applies")


_GITHUB_HOOK = re.compile(r"^(repos/[\w.-]+/[\w.-]+|orgs/[\w.-]+)/hooks/\d+$|^app$")
_API_ID = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")


class CatchUpConfig(StrictModel):
    """``[sources.catch_up]``: fetch back from the provider's API what it sent while relay
    was down or unreachable (relay.catchup; docs/operations.md, "After an outage")."""

    api_key: SecretRef = Field(
        description="the provider's API key or token (read-only where it has one)"
    )
    base_url: str | None = Field(
        None,
        description="the provider's API (default: its public one; set for tests, GitHub "
        "Enterprise, Paddle's sandbox or a Svix region)",
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
    )
    automatic: bool = Field(
        True, description="after every downtime, and every interval over the last two"
    )
    interval: Duration = Field(
        900.0, ge=60.0, le=86400.0, description="how often the recent past is checked again"
    )
    hook: str | None = Field(
        None,
        description='GitHub: "repos/OWNER/REPO/hooks/ID", "orgs/ORG/hooks/ID" or "app"',
    )
    app_id: str | None = Field(
        None, description='Svix: the application; GitHub with hook = "app": the App\'s id'
    )
    endpoint_id: str | None = Field(None, description="Svix: the endpoint relay is")
    notification_setting_id: str | None = Field(
        None, description="Paddle: relay's notification destination (ntfset_…)"
    )

    def problem(self, api: str, key_rule: str | None) -> str | None:
        """What is wrong with this table for ``api`` (and the source's idempotency rule),
        or None."""
        wanted = {
            "stripe": ("json:/id",),
            "github": ("header:x-github-delivery",),
            "paddle": ("json:/event_id",),
            "svix": ("header:webhook-id", "header:svix-id"),
        }[api]
        if (key_rule or "").lower() not in wanted:
            return (
                f"catch_up compares the provider's ids with the idempotency key: set "
                f'idempotency_key = "{wanted[0]}" (the default for this verify) or remove '
                "[sources.catch_up]"
            )
        if api == "github":
            if self.hook is None or not _GITHUB_HOOK.match(self.hook):
                return (
                    'catch_up.hook: GitHub needs the webhook, "repos/OWNER/REPO/hooks/ID", '
                    '"orgs/ORG/hooks/ID" or "app" (the ID is X-GitHub-Hook-ID of any delivery)'
                )
            if self.hook == "app" and not (self.app_id or "").isdigit():
                return (
                    'catch_up.app_id: hook = "app" signs in as the GitHub App: set its '
                    "numeric App ID (api_key is then the App's private key, file:/…pem)"
                )
        elif self.hook is not None:
            return "catch_up.hook is GitHub's; remove it"
        if api == "svix":
            for key in ("app_id", "endpoint_id"):
                value = getattr(self, key)
                if value is None or not _API_ID.match(value):
                    return f"catch_up.{key}: Svix needs the application and endpoint (app_…, ep_…)"
        elif self.endpoint_id is not None:
            return "catch_up.endpoint_id is Svix's; remove it"
        if self.notification_setting_id is not None and (
            api != "paddle" or not _API_ID.match(self.notification_setting_id)
        ):
            return "catch_up.notification_setting_id is Paddle's (ntfset_…)"
        return None


class SourceBase(StrictModel):
    """What every source has, whatever verifies it. Verifier modules subclass this.

    A subclass may change the defaults of ``idempotency_key`` and ``event_type`` to the
    provider's own fields, so presets need no extra mechanism.
    """

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    idempotency_key: Rule = None
    event_type: Rule = None
    occurred_at: Rule = None  # the provider's own time of the event, where it gives one
    # Normalized events (docs/events.md): a mapping's name ([[mappings]] or a preset), and
    # without one, where a batch's items are (each then takes the rules above on its own).
    normalize: str | None = None
    split: SplitPath = None
    allow_ips: tuple[Network, ...] = ()  # when set, other client addresses get 403
    rate_limit: RateLimit | None = None  # for the whole source; 429 with Retry-After above
    client_rate_limit: RateLimit | None = None  # for each client address of the source
    catch_up: CatchUpConfig | None = None  # fetch back what was sent while relay was down
    # Which provider API catch_up uses for this verify (None: it has none relay knows).
    catch_up_api: ClassVar[str | None] = None

    @model_validator(mode="after")
    def _catch_up_fits(self) -> Self:
        if self.catch_up is None:
            return self
        api = type(self).catch_up_api
        if api is None:
            verify = getattr(self, "verify", "?")
            raise ValueError(
                f'catch_up is not available for verify = "{verify}": relay can fetch back '
                "from stripe, github, paddle and standard-webhooks (Svix); remove it"
            )
        problem = self.catch_up.problem(api, self.idempotency_key)
        if problem is not None:
            raise ValueError(problem)
        return self

    def secret_headers(self) -> frozenset[str]:
        """Lower-cased names of the headers that carry the source's secret itself (a token,
        a password), not a signature derived from it: relay stores them redacted and never
        forwards them. Schemes that authenticate that way override this."""
        return frozenset()


class SharedSecretSource(SourceBase):
    """A source verified with a shared secret: ``secret``, plus ``secrets`` accepted beside
    it during a rotation (any one may match)."""

    secret: SecretRef | None = None
    secrets: tuple[SecretRef, ...] = ()

    def keys(self, missing: str) -> tuple[bytes, ...]:
        """The secrets as bytes; ValueError(``missing``, which says what to set) if none."""
        found = tuple(s.value.encode() for s in (self.secret, *self.secrets) if s is not None)
        if not found:
            raise ValueError(missing)
        return found


def shown_url(url: str) -> str:
    """A URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def describe_errors(exc: ValidationError, schemes: tuple[str, ...] = ()) -> list[str]:
    """One line per pydantic error: the dotted key, what is wrong, and the fix.
    ``schemes``: the verify names, left out of keys (a source's union tag) and offered
    when a source names none of them."""
    return [_describe(error, schemes) for error in exc.errors()]


def _describe(error: Any, schemes: tuple[str, ...]) -> str:
    loc = [part for part in error["loc"] if part not in schemes]
    path = _dotted(loc) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{path}: unknown key; remove it or check its spelling"
    if kind == "missing":
        return f"{path}: required key is missing; add it"
    if kind == "union_tag_invalid":
        return f"{path}.verify: {error['input'].get('verify')!r} is not a known scheme; " + (
            "use one of " + ", ".join(schemes)
        )
    if kind == "union_tag_not_found":
        return f"{path}.verify: missing; set verify to one of " + ", ".join(schemes)
    message = error["msg"].removeprefix("Value error, ")
    if kind == "value_error":
        return f"{path}: {message}"
    return f"{path}: {message} (got {error.get('input')!r})"


def _dotted(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out

"""What the operator's commands need: the config's database path and admin API, and a
client for that API.

No source secret is resolved, so an operator can run the commands without the relay's
credentials. Read commands open the database read-only (``relay.store.open_reader``) and
work whether or not relay runs; commands that change something ask the running relay
through its admin API, so its scheduler acts at once (exit 3 when it is not running).
"""

from __future__ import annotations

import getpass
import http.client
import json
import os
import socket
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from relay.configtypes import describe_errors, resolve_secret
from relay.errors import RelayError
from relay.store import Reader, is_url, open_reader

NOT_RUNNING = 3
NOT_FOUND = 4


@dataclass(frozen=True)
class Context:
    """What the commands need from the config: no source secrets are resolved, so an
    operator can run them without the relay's credentials."""

    config: str
    database: Path
    admin_listen: str
    admin_token: str | None
    url: str | None = None  # storage.url: PostgreSQL instead of the file
    sources: tuple[str, ...] = ()  # as configured, so that those without traffic show too
    destinations: tuple[tuple[str, bool | None], ...] = ()  # name, its config's paused


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Named(_Part):
    name: str


class _Destination(_Named):
    paused: bool | None = None

    @field_validator("paused", mode="before")
    @classmethod
    def _only_a_flag(cls, value: object) -> bool | None:
        return value if isinstance(value, bool) else None  # relay itself says what is wrong


class _Storage(_Part):
    path: Path = Path("relay.db")
    url: str | None = None


class _Admin(_Part):
    listen: str = "127.0.0.1:8081"
    token: str | None = None


class OperatorSettings(BaseSettings):
    """The part of the config file the operator's commands read, from the same places as
    relay (the file, and ``RELAY_…`` variables over it, ``__`` between levels); everything
    else in the file is left unread, so no source secret is resolved."""

    model_config = SettingsConfigDict(
        env_prefix="RELAY_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    storage: _Storage = _Storage()
    admin: _Admin = _Admin()
    sources: list[_Named] = []
    destinations: list[_Destination] = []

    @classmethod
    def read(cls, path: Path | None) -> OperatorSettings:
        class _FromFile(cls):  # type: ignore[valid-type,misc]
            @classmethod
            def settings_customise_sources(
                cls,
                settings_cls: type[BaseSettings],
                init_settings: PydanticBaseSettingsSource,
                env_settings: PydanticBaseSettingsSource,
                dotenv_settings: PydanticBaseSettingsSource,
                file_secret_settings: PydanticBaseSettingsSource,
            ) -> tuple[PydanticBaseSettingsSource, ...]:
                if path is None:
                    return (init_settings, env_settings)
                return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, path))

        read: OperatorSettings = _FromFile()
        return read


def load_context(config: str, database: str | None, token: str | None = None) -> Context:
    """``token``: the person the commands act as (--token); else $RELAY_ADMIN_TOKEN, else
    the config's [admin] token (the person admin)."""
    from relay.sections import AdminConfig

    path: Path | None = Path(config)
    if not Path(config).exists():
        if database is None:
            raise RelayError(f"{config}: no such file; pass --config PATH (or --db PATH for reads)")
        path = None
    try:
        read = OperatorSettings.read(path)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RelayError(f"{config}: cannot read it ({exc})") from None
    except ValidationError as exc:
        raise RelayError(f"{config}: " + "; ".join(describe_errors(exc))) from None
    given = token or os.environ.get("RELAY_ADMIN_TOKEN")
    if given:
        token = given
    elif read.admin.token:
        try:
            admin = {"listen": read.admin.listen, "token": read.admin.token}
            resolved = AdminConfig.model_validate(admin).token
        except ValueError as exc:
            raise RelayError(f"admin.token: {exc}") from None
        token = resolved.value if resolved is not None else None
    url: str | None = database if database and is_url(database) else None
    if read.storage.url and database is None:
        try:
            url = resolve_secret(read.storage.url).value
        except ValueError as exc:
            raise RelayError(f"storage.url: {exc}") from None
    return Context(
        config,
        Path(database) if database else read.storage.path,
        read.admin.listen,
        token,
        url,
        tuple(s.name for s in read.sources),
        tuple((d.name, d.paused) for d in read.destinations),
    )


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except OSError:
            sock.close()  # nothing listens there: do not leak the socket
            raise
        self.sock = sock


class NotRunning(RelayError):
    pass


def admin_call(
    ctx: Context,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, Any]:
    if ctx.admin_token is None:
        raise RelayError(
            f"{ctx.config}: no admin token to act with: pass --token (a person's, from "
            "[[admin.users]]), set RELAY_ADMIN_TOKEN, or set [admin] token (and restart relay)"
        )
    listen = ctx.admin_listen
    conn: http.client.HTTPConnection
    if listen.startswith("unix:"):
        conn = _UnixConnection(listen[5:], timeout=timeout)
    else:
        host, _, port = listen.rpartition(":")
        conn = http.client.HTTPConnection(
            host.strip("[]") or "127.0.0.1", int(port), timeout=timeout
        )
    headers = {
        "Authorization": f"Bearer {ctx.admin_token}",
        "Content-Type": "application/json",
        "X-Relay-Actor": actor(),
        **(headers or {}),
    }
    try:
        conn.request(
            method, path, body=json.dumps(body) if body is not None else None, headers=headers
        )
        response = conn.getresponse()
        raw = response.read()
    except (ConnectionRefusedError, FileNotFoundError):
        raise NotRunning(
            f"relay is not running (nothing answers on {listen}); start it, then run this again"
        ) from None
    except OSError as exc:
        raise NotRunning(f"cannot reach relay's admin API on {listen}: {exc}") from None
    finally:
        conn.close()
    if response.status == 401:
        raise RelayError("relay refused the admin token (401): no person in its config has it")
    if response.status == 403:
        raise RelayError(f"relay refused: {_error_text(raw)} (403)")
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw.decode("utf-8", "replace")


def _error_text(raw: bytes) -> str:
    try:
        return str(json.loads(raw)["error"])
    except (ValueError, KeyError, TypeError):
        return raw.decode("utf-8", "replace")[:200]


def actor() -> str:
    """Who runs the command, for relay's audit trail: cli:user@host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"cli:{user}@{socket.gethostname()}"


@contextmanager
def database(ctx: Context) -> Iterator[Reader]:
    """People's reads on the config's database, read-only."""
    if ctx.url is not None:
        with open_reader(ctx.url) as reader:
            yield reader
        return
    if not ctx.database.exists():
        raise RelayError(f"{ctx.database}: no database here (storage.path in {ctx.config})")
    with open_reader(ctx.database) as reader:
        yield reader

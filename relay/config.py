"""The configuration: one TOML file, overridable by ``RELAY_…`` environment variables.

Every key is documented where it is defined (``Field(description=…)``) and in
``config.example.toml``; a test checks the two agree. Unknown keys are errors.
Load with ``load_config(path)``, which raises ``ConfigError`` with one line per problem,
each naming the key and the fix.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from relay.configtypes import LENIENT_SECRETS
from relay.configtypes import describe_errors as describe
from relay.errors import ConfigError, StorageError
from relay.normalize.mapping import MappingConfig, presets
from relay.pgdriver import driver
from relay.route import Route, RouteConfig
from relay.sections import (
    AdminConfig,
    AgentGroupConfig,
    AlertsConfig,
    DestinationConfig,
    LogConfig,
    RetentionConfig,
    ServerConfig,
    StorageConfig,
)
from relay.verify.schemes import SCHEMES, SourceConfig


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RELAY_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    server: ServerConfig = ServerConfig()
    storage: StorageConfig = StorageConfig()
    log: LogConfig = LogConfig()
    admin: AdminConfig = AdminConfig()
    retention: RetentionConfig = RetentionConfig()
    alerts: AlertsConfig = AlertsConfig()
    sources: list[SourceConfig] = []
    destinations: list[DestinationConfig] = []
    routes: list[RouteConfig] = []
    agents: list[AgentGroupConfig] = []
    mappings: list[MappingConfig] = []

    def mapping(self, name: str) -> MappingConfig | None:
        """A mapping by name: the config's own, else relay's preset."""
        for mapping in self.mappings:
            if mapping.name == name:
                return mapping
        return presets().get(name)

    def routes_for(self, source: str) -> tuple[Route, ...]:
        """The compiled routes of one source, in config order."""
        return tuple(Route.build(r) for r in self.routes if r.source == source)

    def ordering(self) -> dict[str, tuple[str, str | None]]:
        """The ordered destinations: {name: (mode, key rule)} (see route.ordering_keys)."""
        return {
            d.name: (d.ordering, d.ordering_key) for d in self.destinations if d.ordering != "none"
        }

    def masked(self) -> dict[str, Any]:
        """The effective config as plain data with every secret masked."""
        data: dict[str, Any] = json.loads(self.model_dump_json(by_alias=True))
        return data


def load_config(path: str | Path) -> Settings:
    """Read, validate and cross-check a config file; ConfigError on any problem."""
    path = Path(path)
    _check_toml(path)

    class _FromFile(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            # Environment first: RELAY_SERVER__LISTEN beats the file's [server] listen.
            return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, path))

    # Every problem at once, one line each: a missing secret must not hide an undefined
    # route destination until it is fixed. A config that fails to validate is read again
    # with unreadable secrets as placeholders, to find the problems of the other kinds.
    problems: list[str] = []
    settings: Settings | None = None
    try:
        settings = _FromFile()
    except ValidationError as exc:
        problems += describe_errors(exc)
        token = LENIENT_SECRETS.set(True)
        try:
            settings = _FromFile()
        except ValidationError:
            settings = None  # other problems of shape: said above
        finally:
            LENIENT_SECRETS.reset(token)
    if settings is not None:
        problems += reference_problems(settings)
        problems += driver_problems(settings)
        if not problems:
            problems += verifier_problems(settings)
    if problems or settings is None:
        raise ConfigError("\n".join(problems))
    return settings


def _check_toml(path: Path) -> None:
    # pydantic-settings silently ignores a missing file; an operator must hear about it.
    try:
        tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; pass --config PATH to a relay.toml") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def check_references(settings: Settings) -> None:
    """Names are unique and every route points at things that exist."""
    problems = reference_problems(settings)
    if problems:
        raise ConfigError("\n".join(problems))


def driver_problems(settings: Settings) -> list[str]:
    """A PostgreSQL URL needs the driver; check-config said OK and serve refused before."""
    if settings.storage.url is None:
        return []
    try:
        driver()
    except StorageError as exc:
        return [str(exc)]
    return []


def reference_problems(settings: Settings) -> list[str]:
    """Each name unique, each reference to something defined: one line per problem."""
    problems: list[str] = []
    for section in ("sources", "destinations", "agents"):
        seen: set[str] = set()
        for index, item in enumerate(getattr(settings, section)):
            if item.name in seen:
                problems.append(
                    f"{section}[{index}].name: {item.name!r} is used twice; give each a unique name"
                )
            seen.add(item.name)
    sources = {s.name for s in settings.sources}
    destinations = {d.name for d in settings.destinations}
    for index, route in enumerate(settings.routes):
        if route.source not in sources:
            problems.append(
                f"routes[{index}].source: {route.source!r} is not a defined source; add a "
                f"[[sources]] entry named {route.source!r} or fix the name"
            )
        for j, dest in enumerate(route.destinations):
            if dest not in destinations:
                problems.append(
                    f"routes[{index}].destinations[{j}]: {dest!r} is not a defined destination; "
                    f"add a [[destinations]] entry named {dest!r} or fix the name"
                )
    groups = {a.name for a in settings.agents}
    for index, destination in enumerate(settings.destinations):
        if destination.agent is not None and destination.agent not in groups:
            problems.append(
                f"destinations[{index}].agent: {destination.agent!r} is not a defined agent "
                f"group; add an [[agents]] entry named {destination.agent!r} or fix the name"
            )
        if destination.agent is not None and destination.proxy is not None:
            problems.append(
                f"destinations[{index}]: proxy and agent cannot be used together (the agent "
                "calls the URL from inside the private network); remove one"
            )
    for index, source in enumerate(settings.sources):
        if source.normalize is not None and settings.mapping(source.normalize) is None:
            known = sorted({*presets(), *(m.name for m in settings.mappings)})
            problems.append(
                f"sources[{index}].normalize: {source.normalize!r} is not a mapping; use one "
                f"of {', '.join(known)} or add a [[mappings]] entry named {source.normalize!r}"
            )
        if source.normalize is not None and source.split is not None:
            problems.append(
                f"sources[{index}].split: a source with normalize takes its split from the "
                "mapping; remove split (or set it in the mapping's [[mappings.items]])"
            )
    target = settings.alerts.destination
    if target is not None and target not in destinations:
        problems.append(
            f"alerts.destination: {target!r} is not a defined destination; add a "
            f"[[destinations]] entry named {target!r} or fix the name"
        )
    for name in settings.alerts.quiet:
        if name not in sources:
            problems.append(f"alerts.quiet.{name}: {name!r} is not a defined source; fix the name")
    alert = settings.storage.alert
    if alert is not None and alert not in destinations:
        problems.append(
            f"storage.alert: {alert!r} is not a defined destination; add it or fix the name"
        )
    for index, destination in enumerate(settings.destinations):
        alert = destination.circuit.alert if destination.circuit else None
        if alert is not None and (alert not in destinations or alert == destination.name):
            problems.append(
                f"destinations[{index}].circuit.alert: {alert!r} must name another "
                "[[destinations]] entry (where the pause notification goes)"
            )
    return problems


def build_verifiers(settings: Settings) -> None:
    """Build each verifier once, so a missing secret is found before the relay starts."""
    problems = verifier_problems(settings)
    if problems:
        raise ConfigError("\n".join(problems))


def verifier_problems(settings: Settings) -> list[str]:
    problems = []
    for index, source in enumerate(settings.sources):
        try:
            source.build_verifier()
        except ValueError as exc:
            problems.append(f"sources[{index}] ({source.name}): {exc}")
    return problems


def describe_errors(exc: ValidationError) -> list[str]:
    """One line per pydantic error of the config file: the dotted key, what is wrong, and
    the fix (relay.configtypes.describe_errors, knowing the schemes)."""
    return describe(exc, SCHEMES)

"""A provider's mapping, as data: where its items are and how each becomes a canonical event.

A mapping (``[[mappings]]`` in the config, or a preset from ``presets.toml``) has one or
more item kinds. Each kind says where its items are (``split``), when it applies (``when``),
and where each canonical field is, as *value rules*:

- ``json:/pointer`` (into the item), ``form:Field`` (a form body's field), ``header:Name``
  (the request's header), ``const:text``;
- ``a|b``: the first of them that gives a value;
- a list ``["json:/id", "json:/status"]``: the values joined with ``:`` (the id of an item
  that has no id of its own, or a provider type with its detail, ``failed:permanent``); it
  gives nothing without its first part, and parts missing at its end are left out.

``types`` maps the provider's type to a shared type (``relay.normalize.taxonomy``): the
longest match wins, segment by segment (``failed:permanent:suppress-bounce``, then
``failed:permanent``, then ``failed``), then ``*``; none: the item keeps its provider type
and has no shared type. ``channels`` does the same for the channel (``whatsapp:+1…``
matches ``whatsapp``).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator

from relay.configtypes import NAME_PATTERN, SplitPath, StrictModel
from relay.extract import MAX_VALUE_LENGTH, as_text, walk
from relay.instants import parse_instant
from relay.normalize.taxonomy import TYPES, rank_of

_SIMPLE = re.compile(r"^(json:(/.*)?|form:.+|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+|const:.*)$")


def _check_value_rule(raw: Any) -> tuple[str, ...]:
    parts = (raw,) if isinstance(raw, str) else raw
    if not isinstance(parts, list | tuple) or not parts:
        raise ValueError("a value rule is a string such as json:/id, or a list of them")
    for part in parts:
        if not isinstance(part, str):
            raise ValueError(f"{part!r} is not a value rule")
        for alternative in part.split("|"):
            if not _SIMPLE.match(alternative):
                raise ValueError(
                    f"{alternative!r} is not a value rule; write json:/pointer, form:Field, "
                    "header:Name or const:text (a|b: the first that gives a value)"
                )
    return tuple(parts)


ValueRule = Annotated[tuple[str, ...], BeforeValidator(_check_value_rule)]
OptionalRule = Annotated[
    tuple[str, ...] | None,
    BeforeValidator(lambda raw: None if raw is None else _check_value_rule(raw)),
]


class ItemKind(StrictModel):
    """One kind of item of a provider (WhatsApp: statuses, and inbound messages)."""

    split: SplitPath = Field(None, description="where the items are; unset: the body is one")
    when: OptionalRule = Field(None, description="applies only when this gives a value")
    id: OptionalRule = Field(None, description="the item's own id: its idempotency key")
    type: ValueRule = Field(description="the provider's type of the item")
    types: dict[str, str] = Field({}, description="provider type → shared type ('*': any)")
    subject: OptionalRule = Field(None, description="what a status is about (a message)")
    contact: OptionalRule = Field(None, description="the phone number or address")
    conversation: OptionalRule = Field(None, description="the provider's conversation id")
    occurred_at: OptionalRule = Field(None, description="the provider's time of the event")
    channel: str | None = Field(None, description="sms, whatsapp, email, chat, …")
    channel_from: OptionalRule = Field(None, description="a value whose prefix picks a channel")
    channels: dict[str, str] = Field({}, description="prefix of channel_from → channel")

    @field_validator("types")
    @classmethod
    def _shared_types(cls, value: dict[str, str]) -> dict[str, str]:
        for provider, shared in value.items():
            if shared not in TYPES:
                raise ValueError(
                    f"{provider} = {shared!r}: not a shared type; use one of " + ", ".join(TYPES)
                )
        return value


class MappingConfig(StrictModel):
    """``[[mappings]]``: a provider relay does not know, or a preset changed."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    provider: str | None = Field(None, description="the provider's name in events (default: name)")
    channel: str | None = Field(None, description="the channel of every item, unless a kind says")
    items: list[ItemKind] = Field(min_length=1, description="the kinds of item, first match wins")


@cache
def presets() -> dict[str, MappingConfig]:
    """The mappings relay ships (``presets.toml``), by name."""
    text = resources.files("relay.normalize").joinpath("presets.toml").read_text("utf-8")
    data = tomllib.loads(text)
    return {m["name"]: MappingConfig.model_validate(m) for m in data["mappings"]}


# -- reading one item ---------------------------------------------------------------------


def _scalar(value: Any) -> str | None:
    if isinstance(value, str):
        text = as_text(value.strip())
        return text[:MAX_VALUE_LENGTH] or None
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    text = as_text(str(value).strip())
    return text[:MAX_VALUE_LENGTH] or None


_JSON, _FORM, _HEADER, _CONST = range(4)
Step = tuple[int, Any]  # (kind, argument): pointer tokens, a field, a header, a constant


@cache
def _steps(part: str) -> tuple[Step, ...]:
    """One part of a value rule, parsed once: its alternatives, in order."""
    steps: list[Step] = []
    for alternative in part.split("|"):
        kind, _, arg = alternative.partition(":")
        if kind == "json":
            tokens = [t.replace("~1", "/").replace("~0", "~") for t in arg.split("/")[1:]]
            steps.append((_JSON, tuple(tokens) if arg else None))
        elif kind == "form":
            steps.append((_FORM, arg))
        elif kind == "header":
            steps.append((_HEADER, arg))
        else:
            steps.append((_CONST, arg or None))
    return tuple(steps)


def _one(part: str, item: Any, headers: MappingABC[str, str]) -> str | None:
    for kind, arg in _steps(part):
        if kind == _JSON:
            found = _scalar(item if arg is None else walk(item, arg))
        elif kind == _FORM:
            found = _scalar(item.get(arg)) if isinstance(item, dict) else None
        elif kind == _HEADER:
            found = _scalar(headers.get(arg))
        else:
            found = arg
        if found is not None:
            return found
    return None


def value(rule: tuple[str, ...] | None, item: Any, headers: MappingABC[str, str]) -> str | None:
    """A value rule applied to one item; None when it finds nothing. A list needs its first
    part (a message id, a type); parts missing at the end are left out, others are empty:
    ``["json:/event", "json:/type"]`` gives ``delivered`` or ``bounce:blocked``."""
    if rule is None:
        return None
    first = _one(rule[0], item, headers)
    if first is None or len(rule) == 1:
        return first
    parts = [first, *(_one(part, item, headers) for part in rule[1:])]
    while parts[-1] is None:
        parts.pop()
    return ":".join(part or "" for part in parts)


def lookup(table: dict[str, str], key: str | None) -> str | None:
    """The longest ``:``-segment prefix of ``key`` in ``table``, else its ``*``."""
    if key is not None:
        probe = key
        while True:
            if probe in table:
                return table[probe]
            cut = probe.rfind(":")
            if cut < 0:
                break
            probe = probe[:cut]
    return table.get("*")


@dataclass(frozen=True, slots=True)
class Reading:
    """What a mapping read from one item."""

    provider: str
    key: str | None
    provider_type: str | None
    type: str | None  # the shared type, None when the provider's has none
    rank: int | None
    subject: str | None
    contact: str | None
    conversation: str | None
    occurred_at: float | None
    channel: str | None


def read(
    mapping: MappingConfig, kind: ItemKind, item: Any, headers: MappingABC[str, str]
) -> Reading:
    provider_type = value(kind.type, item, headers)
    shared = lookup(kind.types, provider_type)
    channel = kind.channel or mapping.channel
    if kind.channels:
        channel = lookup(kind.channels, value(kind.channel_from, item, headers)) or channel
    stamp = value(kind.occurred_at, item, headers)
    return Reading(
        provider=mapping.provider or mapping.name,
        key=value(kind.id, item, headers),
        provider_type=provider_type,
        type=shared,
        rank=rank_of(shared),
        subject=value(kind.subject, item, headers),
        contact=value(kind.contact, item, headers),
        conversation=value(kind.conversation, item, headers),
        occurred_at=parse_instant(stamp) if stamp is not None else None,
        channel=channel,
    )

"""What the admin API accepts, parsed strictly at its edge.

Before, ``POST /api/replay`` read its body with ``json.loads`` and took what it found:
``"again": "no"`` (a non-empty string) meant again, ``"dry_run": "false"`` was true,
``delivery_id`` 2**70, a list where a name belongs and 10,000-deep JSON answered 500. Now
each body is one of these models (strict: a string is not a boolean, a number is a whole
number in range, text is bounded, unknown keys are refused), parsed by pydantic from the raw
bytes (its JSON parser bounds nesting), and a problem is a 400 that names the field.

``relay/openapi.json`` carries these models' JSON schemas (``components.schemas``);
``python -m relay.admin.inputs`` writes them there, and a test checks that they agree.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
)

MAX_ID = 2**63 - 1  # SQLite's and PostgreSQL's largest integer


def _no_nul(text: str) -> str:
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    return text


def _absolute(path: str) -> str:
    if not path.startswith("/"):
        raise ValueError("must be an absolute path (starting with /)")
    return path


Name = Annotated[str, StringConstraints(max_length=200), AfterValidator(_no_nul)]
Text = Annotated[str, StringConstraints(max_length=1000), AfterValidator(_no_nul)]
# Absolute: relative to what? relay's working directory is / under systemd and anything
# elsewhere, so the CLI resolves the path before it asks (relay backup).
FilePath = Annotated[
    str,
    StringConstraints(min_length=1, max_length=4096),
    AfterValidator(_no_nul),
    AfterValidator(_absolute),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 4096, "pattern": "^/"}),
]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class ReplayFilter(_Body):
    """Which events, by what they are (each field narrows)."""

    source: Name | None = None
    type: Name | None = Field(
        None, description="event type: a prefix (invoice) or a glob (invoice.*)"
    )
    since: Name | None = Field(
        None, description="received since: RFC 3339, Unix seconds or a duration ago (2h)"
    )
    until: Name | None = None
    error: Text | None = Field(None, description="dead ones whose last error has this text")
    key: Text | None = Field(None, description="the event's idempotency key")
    text: Text | None = Field(None, description="in the event's body (any case)")
    state: Literal["dead", "delivered", "unrouted", "any"] | None = None
    destination: Name | None = None


class ReplayRequest(_Body):
    """One of event_id, delivery_id or filter, and where and how."""

    event_id: Name | None = Field(
        None,
        description="one event, to every destination it went to (or where the routes send "
        "it now, if none)",
    )
    delivery_id: int | None = Field(
        None, ge=1, le=MAX_ID, description="one delivery, whatever its state"
    )
    filter: ReplayFilter | None = None
    destination: Name | None = Field(
        None,
        description="with state dead or delivered: only those of this destination; with "
        "event_id, state unrouted or any: send them there",
    )
    state: Literal["dead", "delivered", "unrouted", "any"] | None = Field(
        None, description="default dead"
    )
    again: bool = Field(False, description="also dead deliveries a replay already repeats")
    dry_run: bool = Field(False, description="count only, with a sample")


class CatchUpRequest(_Body):
    """A window of one source to fetch back from its provider's API."""

    source: Name = Field(description="a source with [sources.catch_up]")
    since: Name = Field(description="RFC 3339, Unix seconds or a duration ago (2h)")
    until: Name | None = Field(None, description="default: now")
    dry_run: bool = Field(False, description="count only: store nothing, ask for nothing")


class BackupRequest(_Body):
    path: FilePath = Field(description="where relay writes the copy, on its own machine")


MODELS: tuple[type[_Body], ...] = (ReplayRequest, CatchUpRequest, BackupRequest)
M = TypeVar("M", bound=_Body)


class InputError(ValueError):
    """A request the API refuses with 400; ``str()`` names the field."""


def parse(model: type[M], raw: bytes) -> M:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        error = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(part) for part in error["loc"]) or "the body"
        raise InputError(f"{where}: {error['msg']}"[:300]) from None


def header(value: str | None, name: str, limit: int = 255) -> str | None:
    """A header the API keeps (Idempotency-Key, X-Relay-Actor): printable ASCII, bounded;
    InputError otherwise (aiohttp hands other bytes over as surrogates)."""
    if value is None or value == "":
        return None
    if len(value) > limit or not (value.isascii() and value.isprintable()):
        raise InputError(f"{name} must be printable ASCII, at most {limit} characters")
    return value


def limit(value: str | None, default: int, most: int) -> int:
    """A ``limit`` query parameter: a whole number from 1 to ``most``."""
    if value is None or value == "":
        return default
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= most:
        raise InputError(f"limit must be a whole number from 1 to {most}")
    return int(value)


def schemas() -> dict[str, Any]:
    """The models as OpenAPI components (``#/components/schemas/…``)."""
    found: dict[str, Any] = {}
    for model in MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        found.update(schema.pop("$defs", {}))
        found[model.__name__] = schema
    return found


if __name__ == "__main__":  # write the schemas into relay/openapi.json
    target = Path(__file__).parent.parent / "openapi.json"
    document = json.loads(target.read_text())
    document.setdefault("components", {})["schemas"] = schemas()
    target.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {len(document['components']['schemas'])} schemas to {target}", file=sys.stderr)

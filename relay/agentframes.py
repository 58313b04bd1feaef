"""The frames an agent sends to relay, parsed strictly at the boundary.

An agent holds a token, but what it sends is still input from outside: before this module a
result with ``started_at`` 1e308, ``status`` 2**70, ``duration_ms`` NaN, an excerpt with a
NUL, or headers that were not JSON was stored as it came (and then broke the event page for
good, or could not be stored at all, so the lease expired and the attempt went uncounted);
a hello that was a list, a string, 1e400 or deeply nested JSON dropped the connection with
a traceback. Every frame is now one of these models (strict types: a string is not a
number, a number is finite and in range, text is bounded and has no NUL), or a
``FrameError`` that names the field. Unknown keys are ignored, so a newer agent can add
some; unknown frame types are errors.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

MAX_CREDITS = 1000
MAX_DURATION_MS = 86_400_000.0  # a day: no attempt lasts longer
LEASE = re.compile(r"\d{1,19}:\d{1,19}")


class FrameError(ValueError):
    """A frame that is not what the protocol says; ``str()`` names the field."""


def _no_nul(text: str) -> str:
    if "\x00" in text:
        raise ValueError("text must not contain NUL characters")
    return text


def _pairs(text: str) -> str:
    """Response headers as the agent keeps them: a JSON list of [name, value] strings."""
    try:
        pairs = json.loads(text)
    except (ValueError, RecursionError):
        raise ValueError("headers must be a JSON list of [name, value] pairs") from None
    if not isinstance(pairs, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in pairs
    ):
        raise ValueError("headers must be a JSON list of [name, value] pairs")
    return text


Line = Annotated[str, StringConstraints(max_length=200), AfterValidator(_no_nul)]
Message = Annotated[str, StringConstraints(max_length=2000), AfterValidator(_no_nul)]
Excerpt = Annotated[str, StringConstraints(max_length=65_536), AfterValidator(_no_nul)]
Lease = Annotated[str, StringConstraints(pattern=LEASE.pattern, max_length=40)]
Headers = Annotated[str, StringConstraints(max_length=65_536), AfterValidator(_pairs)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class _Frame(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class Hello(_Frame):
    type: Literal["hello"]
    credits: int = Field(1, ge=1, le=MAX_CREDITS)
    version: Line | None = None


class Result(_Frame):
    type: Literal["result"]
    lease: Lease
    status: int | None = Field(None, ge=100, le=599)
    error: Message | None = None
    excerpt: Excerpt | None = None
    headers: Headers | None = None
    retry_after: Line | None = None
    duration_ms: Finite = Field(0.0, ge=0.0, le=MAX_DURATION_MS)
    started_at: Finite | None = Field(None, ge=0.0)
    permanent: bool = False


_FRAME: TypeAdapter[Hello | Result] = TypeAdapter(
    Annotated[Hello | Result, Field(discriminator="type")]
)


def parse(frame: str | bytes) -> Hello | Result:
    """The frame as its model, or FrameError naming what is wrong (never the input)."""
    try:
        return _FRAME.validate_json(frame)
    except ValidationError as exc:
        raise FrameError(_first(exc)) from None


def lease_of(frame: str | bytes) -> str | None:
    """The lease a malformed result names, if it names one well: that attempt is then
    recorded as failed by the agent instead of waiting for its lease to run out."""
    try:
        data = json.loads(frame)
    except (ValueError, RecursionError):
        return None
    lease = data.get("lease") if isinstance(data, dict) else None
    return lease if isinstance(lease, str) and LEASE.fullmatch(lease) else None


def _first(exc: ValidationError) -> str:
    error = exc.errors(include_input=False, include_url=False)[0]
    where = ".".join(str(part) for part in error["loc"]) or "frame"
    return f"{where}: {error['msg']}"[:300]

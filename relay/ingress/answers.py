"""How a request to /in/<source> ends: an ``Answer`` (the response and the outcome it is
counted under), or a ``Refusal`` that is also logged and kept in the rejections table."""

from __future__ import annotations

import json
from dataclasses import dataclass

from aiohttp import web

from relay import encoding
from relay.extract import as_text
from relay.records import Stored
from relay.verify.base import Handshake

# The outcome of an answer a verifier wrote (a handshake's) that is not a 2xx, by status.
OUTCOMES = {
    401: "rejected",
    403: "rejected",
    429: "limited",
    503: "unavailable",
    507: "unavailable",
    413: "too_large",
    408: "timeout",
    431: "too_large",
    400: "malformed",
    415: "malformed",
}


@dataclass(frozen=True, slots=True)
class Answer:
    """The response, and its outcome in relay_requests_total (accepted, duplicate,
    handshake, rejected, limited, too_large, malformed, timeout, unavailable, other)."""

    response: web.Response
    outcome: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """401 or 403, with the reason the client is told and the rejections table keeps."""

    status: int
    reason: str
    client: str | None = None  # the client's address (through trusted proxies)


def json_response(status: int, payload: dict[str, object], **headers: str) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(payload).encode(),
        content_type="application/json",
        headers=headers or None,
    )


def error(status: int, outcome: str, text: str, **headers: str) -> Answer:
    return Answer(json_response(status, {"error": text}, **headers), outcome)


def too_large(max_body: int) -> Answer:
    return error(413, "too_large", f"body larger than {max_body} bytes", Connection="close")


def unsupported_coding(coding: str) -> Answer:
    known = ", ".join(encoding.KNOWN)
    text = f"Content-Encoding {as_text(coding)!r} is not supported; send one of {known}"
    return error(415, "malformed", text, **{"Accept-Encoding": known})


def of_handshake(shake: Handshake, headers: dict[str, str] | None = None) -> web.Response:
    if shake.status == 204:
        return web.Response(status=204, headers=headers)
    return web.Response(
        status=shake.status, body=shake.body, content_type=shake.content_type, headers=headers
    )


def handshake(shake: Handshake) -> Answer:
    """A verifier's own answer (a subscription check, a ping): neither stored nor sent on."""
    outcome = "handshake" if 200 <= shake.status < 300 else OUTCOMES.get(shake.status, "other")
    return Answer(of_handshake(shake), outcome)


def identity(stored: Stored) -> dict[str, str]:
    """The headers of every answer for a stored event, whatever body its provider wants."""
    headers = {"X-Relay-Event-Id": stored.event_id}
    if stored.duplicate:
        headers["X-Relay-Duplicate"] = "true"
    return headers


def stored_outcome(stored: Stored) -> str:
    return "duplicate" if stored.duplicate else "accepted"


def accepted(stored: Stored, batch: bool = False) -> Answer:
    flag = "true" if stored.duplicate else "false"
    items = ""
    if stored.items or batch:  # a batch says how many items it held, none included
        items = f', "items": {stored.items}, "new_items": {stored.new_items}'
    body = f'{{"id": "{stored.event_id}", "duplicate": {flag}{items}}}'.encode()
    response = web.Response(body=body, content_type="application/json", headers=identity(stored))
    return Answer(response, stored_outcome(stored))


def error_of(response: web.Response) -> str:
    try:
        return str(json.loads(response.body)["error"])  # type: ignore[arg-type]
    except (ValueError, KeyError, TypeError):
        return "refused"

"""Rules that pull the idempotency key and the event type out of a request.

A rule is ``header:Name`` (that header's value), ``json:/pointer`` (RFC 6901 pointer into a
JSON body), ``form:field`` (a field of a form-encoded body, as Twilio sends) or ``none``.
Pure functions: they take values and return values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

MAX_VALUE_LENGTH = 512  # keys and types are indexed: keep them short


@dataclass(slots=True)
class Parsed:
    """The body parsed as JSON at most once per request, shared by every rule."""

    body: bytes
    _done: bool = False
    _value: Any = field(default=None)

    _form: dict[str, list[str]] | None = None

    def form(self) -> dict[str, list[str]]:
        if self._form is None:
            try:
                text = self.body.decode("utf-8", "replace")
                self._form = parse_qs(text, keep_blank_values=True, max_num_fields=1000)
            except ValueError:
                self._form = {}
        return self._form

    def json(self) -> Any:
        if not self._done:
            self._done = True
            try:
                self._value = json.loads(self.body)
            except (ValueError, RecursionError):
                self._value = None
        return self._value


def resolve_pointer(document: Any, pointer: str) -> Any:
    """The value at an RFC 6901 JSON pointer, or None where the path does not exist."""
    if pointer in ("", "/"):
        return document if pointer == "" else _step(document, "")
    if not pointer.startswith("/"):
        return None
    current = document
    for token in pointer[1:].split("/"):
        current = _step(current, token.replace("~1", "/").replace("~0", "~"))
        if current is None:
            return None
    return current


def _step(node: Any, token: str) -> Any:
    if isinstance(node, dict):
        return node.get(token)
    if isinstance(node, list) and token.isdigit() and (len(token) == 1 or token[0] != "0"):
        index = int(token)
        return node[index] if index < len(node) else None
    return None


def extract(rule: str | None, headers: Mapping[str, str], parsed: Parsed) -> str | None:
    """Apply one rule; None when the rule is ``none`` or finds nothing usable."""
    if rule is None or rule == "none":
        return None
    kind, _, arg = rule.partition(":")
    if kind == "header":
        value: Any = headers.get(arg)
    elif kind == "form":
        value = parsed.form().get(arg, [None])[0]
    else:
        value = resolve_pointer(parsed.json(), arg)
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text[:MAX_VALUE_LENGTH] or None

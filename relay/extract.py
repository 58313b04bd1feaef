"""Rules that pull the idempotency key and the event type out of a request.

A rule is ``header:Name`` (that header's value), ``json:/pointer`` (RFC 6901 pointer into a
JSON body), ``form:field`` (a field of a form-encoded body, as Twilio sends) or ``none``.
Pure functions: they take values and return values.

What they return is always text the database can store: a request can carry bytes that are
not UTF-8 in a header (aiohttp hands them over as lone surrogates) or a lone surrogate
escaped in JSON (``"\\ud800"``). ``as_text`` writes those as escapes instead, so such an
event is stored (raw body and headers byte for byte) rather than failing its transaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
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


def as_text(value: str) -> str:
    """``value`` if it is valid Unicode; otherwise each byte that was not UTF-8 as ``\\xe9``
    and each other lone surrogate as ``\\ud800``: the same input always gives the same text,
    so an escaped idempotency key still finds its duplicates."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "".join(_escape(c) for c in value)
    return value


def _escape(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte aiohttp (surrogateescape) could not decode
        return f"\\x{code - 0xDC00:02x}"
    if 0xD800 <= code <= 0xDFFF:
        return f"\\u{code:04x}"
    return char


def resolve_pointer(document: Any, pointer: str) -> Any:
    """The value at an RFC 6901 JSON pointer, or None where the path does not exist."""
    if pointer in ("", "/"):
        return document if pointer == "" else _step(document, "")
    if not pointer.startswith("/"):
        return None
    return walk(document, [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")])


def walk(node: Any, tokens: Sequence[str]) -> Any:
    """The value at a pointer already split into its (unescaped) tokens, or None."""
    for token in tokens:
        node = _step(node, token)
        if node is None:
            return None
    return node


def _step(node: Any, token: str) -> Any:
    if isinstance(node, dict):
        return node.get(token)
    if isinstance(node, list) and token.isdigit() and (len(token) == 1 or token[0] != "0"):
        index = int(token)
        return node[index] if index < len(node) else None
    return None


def extract(
    rule: str | None,
    headers: Mapping[str, str],
    parsed: Parsed,
    limit: int | None = MAX_VALUE_LENGTH,
) -> str | None:
    """Apply one rule; None when the rule is ``none`` or finds nothing usable. The text is
    cut at ``limit`` characters; an idempotency key is taken whole (``limit=None``) and
    refused when too long, since two keys cut to one would drop an event as a duplicate."""
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
    text = as_text(str(value).strip())
    return (text if limit is None else text[:limit]) or None

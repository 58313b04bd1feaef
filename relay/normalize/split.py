"""The items of a request. Pure.

A split path is ``json:/`` (the body is an array: each element is an item) or a JSON
pointer with ``*`` standing for every element of a list
(``json:/entry/*/changes/*/value/statuses``); where the path ends at a list, each element
is an item, and where it ends at an object, that object is one. A form body (Twilio) is
one item: its fields, each with its first value.
"""

from __future__ import annotations

from typing import Any

from relay.extract import Parsed

MAX_ITEMS = 10_000  # items one request may carry; a request with more is refused (413)


class TooManyItems(ValueError):
    """A batch with more items than relay splits from one request. Refused whole, so the
    sender retries or alerts: relay never answers 2xx for items it did not store (it used
    to keep the first 10,000 of a 100,000-item batch and say 200)."""

    def __init__(self) -> None:
        super().__init__(
            f"the request carries more than {MAX_ITEMS} items; relay splits at most "
            f"{MAX_ITEMS} from one request: send smaller batches"
        )


def items_at(document: Any, path: str) -> list[Any]:
    """The items at a split path, in document order."""
    pointer = path.removeprefix("json:")
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:] if t]
    nodes = [document]
    for token in tokens:
        following: list[Any] = []
        for node in nodes:
            if token == "*":  # noqa: S105 - a wildcard, not a password
                if isinstance(node, list):
                    following.extend(node)
            elif isinstance(node, dict):
                if token in node:
                    following.append(node[token])
            elif isinstance(node, list) and token.isdigit():
                index = int(token)
                if index < len(node):
                    following.append(node[index])
        nodes = following
    found: list[Any] = []
    for node in nodes:
        if isinstance(node, list):
            found.extend(node)
        elif node is not None:
            found.append(node)
    if len(found) > MAX_ITEMS:
        raise TooManyItems
    return found


def whole(parsed: Parsed, content_type: str | None) -> Any:
    """The body as one item: its JSON, or a form's fields (first values)."""
    if content_type is not None and "x-www-form-urlencoded" in content_type.lower():
        return {name: values[0] for name, values in parsed.form().items() if values}
    return parsed.json()

"""Words for people: counts with their nouns ("1 delivery", "3 deliveries")."""

from __future__ import annotations


def plural(count: int, one: str, many: str | None = None) -> str:
    """``1 event``, ``2 events``; ``many`` where adding an s is wrong."""
    return f"{count} {one if count == 1 else (many or one + 's')}"

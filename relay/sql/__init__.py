"""The SQL of relay, kept in .sql files: schema, numbered migrations and named queries."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def read(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


@cache
def queries() -> dict[str, str]:
    """The ``-- name: x`` blocks of queries.sql, by name."""
    text = read("queries.sql")
    parts = _NAME.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def migrations() -> list[tuple[int, str, str]]:
    """(number, file name, SQL) for every migration, in order."""
    folder = resources.files(__package__).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name[:4]), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)

"""The SQL of relay, kept in .sql files: schema, numbered migrations and named queries, one
set per database (SQLite here; PostgreSQL in ``postgresql/``)."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


FOLDERS = {"sqlite": None, "postgresql": "postgresql"}  # each database's files (None: here)


def _folder(dialect: str) -> Any:
    root, folder = resources.files(__package__), FOLDERS[dialect]
    return root if folder is None else root.joinpath(folder)


def read(name: str, dialect: str = "sqlite") -> str:
    text: str = _folder(dialect).joinpath(name).read_text(encoding="utf-8")
    return text


@cache
def queries(dialect: str = "sqlite") -> dict[str, str]:
    """The ``-- name: x`` blocks of queries.sql, by name."""
    text = read("queries.sql", dialect)
    parts = _NAME.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def migrations(dialect: str = "sqlite") -> list[tuple[int, str, str]]:
    """(number, file name, SQL) for every migration, in order."""
    folder = _folder(dialect).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name[:4]), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)

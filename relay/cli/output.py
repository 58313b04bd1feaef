"""How the commands print: tables as wide as the terminal (whole values in a pipe or a
file), JSON with ``--json``, CSV with ``--csv``."""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from relay.text import plural as plural  # re-exported for the commands

WIDTH = 80


def when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return datetime.fromtimestamp(stamp, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def terminal_width() -> int | None:
    """The terminal's width when printing to one; None (cut nothing) in a pipe or a file,
    where a script wants whole ids and errors."""
    if not sys.stdout.isatty():
        return None
    return shutil.get_terminal_size((WIDTH, 24)).columns


def fit(line: str) -> str:
    """A line cut to the terminal's width; whole in a pipe or a file."""
    width = terminal_width()
    return line if width is None or len(line) <= width else line[: width - 1] + "…"


def table(
    rows: Sequence[Sequence[Any]], headers: Sequence[str], width: int | bool | None = True
) -> str:
    """Columns sized to their content; on a terminal the widest ones cut (with …) to fit
    its width (``width``: a number of columns, None for no limit, True for the terminal's)."""
    limit = terminal_width() if width is True else width or None
    cells = [[("-" if v is None else str(v)).replace("\n", " ") for v in row] for row in rows]
    sizes = [len(h) for h in headers]
    for row in cells:
        sizes = [max(s, len(v)) for s, v in zip(sizes, row, strict=True)]
    while limit is not None and sum(sizes) + 2 * (len(sizes) - 1) > limit and max(sizes) > 8:
        widest = sizes.index(max(sizes))
        sizes[widest] -= 1

    def line(values: Sequence[str]) -> str:
        out = []
        for value, size in zip(values, sizes, strict=True):
            text = value if len(value) <= size else value[: size - 1] + "…"
            out.append(text.ljust(size))
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), *(line(r) for r in cells)])


def emit(
    args: argparse.Namespace,
    payload: Any,
    text: str,
    rows: tuple[Sequence[str], Sequence[Sequence[Any]]] | None = None,
) -> None:
    """Print the result: ``--json`` the payload, ``--csv`` the rows (headers first), else
    the text."""
    if getattr(args, "csv", False) and rows is not None:
        headers, body = rows
        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow(headers)
        out.writerows([["" if v is None else v for v in row] for row in body])
        return
    print(json.dumps(payload, indent=2) if args.json else text)

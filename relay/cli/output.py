"""How the commands print: tables that fit 80 columns, or JSON with ``--json``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

WIDTH = 80


def when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return datetime.fromtimestamp(stamp, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str], width: int = WIDTH) -> str:
    """Columns sized to their content, the widest ones cut (with …) to fit ``width``."""
    cells = [[("-" if v is None else str(v)).replace("\n", " ") for v in row] for row in rows]
    sizes = [len(h) for h in headers]
    for row in cells:
        sizes = [max(s, len(v)) for s, v in zip(sizes, row, strict=True)]
    while sum(sizes) + 2 * (len(sizes) - 1) > width and max(sizes) > 8:
        widest = sizes.index(max(sizes))
        sizes[widest] -= 1

    def line(values: Sequence[str]) -> str:
        out = []
        for value, size in zip(values, sizes, strict=True):
            text = value if len(value) <= size else value[: size - 1] + "…"
            out.append(text.ljust(size))
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), *(line(r) for r in cells)])


def emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    print(json.dumps(payload, indent=2) if args.json else text)

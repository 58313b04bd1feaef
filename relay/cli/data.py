"""``relay stats`` and ``relay backup``: the database as a whole."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from relay.cli.context import Context, database
from relay.cli.output import emit, table


def cmd_stats(ctx: Context, args: argparse.Namespace) -> int:
    with database(ctx) as reader:
        data = reader.stats()
    sources = table(
        [
            (n, s["events_last_hour"], s.get("rejected_last_hour", 0))
            for n, s in sorted(data["sources"].items())
        ],
        ("SOURCE", "EVENTS (1 H)", "REJECTED (1 H)"),
    )
    destinations = table(
        [
            (
                n,
                d["pending"],
                d["dead"],
                d["delivered_last_hour"],
                d["oldest_pending_seconds"],
                "yes" if d["paused"] else "no",
            )
            for n, d in data["destinations"].items()
        ],
        ("DESTINATION", "PENDING", "DEAD", "DELIVERED/1H", "OLDEST (S)", "PAUSED"),
    )
    emit(args, data, f"{sources}\n\n{destinations}")
    return 0


def cmd_backup(ctx: Context, args: argparse.Namespace) -> int:
    """An online, consistent copy, taken while relay runs (it does not block it)."""
    target = Path(args.path)
    with database(ctx) as reader:
        size = reader.backup(target)
    emit(args, {"path": str(target), "bytes": size}, f"{target}: {size} bytes, consistent copy")
    return 0


def add(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("stats", parents=[common], help="per source and destination counts")
    p.set_defaults(command_run=cmd_stats)
    p = sub.add_parser("backup", parents=[common], help="a consistent copy of the database")
    p.add_argument("path", metavar="PATH")
    p.set_defaults(command_run=cmd_backup)

"""``relay stats`` and ``relay backup``: the database as a whole."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from relay.cli.context import Context, NotRunning, actor, admin_call, database
from relay.cli.output import emit, table, when
from relay.errors import RelayError
from relay.store import record_offline, since_to_time


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
    text = f"{sources}\n\n{destinations}"
    groups = _agents(ctx)  # live state: only the running relay knows it
    if groups:
        data["agents"] = groups
        text += "\n\n" + table(
            [
                (name, g["connected"], g["free"], "-" if g["connected"] else g["offline_seconds"])
                for name, g in sorted(groups.items())
            ],
            ("AGENT GROUP", "CONNECTED", "FREE CREDITS", "OFFLINE (S)"),
        )
    emit(args, data, text)
    return 0


def _agents(ctx: Context) -> dict[str, Any]:
    """The agent groups' live state from the running relay; empty if it cannot say."""
    if ctx.admin_token is None:
        return {}
    try:
        status, answer = admin_call(ctx, "GET", "/api/agents")
    except RelayError:
        return {}
    groups = answer.get("agents", {}) if status == 200 and isinstance(answer, dict) else {}
    return dict(groups)


def cmd_backup(ctx: Context, args: argparse.Namespace) -> int:
    """An online, consistent copy (it does not block relay). With relay running, relay
    writes it and records it in the audit trail; otherwise this command does both."""
    target = Path(args.path).resolve()
    try:
        status, answer = admin_call(ctx, "POST", "/api/backup", {"path": str(target)})
    except (NotRunning, RelayError) as exc:
        if not isinstance(exc, NotRunning) and ctx.admin_token is not None:
            raise
        with database(ctx) as reader:
            size = reader.backup(target)  # on PostgreSQL: an error that says to use pg_dump
        recorded = record_offline(ctx.database, "backup", str(target), {"bytes": size}, actor())
        if not recorded:
            print(
                "relay: the backup is not in the audit trail (relay holds the database)",
                file=sys.stderr,
            )
    else:
        if status != 200:
            error = answer.get("error", answer) if isinstance(answer, dict) else answer
            raise RelayError(str(error))
        size = int(answer["bytes"])
    emit(args, {"path": str(target), "bytes": size}, f"{target}: {size} bytes, consistent copy")
    return 0


def cmd_audit(ctx: Context, args: argparse.Namespace) -> int:
    since, until = since_to_time(args.since), since_to_time(args.until)
    with database(ctx) as reader:
        rows = reader.audit(since, args.limit, until)
    headers = ("WHEN (UTC)", "ACTOR", "ACTION", "TARGET", "RESULT")
    cells = [
        (
            when(r["at"]),
            r["actor"],
            r["action"],
            r["target"],
            json.dumps(r["result"], separators=(",", ":")),
        )
        for r in rows
    ]
    emit(args, rows, table(cells, headers), (headers, cells))
    return 0


def add(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("stats", parents=[common], help="per source and destination counts")
    p.set_defaults(command_run=cmd_stats)
    p = sub.add_parser("backup", parents=[common], help="a consistent copy of the database")
    p.add_argument("path", metavar="PATH")
    p.set_defaults(command_run=cmd_backup)
    p = sub.add_parser("audit", parents=[common], help="operator actions, newest first")
    p.add_argument("--since", help="a duration ago (2h) or a time")
    p.add_argument("--until", help="before: a duration ago or a time")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--csv", action="store_true", help="CSV output, headers first")
    p.set_defaults(command_run=cmd_audit)

"""``relay stats`` and ``relay backup``: the database as a whole."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from relay.cli.context import Context, NotRunning, actor, admin_call, database
from relay.cli.output import emit, table, when
from relay.errors import RelayError
from relay.records import since_to_time
from relay.store import rollup
from relay.store.sqlite.files import record_offline


def cmd_stats(ctx: Context, args: argparse.Namespace) -> int:
    """Per source and destination: what happened in a time range (the last hour unless
    --since/--until say otherwise, from the per-minute rollup, which keeps a week) and the
    backlog now."""
    now = time.time()
    since = since_to_time(args.since) if args.since else now - 3600
    until = since_to_time(args.until) if args.until else now
    if since is None or until is None:  # given, so parsed: never None
        raise AssertionError
    with database(ctx) as reader:
        data = reader.stats()
        totals = reader.totals(since, until)
    data["range"] = {"since": since, "until": until}
    sources = _source_stats(ctx, data, totals)
    _destination_stats(ctx, data, totals)
    source_rows = [(n, s["received"], s["rejected"]) for n, s in sources.items()]
    dest_rows = [
        (
            n,
            d["delivered"],
            d["died"],
            d["retried"],
            d["p95_seconds"],
            d["pending"],
            d["dead"],
            d["oldest_pending_seconds"],
            "yes" if d["paused"] else "no",
        )
        for n, d in sorted(data["destinations"].items())
    ]
    text = table(source_rows, ("SOURCE", "RECEIVED", "REJECTED"))
    text += "\n\n" + table(dest_rows, STATS_DESTINATION_COLUMNS)
    span = (
        f"from {when(since)} until {when(until)} UTC" if args.since or args.until else "last hour"
    )
    text = f"Counts: {span} (pending and dead: now).\n\n" + text
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
    csv_rows = [
        ("source", n, s["received"], s["rejected"], *[None] * 8) for n, s in sources.items()
    ]
    csv_rows += [("destination", r[0], None, None, *r[1:]) for r in dest_rows]
    emit(args, data, text, (STATS_CSV_COLUMNS, csv_rows))
    return 0


STATS_DESTINATION_COLUMNS = (
    "DESTINATION",
    "DELIVERED",
    "DIED",
    "RETRIED",
    "P95 S",
    "PENDING",
    "DEAD",
    "OLDEST S",
    "PAUSED",
)
STATS_CSV_COLUMNS = (
    "kind",
    "name",
    "received",
    "rejected",
    "delivered",
    "died",
    "retried",
    "p95_seconds",
    "pending",
    "dead",
    "oldest_pending_seconds",
    "paused",
)


def _source_stats(
    ctx: Context, data: dict[str, Any], totals: dict[tuple[str, str], dict[str, int]]
) -> dict[str, dict[str, Any]]:
    """Every configured source and every one with traffic: received and refused in the
    range (``data["sources"]`` is replaced by them)."""
    configured = set(ctx.sources)
    names = sorted({n for k, n in totals if k == rollup.SOURCE} | set(data["sources"]) | configured)
    sources: dict[str, dict[str, Any]] = {}
    for n in names:
        t = totals.get((rollup.SOURCE, n), {})
        sources[n] = {
            **data["sources"].get(n, {}),  # events_last_hour, … (as before)
            "received": t.get("received", 0),
            "rejected": t.get("rejected", 0),
        }
    data["sources"] = sources
    return sources


def _destination_stats(
    ctx: Context, data: dict[str, Any], totals: dict[tuple[str, str], dict[str, int]]
) -> None:
    """Every configured destination (traffic or not) and every one with traffic: its
    counts and p95 in the range, added to ``data["destinations"]``."""
    for name, paused in ctx.destinations:
        data["destinations"].setdefault(
            name, {"pending": 0, "dead": 0, "oldest_pending_seconds": None, "paused": bool(paused)}
        )
    dests = sorted({n for k, n in totals if k == rollup.DESTINATION} | set(data["destinations"]))
    for n in dests:
        t = totals.get((rollup.DESTINATION, n), {})
        histogram = [t.get(f"lat{i}", 0) for i in range(len(rollup.LATENCY_BOUNDS) + 1)]
        d = data["destinations"].setdefault(
            n, {"pending": 0, "dead": 0, "oldest_pending_seconds": None, "paused": False}
        )
        d.update(
            delivered=t.get("delivered", 0),
            died=t.get("dead", 0),
            retried=t.get("retried", 0),
            p95_seconds=rollup.p95(histogram),
        )


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
    p.add_argument("--since", help="from: a duration ago (24h) or a time (default: 1h ago)")
    p.add_argument("--until", help="until: a duration ago or a time (default: now)")
    p.add_argument("--csv", action="store_true", help="CSV output, headers first")
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

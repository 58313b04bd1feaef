"""``relay events``, ``relay show``, ``relay tail``: what came in."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from relay import filters
from relay.cli.context import NOT_FOUND, Context, database
from relay.cli.output import emit, fit, table, when
from relay.records import STATUSES


def cmd_events(ctx: Context, args: argparse.Namespace) -> int:
    f = filters.events(filters.from_flags(args, "events"), args.limit)
    with database(ctx) as reader:
        rows = reader.events(f)
    headers = ("ID", "RECEIVED (UTC)", "SOURCE", "TYPE", "DELIVERIES")
    cells = [
        (
            r["id"],
            when(r["received_at"]),
            r["source"],
            r["event_type"],
            " ".join(f"{d}:{s}" for d, s in r["deliveries"].items()) or "unrouted",
        )
        for r in rows
    ]
    emit(args, rows, table(cells, headers), (headers, cells))
    return 0


class Ambiguous(LookupError):
    """The start of an id that more than one event has."""


def event_id(ctx: Context, given: str) -> str | None:
    """The event ``given`` names: its whole id, or any start of one that only one event
    has (as a narrow table shows it, with or without its "…"); None if none; Ambiguous."""
    with database(ctx) as reader:
        if reader.event(given) is not None:
            return given
        prefix = given.rstrip("…")
        found = reader.event_ids_starting(prefix) if prefix else []
    if len(found) > 1:
        raise Ambiguous(
            f"{given} starts more than one event ({found[0]}, {found[1]}, …); give more of the id"
        )
    return found[0] if found else None


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    try:
        found = event_id(ctx, args.id)
    except Ambiguous as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return NOT_FOUND
    event = None
    if found is not None:
        with database(ctx) as reader:
            event = reader.event(found)
    if event is None:
        print(f"relay: no event {args.id}", file=sys.stderr)
        return NOT_FOUND
    lines = [
        f"event     {event['id']}",
        f"source    {event['source']}",
        f"type      {event['event_type'] or '-'}",
        f"key       {event['idempotency_key'] or '-'}",
        f"received  {when(event['received_at'])} UTC from {event['remote_addr'] or '-'}",
    ]
    normalized = event.get("normalized")
    if normalized:
        stale = "  (stale)" if normalized["stale"] else ""
        lines += [
            f"provider  {normalized['provider'] or '-'} ({normalized['channel'] or '-'}): "
            f"{normalized['provider_type'] or '-'}",
            f"subject   {normalized['subject'] or '-'}{stale}",
            f"contact   {normalized['contact'] or '-'}",
        ]
        if normalized["parent_id"]:
            lines.append(f"split from {normalized['parent_id']}")
    for item in event.get("items", []):
        lines.append(f"item      {item['id']}  {item['event_type'] or '-'}  {item['key'] or '-'}")
    lines += [
        "",
        "headers:",
        *(f"  {k}: {v}" for k, v in event["headers"]),
        "",
        f"body ({event['encoding']}):",
    ]
    body = event["body"]
    lines += (json.dumps(body, indent=2) if event["encoding"] == "json" else str(body)).splitlines()
    for d in event["deliveries"]:
        replay = f" (replay of {d['replay_of']})" if d["replay_of"] else ""
        lines += ["", f"delivery {d['id']} → {d['destination']}: {d['state']}{replay}"]
        for a in d["history"]:
            status = a["status"] if a["status"] is not None else "-"
            error = f"  {a['error']}" if a["error"] else ""
            lines.append(
                fit(
                    f"  #{a['number']} {when(a['started_at'])} {status} "
                    f"{a['duration_ms']:.0f} ms {a['outcome']}{error}"
                )
            )
    emit(args, event, "\n".join(lines))
    return 0


def cmd_tail(ctx: Context, args: argparse.Namespace) -> int:
    """Print events as they arrive (polls the file read-only; Ctrl-C stops)."""
    deadline = time.monotonic() + args.timeout if args.timeout else None
    printed = 0
    with database(ctx) as reader:
        last = reader.latest_position()
        print("relay: following new events (Ctrl-C stops)", file=sys.stderr, flush=True)
        while deadline is None or time.monotonic() < deadline:
            for row in reader.events_after(last, args.source, 500):
                last = row["position"]
                if args.json:  # the position is the tail's own bookkeeping, not news
                    print(json.dumps({k: v for k, v in row.items() if k != "position"}), flush=True)
                else:
                    line = (
                        f"{when(row['received_at'])}  {row['id']}  {row['source']}  "
                        f"{row['event_type'] or '-'}  {row['idempotency_key'] or '-'}"
                    )
                    print(fit(line), flush=True)
                printed += 1
                if args.count and printed >= args.count:
                    return 0
            time.sleep(args.interval)
    return 0


def add(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("events", parents=[common], help="list and search events, newest first")
    p.add_argument("--source")
    p.add_argument("--type", help="event type: a prefix (invoice) or a glob ('invoice.*')")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--since", help="a duration ago (2h) or a time")
    p.add_argument("--until")
    p.add_argument("--key", help="idempotency key")
    p.add_argument("--destination", help="went there (with --status: in that state there)")
    p.add_argument("--search", metavar="TEXT", help="text in the body (any case, forms decoded)")
    p.add_argument("--before", metavar="ID", help="page: events older than this id")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--csv", action="store_true", help="CSV output, headers first")
    p.set_defaults(command_run=cmd_events)

    p = sub.add_parser("show", parents=[common], help="one event: headers, body, attempts")
    p.add_argument("id", metavar="ID", help="an event id, or enough of its start to name one")
    p.set_defaults(command_run=cmd_show)

    p = sub.add_parser("tail", parents=[common], help="follow new events as they arrive")
    p.add_argument("--source")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between looks")
    p.add_argument("--count", type=int, default=0, help="stop after this many (0: never)")
    p.add_argument("--timeout", type=float, default=0.0, help="stop after seconds (0: never)")
    p.set_defaults(command_run=cmd_tail)

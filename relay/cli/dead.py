"""``relay dead`` and ``relay replay``: what failed, and sending it again."""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

from relay import filters
from relay.cli.context import NOT_FOUND, Context, admin_call, database
from relay.cli.events import Ambiguous, event_id
from relay.cli.output import emit, plural, table, when
from relay.records import REPLAY_STATES, DeadFilter, since_to_time


def _dead_filter(args: argparse.Namespace) -> DeadFilter:
    return filters.dead(filters.from_flags(args, "dead"))


def cmd_dead(ctx: Context, args: argparse.Namespace) -> int:
    f = _dead_filter(args)
    with database(ctx) as reader:
        rows = reader.dead(f, args.limit)
        total = reader.count_dead(f)
    headers = ("DELIVERY", "EVENT", "DESTINATION", "DIED (UTC)", "LAST ERROR")
    cells = [
        (r["delivery_id"], r["event_id"], r["destination"], when(r["died_at"]), r["last_error"])
        for r in rows
    ]
    text = f"{table(cells, headers)}\n{total} dead, not replayed"
    emit(args, {"dead": rows, "total": total}, text, (headers, cells))
    return 0


def _request(args: argparse.Namespace) -> dict[str, Any] | None:
    """The admin API's replay request for these arguments; None: nothing was said."""
    body: dict[str, Any] = {}
    if args.delivery is not None:
        body["delivery_id"] = args.delivery
    elif args.event is not None:
        body["event_id"] = args.event
    else:
        given = {
            "source": args.source,
            "type": args.type,
            "since": args.since,
            "until": args.until,
            "error": args.error,
        }
        chosen = {k: v for k, v in given.items() if v}
        if not (chosen or args.destination or args.all or args.state != "dead"):
            return None
        body["filter"] = chosen
    body.update(
        {"state": args.state, "again": args.again, "dry_run": args.dry_run}
        | ({"destination": args.destination} if args.destination else {})
    )
    return body


def cmd_replay(ctx: Context, args: argparse.Namespace) -> int:
    since_to_time(args.since)  # a bad time is wrong usage (exit 2), before asking relay
    since_to_time(args.until)
    if args.event is not None:
        try:
            found = event_id(ctx, args.event)
        except Ambiguous as exc:
            print(f"relay: {exc}", file=sys.stderr)
            return NOT_FOUND
        if found is None:
            print(f"relay: no event {args.event}", file=sys.stderr)
            return NOT_FOUND
        args.event = found
    body = _request(args)
    if body is None:
        print(
            "relay: say what to replay: --event ID, --delivery N, a filter (--source, --type,"
            " --since, --until, --destination, --error), --state or --all",
            file=sys.stderr,
        )
        return 2
    key = args.request_id or f"cli-{uuid.uuid4()}"  # this invocation replays at most once
    status, answer = admin_call(ctx, "POST", "/api/replay", body, {"Idempotency-Key": key})
    if status == 404:
        print(f"relay: {answer.get('error', answer)}", file=sys.stderr)
        return NOT_FOUND
    if status != 200:
        error = answer.get("error", answer) if isinstance(answer, dict) else answer
        print(f"relay: {error}", file=sys.stderr)
        return 1
    if args.dry_run:
        sample = "".join(
            f"\n  {s['event_id']} → {s['destination']}" for s in answer.get("sample", [])
        )
        text = (
            f"{plural(int(answer['matched']), 'delivery', 'deliveries')} of "
            f"{plural(int(answer['events']), 'event')} would be replayed"
            + (
                f" ({answer['skipped']} to destinations no longer configured are left out)"
                if answer.get("skipped")
                else ""
            )
            + (f"; for example:{sample}" if sample else "")
        )
        emit(args, answer, text)
        return 0
    repeated = " (this request was answered before: nothing new)" if answer.get("repeated") else ""
    count, events = int(answer["replayed"]), int(answer["events"])
    text = f"replayed {plural(count, 'delivery', 'deliveries')} of {plural(events, 'event')}"
    skipped = int(answer.get("matched") or 0) - count
    if skipped > 0 and not args.again and not answer.get("repeated"):
        # Dead deliveries that a replay repeats already are not doubled; say so.
        text += (
            f"; {plural(skipped, 'dead delivery was', 'dead deliveries were')} replayed "
            "before (a replay of each exists): --again sends them once more"
        )
    emit(args, answer, text + repeated)
    return 0


def add(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("dead", parents=[common], help="list dead deliveries")
    p.add_argument("--destination")
    p.add_argument("--source")
    p.add_argument("--type", help="event type: a prefix (invoice) or a glob ('invoice.*')")
    p.add_argument("--since", help="died within this long ago (2h) or since a time")
    p.add_argument("--until", help="died before: a duration ago or a time")
    p.add_argument("--error", metavar="TEXT", help="text in the last error")
    p.add_argument("--key", help="the event's idempotency key")
    p.add_argument("--search", metavar="TEXT", help="text in the body (any case, forms decoded)")
    p.add_argument("--before", metavar="N", help="page: dead letters older than this delivery")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--csv", action="store_true", help="CSV output, headers first")
    p.set_defaults(command_run=cmd_dead)

    p = sub.add_parser(
        "replay",
        parents=[common],
        help="send events again: by id, or by filter (dead ones by default)",
        description="Each replay is a new delivery; what was sent before stays as history. "
        "One invocation replays at most once, whatever happens to the connection.",
    )
    p.add_argument("--event", metavar="ID", help="one event, to where it went (or --destination)")
    p.add_argument("--delivery", type=int, metavar="N", help="one delivery, whatever its state")
    p.add_argument("--source")
    p.add_argument("--type", help="event type: a prefix (invoice) or a glob ('invoice.*')")
    p.add_argument("--since", help="received since: a duration ago (2h) or a time (RFC 3339)")
    p.add_argument("--until", help="received before: a duration ago or a time")
    p.add_argument(
        "--destination",
        metavar="NAME",
        help="with --state dead or delivered: only those of NAME; with --event, --state "
        "unrouted or any: send them to NAME (a back-fill; NAME need not be routed)",
    )
    p.add_argument(
        "--state",
        choices=REPLAY_STATES,
        default="dead",
        help="which: dead (not replayed yet), delivered, unrouted, any (default: dead)",
    )
    p.add_argument("--error", metavar="TEXT", help="dead ones whose last error has TEXT")
    p.add_argument("--again", action="store_true", help="dead ones a replay repeated already too")
    p.add_argument("--all", action="store_true", help="every dead delivery not replayed yet")
    p.add_argument("--dry-run", action="store_true", help="only count them, with a sample")
    p.add_argument("--request-id", metavar="KEY", help="the Idempotency-Key (default: new)")
    p.set_defaults(command_run=cmd_replay)

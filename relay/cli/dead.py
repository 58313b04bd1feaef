"""``relay dead`` and ``relay replay``: what failed, and sending it again."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from relay.cli.context import Context, admin_call, database
from relay.cli.output import emit, table, when
from relay.store import DeadFilter, since_to_time


def _dead_filter(args: argparse.Namespace) -> DeadFilter:
    return DeadFilter(
        destination=args.destination,
        source=args.source,
        event_type=args.type,
        since=since_to_time(args.since),
        until=since_to_time(getattr(args, "until", None)),
        error=args.error,
    )


def cmd_dead(ctx: Context, args: argparse.Namespace) -> int:
    f = _dead_filter(args)
    with database(ctx) as reader:
        rows = reader.dead(f, args.limit)
        total = reader.count_dead(f)
    text = table(
        [
            (r["delivery_id"], r["event_id"], r["destination"], when(r["died_at"]), r["last_error"])
            for r in rows
        ],
        ("DELIVERY", "EVENT", "DESTINATION", "DIED (UTC)", "LAST ERROR"),
    )
    emit(args, {"dead": rows, "total": total}, f"{text}\n{total} dead, not replayed")
    return 0


def _selection(args: argparse.Namespace) -> tuple[dict[str, Any], DeadFilter] | None:
    """What to replay, as the admin API's request body and as a filter; None: nothing said."""
    if args.delivery is not None:
        return {"delivery_id": args.delivery}, DeadFilter(
            include_replayed=True, deliveries=(args.delivery,)
        )
    if args.event is not None:
        return {"event_id": args.event}, DeadFilter(event=args.event)
    if not (args.destination or args.source or args.type or args.since or args.error or args.all):
        return None
    given = {
        "destination": args.destination,
        "source": args.source,
        "type": args.type,
        "since": args.since,
        "error": args.error,
    }
    return {"filter": {k: v for k, v in given.items() if v}}, _dead_filter(args)


def cmd_replay(ctx: Context, args: argparse.Namespace) -> int:
    selection = _selection(args)
    if selection is None:
        print(
            "relay: say what to replay: --delivery N, --event ID, a filter "
            "(--destination, --source, --type, --since, --error) or --all",
            file=sys.stderr,
        )
        return 2
    body, f = selection
    if args.dry_run:
        with database(ctx) as reader:
            count = reader.count_dead(f)
        emit(
            args, {"matched": count, "dry_run": True}, f"{count} dead deliveries would be replayed"
        )
        return 0
    status, answer = admin_call(ctx, "POST", "/api/replay", body)
    if status != 200:
        error = answer.get("error", answer) if isinstance(answer, dict) else answer
        print(f"relay: {error}", file=sys.stderr)
        return 1
    emit(args, answer, f"replayed {answer['replayed']} dead deliveries")
    return 0


def add(sub: Any, common: argparse.ArgumentParser) -> None:
    for name, text in (("dead", "list dead deliveries"), ("replay", "replay dead deliveries")):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("--destination")
        p.add_argument("--source")
        p.add_argument("--type", help="event type glob")
        p.add_argument("--since", help="died within this long ago (2h) or since a time")
        p.add_argument("--error", metavar="TEXT", help="text in the last error")
        if name == "dead":
            p.add_argument("--limit", type=int, default=20)
            p.set_defaults(command_run=cmd_dead)
        else:
            p.add_argument("--delivery", type=int, metavar="N", help="one dead delivery")
            p.add_argument("--event", metavar="ID", help="an event's dead deliveries")
            p.add_argument("--all", action="store_true", help="every dead delivery")
            p.add_argument("--dry-run", action="store_true", help="only count them")
            p.set_defaults(command_run=cmd_replay)

"""``relay pause``, ``resume``, ``reload``, ``prune``, ``catch-up``: changes, through the
running relay."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from relay.cli.context import NOT_FOUND, Context, admin_call
from relay.cli.output import emit
from relay.records import since_to_time

CATCH_UP_WAIT = 900.0  # seconds: a long window, rate limits and all


def cmd_pause(ctx: Context, args: argparse.Namespace) -> int:
    action = "pause" if args.command == "pause" else "resume"
    status, answer = admin_call(ctx, "POST", f"/api/destinations/{args.destination}/{action}")
    if status == 404:
        print(f"relay: no destination {args.destination!r}", file=sys.stderr)
        return NOT_FOUND
    state = "paused" if action == "pause" else "resumed"
    emit(args, answer, f"{args.destination}: {state}")
    return 0


def cmd_prune(ctx: Context, args: argparse.Namespace) -> int:
    status, answer = admin_call(ctx, "POST", "/api/prune")
    deleted = answer.get("deleted", {}) if isinstance(answer, dict) else {}
    text = ", ".join(f"{k}: {v}" for k, v in deleted.items()) or "retention is not configured"
    emit(args, answer, text)
    return 0 if status == 200 else 1


def cmd_reload(ctx: Context, args: argparse.Namespace) -> int:
    status, answer = admin_call(ctx, "POST", "/api/reload")
    if status != 200:
        error = answer.get("error") if isinstance(answer, dict) else answer
        for line in str(error).splitlines():
            print(f"relay: {line}", file=sys.stderr)
        print("relay: the running relay keeps its old config", file=sys.stderr)
        return 1
    emit(args, answer, "config reloaded")
    return 0


def cmd_catch_up(ctx: Context, args: argparse.Namespace) -> int:
    since_to_time(args.since)  # a bad time is exit 2 here, before relay is asked
    since_to_time(args.until)
    body = {"source": args.source, "since": args.since, "dry_run": args.dry_run}
    if args.until:
        body["until"] = args.until
    status, answer = admin_call(ctx, "POST", "/api/catch-up", body, timeout=CATCH_UP_WAIT)
    if status == 404:
        error = answer.get("error") if isinstance(answer, dict) else answer
        print(f"relay: {error}", file=sys.stderr)
        return NOT_FOUND
    if status == 400 or not isinstance(answer, dict):
        print(
            f"relay: {answer.get('error') if isinstance(answer, dict) else answer}", file=sys.stderr
        )
        return 2
    window = f"{_utc(answer['since'])} - {_utc(answer['until'])} UTC"
    text = f"{args.source} ({answer['provider']}), {window}: {answer['text']}"
    text += "".join(f"\n  {note}" for note in answer.get("notes", []))
    if answer.get("error"):
        emit(args, answer, text)
        print(f"relay: {args.source}: {answer['error']}", file=sys.stderr)
        return 1
    emit(args, answer, text)
    return 0


def _utc(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(moment))


def add(sub: Any, common: argparse.ArgumentParser) -> None:
    for name in ("pause", "resume"):
        p = sub.add_parser(name, parents=[common], help=f"{name} a destination")
        p.add_argument("destination", metavar="DEST")
        p.set_defaults(command_run=cmd_pause)
    p = sub.add_parser("prune", parents=[common], help="run retention now")
    p.set_defaults(command_run=cmd_prune)
    p = sub.add_parser("reload", parents=[common], help="re-read the config (as SIGHUP)")
    p.set_defaults(command_run=cmd_reload)
    p = sub.add_parser(
        "catch-up",
        parents=[common],
        help="fetch back from a source's provider what it sent in a window",
    )
    p.add_argument("--source", required=True, metavar="NAME", help="a source with catch_up")
    p.add_argument("--since", required=True, metavar="T", help="2026-12-07 06:00, RFC 3339, 2h")
    p.add_argument("--until", metavar="T", help="default: now")
    p.add_argument(
        "--dry-run", action="store_true", help="count only: store nothing, ask for nothing"
    )
    p.set_defaults(command_run=cmd_catch_up)

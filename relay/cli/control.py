"""``relay pause``, ``resume``, ``reload``, ``prune``: changes, through the running relay."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from relay.cli.context import NOT_FOUND, Context, admin_call
from relay.cli.output import emit


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


def add(sub: Any, common: argparse.ArgumentParser) -> None:
    for name in ("pause", "resume"):
        p = sub.add_parser(name, parents=[common], help=f"{name} a destination")
        p.add_argument("destination", metavar="DEST")
        p.set_defaults(command_run=cmd_pause)
    p = sub.add_parser("prune", parents=[common], help="run retention now")
    p.set_defaults(command_run=cmd_prune)
    p = sub.add_parser("reload", parents=[common], help="re-read the config (as SIGHUP)")
    p.set_defaults(command_run=cmd_reload)

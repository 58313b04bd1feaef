"""The ``relay`` command. The only place where errors become exit codes.

One module per family of commands: ``server`` (serve, check-config, version, sink),
``events`` (events, show, tail), ``dead`` (dead, replay), ``control`` (pause, resume,
reload, prune), ``data`` (stats, backup), ``people`` (user add). Each adds its parsers and
the function that runs.

Exit codes: 0 success, 1 an error the user can act on (bad config, database cannot be
opened, address in use), 2 wrong usage, 3 relay not running (for a command that needs it),
4 nothing found.
"""

from __future__ import annotations

import argparse
import sys

from relay.cli import control, data, dead, events, people, server
from relay.cli.context import NOT_RUNNING, NotRunning, load_context
from relay.errors import RelayError

OPERATOR = (events, dead, control, data)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="relay", description="A webhook relay: verify, store in SQLite, deliver with retries."
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    server.add(sub)
    people.add(sub)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        "-c",
        metavar="PATH",
        help=f"config file (default: $RELAY_CONFIG or ./{server.DEFAULT_CONFIG})",
    )
    common.add_argument("--db", metavar="PATH", help="database file (default: from the config)")
    common.add_argument("--json", action="store_true", help="JSON output, for scripts")
    common.add_argument(
        "--token",
        metavar="TOKEN",
        help="act as the person of this admin token (default: $RELAY_ADMIN_TOKEN, else the "
        "config's [admin] token)",
    )
    for family in OPERATOR:
        family.add(sub, common)
    return top


def _operator(args: argparse.Namespace) -> int:
    """An operator's command: it gets the database and admin API of the config."""
    ctx = load_context(server.config_path(args.config), args.db, args.token)
    try:
        code: int = args.command_run(ctx, args)
    except NotRunning as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return NOT_RUNNING
    except ValueError as exc:  # a bad --since and the like
        print(f"relay: {exc}", file=sys.stderr)
        return 2
    return code


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if hasattr(args, "db"):
            return _operator(args)
        code: int = args.command_run(args)
    except RelayError as exc:
        for line in str(exc).splitlines():
            print(f"relay: {line}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code

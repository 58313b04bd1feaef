"""``relay serve``, ``check-config``, ``version``, ``sink``: running relay itself."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from relay import __version__
from relay.errors import RelayError

DEFAULT_CONFIG = "relay.toml"


def config_path(given: str | None) -> str:
    return given or os.environ.get("RELAY_CONFIG") or DEFAULT_CONFIG


def _commit() -> str:
    here = Path(__file__).resolve().parent.parent
    stamped = here / "_commit.txt"  # written by the binary build
    if stamped.exists():
        return stamped.read_text().strip()
    try:
        out = subprocess.run(  # noqa: S603 - fixed argv, no user input
            ["git", "-C", str(here), "rev-parse", "--short", "HEAD"],  # noqa: S607 - git on PATH
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def cmd_version(args: argparse.Namespace) -> int:
    import aiohttp
    from aiohttp import http_parser

    python = sys.version.split()[0]
    # A frozen build that lost aiohttp's C extension would fall back to the slow pure-Python
    # parser without a word; say which one is in use.
    c_parser = http_parser.HttpRequestParser.__module__.endswith("_http_parser")
    print(
        f"relay {__version__} ({platform.machine()}, commit {_commit()}, Python {python}, "
        f"SQLite {sqlite3.sqlite_version}, aiohttp {aiohttp.__version__} "
        f"{'C' if c_parser else 'Python'} parser)"
    )
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from relay.config import load_config

    settings = load_config(args.path)
    print(json.dumps(settings.masked(), indent=2))
    print(f"{args.path}: OK", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from relay import app, log
    from relay.config import load_config

    path = config_path(args.config)
    settings = load_config(path)
    log.setup(settings.log.level, settings.log.format)
    try:
        app.run(app.serve(settings, path))
    except OSError as exc:
        raise RelayError(f"cannot listen on {settings.server.listen}: {exc.strerror}") from None
    return 0


def cmd_sink(args: argparse.Namespace) -> int:
    from relay import app
    from relay.sink import run_sink

    app.run(run_sink(args.listen, args.status))
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    from relay import app, log
    from relay.agent import load_agent_config, serve_agent

    settings = load_agent_config(args.config)
    log.setup(settings.log.level, settings.log.format)
    app.run(serve_agent(settings, check=args.check))
    if args.check:
        name, url = settings.agent.name, settings.agent.relay
        print(f"{args.config}: OK; connected to {url} as an agent of {name}")
    return 0


def cmd_migrate_db(args: argparse.Namespace) -> int:
    """Copy a SQLite database's whole history into PostgreSQL (docs/scale-out.md)."""
    from relay.cli.context import actor
    from relay.configtypes import resolve_secret, shown_url
    from relay.store.postgresql.copy import copy_sqlite

    try:
        url = resolve_secret(args.to).value
    except ValueError as exc:
        raise RelayError(f"--to: {exc}") from None
    counts = copy_sqlite(Path(args.source), url, actor())
    summary = ", ".join(f"{n} {table}" for table, n in counts.items())
    print(f"{args.source} -> {shown_url(url)}: {summary}")
    print("next: set [storage] url (and remove path) in the config, then start relay")
    return 0


def cmd_check_storage(args: argparse.Namespace) -> int:
    """Measure the storage a database would live on (docs/deploy.md, SD cards)."""
    from relay.storagecheck import check

    target = Path(args.path)
    folder = target if target.is_dir() else target.parent
    if not folder.is_dir():
        raise RelayError(f"{args.path}: no such folder; give the folder the database lives in")
    if not os.access(folder, os.W_OK):
        raise RelayError(f"{folder}: not writable; run as the user relay runs as, or pick a folder")
    if args.seconds <= 0 or args.seconds > 60:
        raise RelayError("--seconds: give a time between 0 and 60 (seconds per measurement)")
    print("\n".join(check(folder, args.seconds).lines()))
    return 0


def add(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the relay")
    serve.add_argument(
        "--config",
        "-c",
        metavar="PATH",
        help=f"config file (default: $RELAY_CONFIG or ./{DEFAULT_CONFIG})",
    )
    serve.set_defaults(command_run=cmd_serve)

    check = sub.add_parser("check-config", help="validate a config and print it, secrets masked")
    check.add_argument("path", metavar="PATH")
    check.set_defaults(command_run=cmd_check_config)

    version = sub.add_parser("version", help="print version, commit, Python and SQLite versions")
    version.set_defaults(command_run=cmd_version)

    agent = sub.add_parser(
        "agent",
        help="deliver into a private network: dial out to a relay and take its deliveries",
    )
    agent.add_argument("--config", "-c", metavar="PATH", required=True, help="the agent's file")
    agent.add_argument(
        "--check", action="store_true", help="check the file and the connection, then exit"
    )
    agent.set_defaults(command_run=cmd_agent)

    move = sub.add_parser(
        "migrate-db",
        help="copy a SQLite database's history into PostgreSQL (relay stopped)",
    )
    move.add_argument("--from", dest="source", required=True, metavar="PATH", help="relay.db")
    move.add_argument(
        "--to", required=True, metavar="URL", help="postgresql://… (or env:NAME, file:/path)"
    )
    move.set_defaults(command_run=cmd_migrate_db)
    storage = sub.add_parser(
        "check-storage", help="measure fsyncs and commit latency where the database lives"
    )
    storage.add_argument(
        "path", nargs="?", default=".", metavar="PATH", help="the database's folder (or file)"
    )
    storage.add_argument(
        "--seconds", type=float, default=2.0, help="per measurement; three are made (default 2)"
    )
    storage.set_defaults(command_run=cmd_check_storage)
    sink = sub.add_parser("sink", help="a receiver that prints the webhooks it gets (for trials)")
    sink.add_argument("--listen", default="127.0.0.1:9000", metavar="HOST:PORT")
    sink.add_argument("--status", type=int, default=200, help="status to answer (default 200)")
    sink.set_defaults(command_run=cmd_sink)

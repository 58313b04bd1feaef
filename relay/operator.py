"""The operator's commands: ``relay events | show | dead | replay | pause | resume | stats |
tail | backup | prune | reload``.

Read-only commands open the database file read-only, so they work whether or not relay is
running. Commands that change something ask the running relay through its admin API, so
its scheduler acts at once; if relay is not running they say so (exit code 3).

Output is a table that fits 80 columns, or JSON with ``--json``. Exit codes: 0 done,
1 an error to act on (no database, bad config), 2 wrong usage, 3 relay not reachable,
4 nothing found.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import socket
import sqlite3
import sys
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from relay import inspect
from relay.errors import RelayError

NOT_RUNNING = 3
NOT_FOUND = 4
WIDTH = 80


@dataclass(frozen=True)
class Context:
    """What the commands need from the config: no source secrets are resolved, so an
    operator can run them without the relay's credentials."""

    config: str
    database: Path
    admin_listen: str
    admin_token: str | None


def load_context(config: str, database: str | None) -> Context:
    from relay.config import AdminConfig

    try:
        data = tomllib.loads(Path(config).read_text(encoding="utf-8"))
    except FileNotFoundError:
        if database is None:
            raise RelayError(
                f"{config}: no such file; pass --config PATH (or --db PATH for reads)"
            ) from None
        data = {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RelayError(f"{config}: cannot read it ({exc})") from None
    path = (
        database
        or os.environ.get("RELAY_STORAGE__PATH")
        or data.get("storage", {}).get("path", "relay.db")
    )
    admin = data.get("admin", {})
    listen = os.environ.get("RELAY_ADMIN__LISTEN") or admin.get("listen", "127.0.0.1:8081")
    token: str | None = None
    raw_token = os.environ.get("RELAY_ADMIN__TOKEN") or admin.get("token")
    if raw_token:
        try:
            resolved = AdminConfig.model_validate({"listen": listen, "token": raw_token}).token
        except ValueError as exc:
            raise RelayError(f"admin.token: {exc}") from None
        token = resolved.value if resolved is not None else None
    return Context(config, Path(path), listen, token)


# -- output -------------------------------------------------------------------------------


def when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return datetime.fromtimestamp(stamp, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str], width: int = WIDTH) -> str:
    """Columns sized to their content, the widest ones cut (with …) to fit ``width``."""
    cells = [[("-" if v is None else str(v)).replace("\n", " ") for v in row] for row in rows]
    sizes = [len(h) for h in headers]
    for row in cells:
        sizes = [max(s, len(v)) for s, v in zip(sizes, row, strict=True)]
    while sum(sizes) + 2 * (len(sizes) - 1) > width and max(sizes) > 8:
        widest = sizes.index(max(sizes))
        sizes[widest] -= 1

    def line(values: Sequence[str]) -> str:
        out = []
        for value, size in zip(values, sizes, strict=True):
            text = value if len(value) <= size else value[: size - 1] + "…"
            out.append(text.ljust(size))
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), *(line(r) for r in cells)])


def emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    print(json.dumps(payload, indent=2) if args.json else text)


# -- the admin API --------------------------------------------------------------------------


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class NotRunning(RelayError):
    pass


def admin_call(ctx: Context, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    if ctx.admin_token is None:
        raise RelayError(
            f"{ctx.config}: [admin] token is not set, so relay has no admin API to ask; set "
            "one (and restart relay) to use this command"
        )
    listen = ctx.admin_listen
    conn: http.client.HTTPConnection
    if listen.startswith("unix:"):
        conn = _UnixConnection(listen[5:], timeout=30)
    else:
        host, _, port = listen.rpartition(":")
        conn = http.client.HTTPConnection(host.strip("[]") or "127.0.0.1", int(port), timeout=30)
    headers = {"Authorization": f"Bearer {ctx.admin_token}", "Content-Type": "application/json"}
    try:
        conn.request(
            method, path, body=json.dumps(body) if body is not None else None, headers=headers
        )
        response = conn.getresponse()
        raw = response.read()
    except (ConnectionRefusedError, FileNotFoundError):
        raise NotRunning(
            f"relay is not running (nothing answers on {listen}); start it, then run this again"
        ) from None
    except OSError as exc:
        raise NotRunning(f"cannot reach relay's admin API on {listen}: {exc}") from None
    finally:
        conn.close()
    if response.status == 401:
        raise RelayError(f"relay refused the admin token from {ctx.config} (401)")
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw.decode("utf-8", "replace")


# -- commands ---------------------------------------------------------------------------------


@contextlib.contextmanager
def database(ctx: Context) -> Any:
    if not ctx.database.exists():
        raise RelayError(f"{ctx.database}: no database here (storage.path in {ctx.config})")
    try:
        with inspect.read_only(ctx.database) as conn:
            yield conn
    except sqlite3.Error as exc:
        raise RelayError(f"{ctx.database}: {exc}") from None


def cmd_events(ctx: Context, args: argparse.Namespace) -> int:
    f = inspect.EventFilter(
        source=args.source,
        event_type=args.type,
        status=args.status,
        since=inspect.since_to_time(args.since),
        until=inspect.since_to_time(args.until),
        key=args.key,
        text=args.search,
        before=args.before,
        limit=args.limit,
    )
    with database(ctx) as conn:
        rows = inspect.list_events(conn, f)
    text = table(
        [
            (
                r["id"],
                when(r["received_at"]),
                r["source"],
                r["event_type"],
                " ".join(f"{d}:{s}" for d, s in r["deliveries"].items()) or "unrouted",
            )
            for r in rows
        ],
        ("ID", "RECEIVED (UTC)", "SOURCE", "TYPE", "DELIVERIES"),
    )
    emit(args, rows, text)
    return 0


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    with database(ctx) as conn:
        event = inspect.show_event(conn, args.id)
    if event is None:
        print(f"relay: no event {args.id}", file=sys.stderr)
        return NOT_FOUND
    lines = [
        f"event     {event['id']}",
        f"source    {event['source']}",
        f"type      {event['event_type'] or '-'}",
        f"key       {event['idempotency_key'] or '-'}",
        f"received  {when(event['received_at'])} UTC from {event['remote_addr'] or '-'}",
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
                f"  #{a['number']} {when(a['started_at'])} {status} {a['duration_ms']:.0f} ms "
                f"{a['outcome']}{error}"[:WIDTH]
            )
    emit(args, event, "\n".join(lines))
    return 0


def _dead_filter(args: argparse.Namespace) -> inspect.DeadFilter:
    return inspect.DeadFilter(
        destination=args.destination,
        source=args.source,
        event_type=args.type,
        since=inspect.since_to_time(args.since),
        until=inspect.since_to_time(getattr(args, "until", None)),
        error=args.error,
    )


def cmd_dead(ctx: Context, args: argparse.Namespace) -> int:
    f = _dead_filter(args)
    with database(ctx) as conn:
        rows = inspect.list_dead(conn, f, args.limit)
        total = inspect.count_dead(conn, f)
    text = table(
        [
            (r["delivery_id"], r["event_id"], r["destination"], when(r["died_at"]), r["last_error"])
            for r in rows
        ],
        ("DELIVERY", "EVENT", "DESTINATION", "DIED (UTC)", "LAST ERROR"),
    )
    emit(args, {"dead": rows, "total": total}, f"{text}\n{total} dead, not replayed")
    return 0


def cmd_replay(ctx: Context, args: argparse.Namespace) -> int:
    body: dict[str, Any]
    if args.delivery is not None:
        body = {"delivery_id": args.delivery}
    elif args.event is not None:
        body = {"event_id": args.event}
    else:
        if not (
            args.destination or args.source or args.type or args.since or args.error or args.all
        ):
            print(
                "relay: say what to replay: --delivery N, --event ID, a filter "
                "(--destination, --source, --type, --since, --error) or --all",
                file=sys.stderr,
            )
            return 2
        body = {
            "filter": {
                k: v
                for k, v in {
                    "destination": args.destination,
                    "source": args.source,
                    "type": args.type,
                    "since": args.since,
                    "error": args.error,
                }.items()
                if v
            }
        }
    if args.dry_run:
        count = _count_replayable(ctx, args)
        emit(
            args, {"matched": count, "dry_run": True}, f"{count} dead deliveries would be replayed"
        )
        return 0
    status, answer = admin_call(ctx, "POST", "/api/replay", body)
    if status != 200:
        print(
            f"relay: {answer.get('error', answer) if isinstance(answer, dict) else answer}",
            file=sys.stderr,
        )
        return 1
    emit(args, answer, f"replayed {answer['replayed']} dead deliveries")
    return 0


def _count_replayable(ctx: Context, args: argparse.Namespace) -> int:
    with database(ctx) as conn:
        if args.delivery is not None:
            row = conn.execute(
                "SELECT COUNT(*) FROM deliveries WHERE id = ? AND state = 'dead'", (args.delivery,)
            ).fetchone()
            return int(row[0])
        if args.event is not None:
            f = inspect.DeadFilter()
            where, params = f.where()
            row = conn.execute(
                "SELECT COUNT(*) FROM deliveries d JOIN events e ON e.id = d.event_id"
                f"{where} AND d.event_id = ?",
                [*params, args.event],
            ).fetchone()
            return int(row[0])
        return inspect.count_dead(conn, _dead_filter(args))


def cmd_pause(ctx: Context, args: argparse.Namespace) -> int:
    action = "pause" if args.command == "pause" else "resume"
    status, answer = admin_call(ctx, "POST", f"/api/destinations/{args.destination}/{action}")
    if status == 404:
        print(f"relay: no destination {args.destination!r}", file=sys.stderr)
        return NOT_FOUND
    state = "paused" if action == "pause" else "resumed"
    emit(args, answer, f"{args.destination}: {state}")
    return 0


def cmd_stats(ctx: Context, args: argparse.Namespace) -> int:
    with database(ctx) as conn:
        data = inspect.stats(conn)
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


def cmd_tail(ctx: Context, args: argparse.Namespace) -> int:
    """Print events as they arrive (polls the file read-only; Ctrl-C stops)."""
    deadline = time.monotonic() + args.timeout if args.timeout else None
    printed = 0
    with database(ctx) as conn:
        row = conn.execute("SELECT MAX(id) FROM events").fetchone()
        last = row[0] or ""
        print("relay: following new events (Ctrl-C stops)", file=sys.stderr, flush=True)
        while deadline is None or time.monotonic() < deadline:
            rows = conn.execute(
                "SELECT id, received_at, source, event_type, idempotency_key FROM events"
                " WHERE id > ? AND (? IS NULL OR source = ?) ORDER BY id LIMIT 500",
                (last, args.source, args.source),
            ).fetchall()
            for r in rows:
                last = r[0]
                if args.json:
                    keys = ("id", "received_at", "source", "event_type", "idempotency_key")
                    print(json.dumps(dict(zip(keys, r, strict=True))), flush=True)
                else:
                    print(
                        f"{when(r[1])}  {r[0]}  {r[2]}  {r[3] or '-'}  {r[4] or '-'}"[:WIDTH],
                        flush=True,
                    )
                printed += 1
                if args.count and printed >= args.count:
                    return 0
            time.sleep(args.interval)
    return 0


def backup(source: Path, target: Path) -> int:
    """An online, consistent copy: SQLite's backup API in one step, under one read
    transaction, so it holds exactly what was committed when it began (WAL readers do not
    block relay's writer). Returns the bytes written."""
    if target.exists():
        raise RelayError(f"{target}: already exists; choose a new file name")
    partial = target.with_name(target.name + ".partial")
    with inspect.read_only(source) as conn, contextlib.closing(sqlite3.connect(partial)) as out:
        conn.backup(out)
        out.execute("PRAGMA journal_mode = DELETE")
        check = out.execute("PRAGMA integrity_check").fetchone()[0]
    if check != "ok":
        partial.unlink(missing_ok=True)
        raise RelayError(f"{target}: the copy failed its integrity check ({check})")
    partial.rename(target)
    return target.stat().st_size


def cmd_backup(ctx: Context, args: argparse.Namespace) -> int:
    if not ctx.database.exists():
        raise RelayError(f"{ctx.database}: no database here (storage.path in {ctx.config})")
    target = Path(args.path)
    size = backup(ctx.database, target)
    emit(args, {"path": str(target), "bytes": size}, f"{target}: {size} bytes, consistent copy")
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


COMMANDS = {
    "events": cmd_events,
    "show": cmd_show,
    "dead": cmd_dead,
    "replay": cmd_replay,
    "pause": cmd_pause,
    "resume": cmd_pause,
    "stats": cmd_stats,
    "tail": cmd_tail,
    "backup": cmd_backup,
    "prune": cmd_prune,
    "reload": cmd_reload,
}


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """The operator's subcommands, each with --config, --db and --json (from ``common``)."""
    p = sub.add_parser("events", parents=[common], help="list and search events, newest first")
    p.add_argument("--source")
    p.add_argument("--type", help="event type glob, e.g. 'invoice.*'")
    p.add_argument("--status", choices=inspect.STATUSES)
    p.add_argument("--since", help="a duration ago (2h) or a time")
    p.add_argument("--until")
    p.add_argument("--key", help="idempotency key")
    p.add_argument("--search", metavar="TEXT", help="text in the body")
    p.add_argument("--before", metavar="ID", help="page: events older than this id")
    p.add_argument("--limit", type=int, default=20)

    p = sub.add_parser("show", parents=[common], help="one event: headers, body, attempts")
    p.add_argument("id", metavar="ID")

    for name, text in (("dead", "list dead deliveries"), ("replay", "replay dead deliveries")):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("--destination")
        p.add_argument("--source")
        p.add_argument("--type", help="event type glob")
        p.add_argument("--since", help="died within this long ago (2h) or since a time")
        p.add_argument("--error", metavar="TEXT", help="text in the last error")
        if name == "dead":
            p.add_argument("--limit", type=int, default=20)
        else:
            p.add_argument("--delivery", type=int, metavar="N", help="one dead delivery")
            p.add_argument("--event", metavar="ID", help="an event's dead deliveries")
            p.add_argument("--all", action="store_true", help="every dead delivery")
            p.add_argument("--dry-run", action="store_true", help="only count them")

    for name in ("pause", "resume"):
        p = sub.add_parser(name, parents=[common], help=f"{name} a destination")
        p.add_argument("destination", metavar="DEST")

    sub.add_parser("stats", parents=[common], help="per source and destination counts")

    p = sub.add_parser("tail", parents=[common], help="follow new events as they arrive")
    p.add_argument("--source")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between looks")
    p.add_argument("--count", type=int, default=0, help="stop after this many (0: never)")
    p.add_argument("--timeout", type=float, default=0.0, help="stop after seconds (0: never)")

    p = sub.add_parser("backup", parents=[common], help="a consistent copy of the database")
    p.add_argument("path", metavar="PATH")

    sub.add_parser("prune", parents=[common], help="run retention now")
    sub.add_parser("reload", parents=[common], help="re-read the config (as SIGHUP)")


def run(args: argparse.Namespace, default_config: str) -> int:
    ctx = load_context(args.config or default_config, args.db)
    try:
        return COMMANDS[args.command](ctx, args)
    except NotRunning as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return NOT_RUNNING
    except ValueError as exc:  # a bad --since and the like
        print(f"relay: {exc}", file=sys.stderr)
        return 2

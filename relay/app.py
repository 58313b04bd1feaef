"""The relay as one object: start it, serve, stop it in order.

Start: open and migrate the database, start the writer, release stale leases, start the
scheduler, then bind the listener (so nothing is accepted before it can be stored).
Stop (SIGTERM/SIGINT), in this order, so nothing acknowledged is lost:
  1. stop accepting; requests already in flight finish and get their commits;
  2. stop claiming; attempts in flight get ``server.shutdown_grace`` seconds;
  3. commit what is queued, checkpoint the WAL, close the database.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from relay import sql, systemd
from relay.admin import start_admin
from relay.config import Settings, load_config, split_address
from relay.errors import RelayError
from relay.ingress import Ingress
from relay.inspect import DeadFilter, count_by_destination, replay_statement
from relay.listener import Guard, GuardedSite
from relay.metrics import CIRCUIT, Metrics
from relay.retention import Pruner, database_bytes
from relay.scheduler import Scheduler
from relay.store import Store

log = logging.getLogger("relay")

READY_WAIT = 1.0  # seconds /readyz waits for its probe's commit before saying not ready


class Relay:
    def __init__(self, settings: Settings, config_path: str | Path | None = None) -> None:
        self.settings = settings
        self.config_path = config_path
        self.stopping = False
        self.metrics = Metrics()
        self._store: Store | None = None
        self._scheduler: Scheduler | None = None
        self._runner: web.AppRunner | None = None
        self._admin: web.AppRunner | None = None
        self._ingress: Ingress | None = None
        self._background: list[asyncio.Task[None]] = []
        self._full = False

    @property
    def scheduler(self) -> Scheduler:
        assert self._scheduler is not None, "Relay.start() first"
        return self._scheduler

    @property
    def store(self) -> Store:
        assert self._store is not None, "Relay.start() first"
        return self._store

    async def start(self) -> None:
        settings = self.settings
        for source in settings.sources:
            if source.verify == "none":
                log.warning(
                    "source.unverified",
                    extra={
                        "fields": {
                            "source": source.name,
                            "hint": "anyone who can reach /in/" + source.name + " can post",
                        }
                    },
                )
        for destination in settings.destinations:
            if not destination.tls.verify:
                log.warning(
                    "destination.tls_unverified",
                    extra={
                        "fields": {
                            "destination": destination.name,
                            "hint": "tls.verify = false: anyone on the path can read and "
                            "change deliveries",
                        }
                    },
                )
        self._store = store = await Store.open(settings.storage)
        store.start()
        if store.released:
            log.info("store.leases_released", extra={"fields": {"deliveries": store.released}})
        self._scheduler = Scheduler(settings.destinations, store, self.metrics)
        await self._scheduler.load()
        self._scheduler.start()
        pruner = Pruner(settings.retention, store.writer)
        if pruner.enabled:
            self._background.append(asyncio.create_task(pruner.run(), name="pruner"))
        if settings.storage.max_size is not None:
            self._background.append(asyncio.create_task(self._watch_size(), name="size"))
        self._ingress = ingress = Ingress(
            settings, store.writer, self.problems, self.metrics, lambda: self._full
        )
        parser_limit = max(8190, 8 * settings.server.max_header_size)
        self._runner = web.AppRunner(
            ingress.app(),
            access_log=None,
            handle_signals=False,
            keepalive_timeout=settings.server.keepalive_timeout,
            shutdown_timeout=settings.server.read_timeout + 5,
            lingering_time=2.0,  # after a 413, read a little so the client sees the answer
            auto_decompress=False,  # relay.encoding decodes, bounded, with clear answers
            # The parser's own limits sit above ours so that large headers reach the handler
            # and get a clear 431 rather than the parser's bare 400.
            max_line_size=parser_limit,
            max_field_size=parser_limit,
        )
        await self._runner.setup()
        host, port = split_address(settings.server.listen)
        server = settings.server
        self.guard = Guard(
            server.max_connections,
            server.max_connections_per_address,
            server.header_timeout,
            server.trusted_proxies,
        )
        site = GuardedSite(self._runner, host, port, guard=self.guard, backlog=1024)
        await site.start()
        token = settings.admin.token
        if token is not None:
            self._admin = await start_admin(self, token.value.encode(), settings.admin)
        else:
            log.info("admin.off", extra={"fields": {"hint": "set [admin] token to enable it"}})
        log.info("relay.ready", extra={"fields": {"listen": self.address, "db": str(store.path)}})

    @property
    def address(self) -> str:
        assert self._runner is not None
        host, port = self._runner.addresses[0][:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def port(self) -> int:
        assert self._runner is not None
        port: int = self._runner.addresses[0][1]
        return port

    async def problems(self) -> list[str]:
        """Why the relay is not ready; empty when it is. Asks the database for a commit
        (an empty one, waiting at most READY_WAIT): only a commit shows that commits work."""
        found = []
        if self.stopping:
            found.append("shutting down")
        problem = await self._store.check(READY_WAIT) if self._store is not None else None
        if problem is not None:
            found.append(f"database: {problem}")
        if self._scheduler is not None and not self._scheduler.healthy:
            found += ["scheduler: " + p for p in self._scheduler.problems()] or [
                "scheduler stopped"
            ]
        return found

    @property
    def admin_address(self) -> str | None:
        if self._admin is None:
            return None
        address = self._admin.addresses[0]
        if isinstance(address, str):
            return "unix:" + address
        return f"{address[0]}:{address[1]}"

    async def refresh_gauges(self) -> None:
        """The gauges read from the database and the scheduler, just before a scrape."""
        m, store = self.metrics, self.store
        now = time.time()
        q = sql.queries()
        pending = {r[0]: (r[1], r[2]) for r in await store.read(q["gauges_pending"])}
        dead = {r[0]: r[1] for r in await store.read(q["gauges_dead"])}
        for name in set(self.scheduler.lanes) | set(pending) | set(dead):
            count, oldest = pending.get(name, (0, None))
            m.pending.labels(name).set(count)
            m.oldest_pending.labels(name).set(max(0.0, now - oldest) if oldest else 0)
            m.dead.labels(name).set(dead.get(name, 0))
        for name, lane in self.scheduler.lanes.items():
            state = lane.circuit.state if lane.circuit else "closed"
            m.circuit.labels(name).set(CIRCUIT[state])
            m.paused.labels(name).set(1 if lane.paused else 0)
        database, wal = database_bytes(store.path)
        m.database_bytes.set(database)
        m.wal_bytes.set(wal)
        m.storage_full.set(1 if self._full else 0)

    async def replay(
        self, f: DeadFilter, extra: tuple[str, list[Any]] | None, dry_run: bool = False
    ) -> int:
        """Replay the dead deliveries matching ``f`` (and ``extra``): count them, or create
        one new pending delivery for each and wake their lanes."""
        statement, params = replay_statement(f, time.time())
        where, where_params = f.where()
        if extra is not None:
            statement += f" AND {extra[0]}"
            params += extra[1]
            where += f" AND {extra[0]}"
            where_params += extra[1]
        rows = await self.store.read(count_by_destination(where), where_params)
        matched = {name: int(n) for name, n in rows}
        if dry_run or not matched:
            return sum(matched.values())
        count = await self.store.writer.execute(statement, params)
        self.scheduler.notify(matched)
        for name, n in matched.items():
            self.metrics.replays.labels(name).inc(n)
        log.info("delivery.replayed", extra={"fields": {"count": count}})
        return count

    async def reload(self) -> str | None:
        """Re-read the config file. A valid one takes effect without dropping a request;
        an invalid one is refused with the reason (returned) and the old one stays."""
        if self.config_path is None:
            return "relay was not started from a config file"
        try:
            new = load_config(self.config_path)
        except RelayError as exc:
            log.error("config.reload_refused", extra={"fields": {"error": str(exc)}})
            return str(exc)
        old = self.settings
        for section in ("server", "storage", "admin"):
            if getattr(new, section) != getattr(old, section):
                log.warning(
                    "config.restart_needed",
                    extra={"fields": {"section": section, "hint": "restart to apply it"}},
                )
        assert self._ingress is not None
        await self.scheduler.update(new.destinations, old.server.shutdown_grace)
        self._ingress.update(new)
        self.settings = new.model_copy(
            update={"server": old.server, "storage": old.storage, "admin": old.admin}
        )
        log.info("config.reloaded", extra={"fields": {"path": str(self.config_path)}})
        return None

    async def prune_now(self) -> dict[str, int]:
        return await Pruner(self.settings.retention, self.store.writer).prune_once()

    async def _watch_size(self) -> None:
        """Ingress answers 507 while database + WAL exceed storage.max_size; once, on the
        way over, an error is logged and an alert event sent."""
        limit = self.settings.storage.max_size
        assert limit is not None
        while True:
            database, wal = database_bytes(self.store.path)
            full = database + wal > limit
            if full and not self._full:
                log.error(
                    "storage.full",
                    extra={"fields": {"bytes": database + wal, "max_size": limit}},
                )
                alert = self.settings.storage.alert
                if alert is not None:
                    await self.scheduler.send_alert(
                        alert,
                        {
                            "type": "storage.full",
                            "text": f"relay refuses new events: database is {database + wal}"
                            f" bytes, over storage.max_size ({limit}). Prune or raise the limit.",
                            "bytes": database + wal,
                            "max_size": limit,
                        },
                    )
            elif self._full and not full:
                log.info("storage.ok", extra={"fields": {"bytes": database + wal}})
            self._full = full
            await asyncio.sleep(1.0)

    async def stop(self) -> None:
        self.stopping = True
        log.info("relay.stopping")
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._admin is not None:
            await self._admin.cleanup()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._scheduler is not None:
            await self._scheduler.stop(self.settings.server.shutdown_grace)
        if self._store is not None:
            await self._store.close()
        log.info("relay.stopped")


async def serve(settings: Settings, config_path: str | Path | None = None) -> None:
    """Run until SIGTERM or SIGINT, then stop in order; speaks sd_notify under systemd.
    SIGHUP re-reads the config file."""
    relay = Relay(settings, config_path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Handlers first, so a signal during start-up is an orderly stop, not a kill. A second
    # SIGTERM (a onefile binary's bootloader forwards one too) only sets the same event again.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    reloads: set[asyncio.Task[Any]] = set()

    def reloaded(task: asyncio.Task[Any]) -> None:
        reloads.discard(task)
        systemd.notify("READY=1")

    def reload() -> None:
        systemd.notify("RELOADING=1")
        task = asyncio.ensure_future(relay.reload())
        reloads.add(task)
        task.add_done_callback(reloaded)

    loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        await relay.start()
    except BaseException:
        await relay.stop()
        raise
    systemd.notify(f"READY=1\nSTATUS=listening on {relay.address}\nMAINPID={os.getpid()}")
    interval = systemd.watchdog_interval()
    pinger = asyncio.create_task(systemd.watchdog(interval)) if interval else None
    try:
        await stop.wait()
    finally:
        systemd.notify("STOPPING=1")
        await relay.stop()
        if pinger is not None:
            pinger.cancel()
            await asyncio.gather(pinger, return_exceptions=True)


def run(coro: Any) -> None:
    """Run a coroutine on uvloop (the stdlib loop where uvloop is missing)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(coro)

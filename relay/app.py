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
from typing import Any

from aiohttp import web

from relay import sql, systemd
from relay.config import Settings, split_address
from relay.ingress import Ingress
from relay.listener import BoundedSite
from relay.scheduler import Scheduler
from relay.store import Store

log = logging.getLogger("relay")


class Relay:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stopping = False
        self._store: Store | None = None
        self._scheduler: Scheduler | None = None
        self._runner: web.AppRunner | None = None

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
        released = await store.writer.execute(sql.queries()["release_leases"])
        if released:
            log.info("store.leases_released", extra={"fields": {"deliveries": released}})
        self._scheduler = Scheduler(settings.destinations, store)
        await self._scheduler.load()
        self._scheduler.start()
        ingress = Ingress(settings, store.writer, self.problems)
        parser_limit = max(8190, 8 * settings.server.max_header_size)
        self._runner = web.AppRunner(
            ingress.app(),
            access_log=None,
            handle_signals=False,
            keepalive_timeout=settings.server.keepalive_timeout,
            shutdown_timeout=settings.server.read_timeout + 5,
            lingering_time=2.0,  # after a 413, read a little so the client sees the answer
            # The parser's own limits sit above ours so that large headers reach the handler
            # and get a clear 431 rather than the parser's bare 400.
            max_line_size=parser_limit,
            max_field_size=parser_limit,
        )
        await self._runner.setup()
        host, port = split_address(settings.server.listen)
        site = BoundedSite(
            self._runner,
            host,
            port,
            max_connections=settings.server.max_connections,
            backlog=1024,
        )
        await site.start()
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

    def problems(self) -> list[str]:
        """Why the relay is not ready; empty when it is."""
        found = []
        if self.stopping:
            found.append("shutting down")
        if self._store is not None and not self._store.healthy:
            found.append(f"database: {self._store.writer.last_error or 'writer stopped'}")
        if self._scheduler is not None and not self._scheduler.healthy:
            found += ["scheduler: " + p for p in self._scheduler.problems()] or [
                "scheduler stopped"
            ]
        return found

    async def stop(self) -> None:
        self.stopping = True
        log.info("relay.stopping")
        if self._runner is not None:
            await self._runner.cleanup()
        if self._scheduler is not None:
            await self._scheduler.stop(self.settings.server.shutdown_grace)
        if self._store is not None:
            await self._store.close()
        log.info("relay.stopped")


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then stop in order; speaks sd_notify under systemd."""
    relay = Relay(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Handlers first, so a signal during start-up is an orderly stop, not a kill. A second
    # SIGTERM (a onefile binary's bootloader forwards one too) only sets the same event again.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _reload_not_supported)
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


def _reload_not_supported() -> None:
    log.warning("relay.reload_ignored", extra={"fields": {"hint": "restart to apply changes"}})


def run(coro: Any) -> None:
    """Run a coroutine on uvloop (the stdlib loop where uvloop is missing)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(coro)

"""The relay as one object: wire the parts together and start and stop them in order.

Data flows one way: ingress → store → scheduler → delivery. This module only builds the
parts, connects them (the store wakes the scheduler after each commit and hands it new
deliveries; alerts enter through ingest like any event; the admin surface gets a
``Control``), and orders them:

Start: open the database (lock, migrate, release stale leases), start the writer, start
the scheduler, then bind the listener (so nothing is accepted before it can be stored).
Stop (SIGTERM/SIGINT), in this order, so nothing acknowledged is lost:
  1. stop accepting; requests already in flight finish and get their commits;
  2. stop claiming; attempts in flight get ``server.shutdown_grace`` seconds;
  3. commit what is queued, checkpoint the WAL, close the database.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from relay import systemd
from relay.admin import Who, start_admin
from relay.agents import AgentHub
from relay.alerting import Alerting
from relay.catchup import CatchUp
from relay.clock import Clock, DatabaseClock
from relay.config import Settings, load_config
from relay.control import Control
from relay.errors import RelayError
from relay.ingress import Ingress
from relay.listener import Guard, GuardedSite, TlsSite
from relay.metrics import Metrics
from relay.people import People
from relay.records import DeadFilter
from relay.retention import Pruner, SizeWatch
from relay.scheduler.lanes import Scheduler
from relay.sections import ServerTls, split_address
from relay.sockets import address, inherited
from relay.store import Store, open_store

if TYPE_CHECKING:
    from relay.certificates import Certificates

log = logging.getLogger("relay")

READY_WAIT = 1.0  # seconds /readyz waits for its probe's commit before saying not ready


class Relay:
    def __init__(
        self,
        settings: Settings,
        config_path: str | Path | None = None,
        clock: Clock | None = None,
        sockets: dict[str, socket.socket] | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._sockets = sockets or {}  # from systemd (relay.sockets), by name
        self.config_path = config_path
        self.stopping = False
        self.metrics = Metrics()
        self._store: Store | None = None
        self._scheduler: Scheduler | None = None
        self._runner: web.AppRunner | None = None
        self._admin: web.AppRunner | None = None
        self.people = People([])  # who may use the admin listener (relay.people)
        self._ingress: Ingress | None = None
        self._size: SizeWatch | None = None
        self._background: list[asyncio.Task[None]] = []
        self.control: Control | None = None
        self.alerting: Alerting | None = None
        self.hub: AgentHub | None = None
        self.guard: Guard | None = None
        self.certificates: Certificates | None = None
        self._plain: web.AppRunner | None = None  # http_listen: HTTP-01 and redirects
        self.catch_up: CatchUp | None = None

    @property
    def scheduler(self) -> Scheduler:
        assert self._scheduler is not None, "Relay.start() first"
        return self._scheduler

    @property
    def store(self) -> Store:
        assert self._store is not None, "Relay.start() first"
        return self._store

    def _warn_about(self, settings: Settings) -> None:
        for source in settings.sources:
            if source.verify == "none":
                hint = f"anyone who can reach /in/{source.name} can post"
                log.warning(
                    "source.unverified", extra={"fields": {"source": source.name, "hint": hint}}
                )
        for destination in settings.destinations:
            if not destination.tls.verify:
                hint = "tls.verify = false: anyone on the path can read and change deliveries"
                log.warning(
                    "destination.tls_unverified",
                    extra={"fields": {"destination": destination.name, "hint": hint}},
                )

    async def start(self) -> None:
        """Open the store, then start, in order: alerts, delivery (agents and lanes),
        housekeeping, the public listener, catch-up and the admin listener."""
        settings = self.settings
        self._warn_about(settings)
        self._store = store = await open_store(settings.storage)
        store.start()
        # Before this relay's first beat: since then nobody listened (relay.catchup).
        last_beat = await store.last_beat()
        if store.released:
            log.info("store.leases_released", extra={"fields": {"deliveries": store.released}})
        alerting = await self._start_alerting(store)
        scheduler, hub = await self._start_delivery(store, alerting)
        size = self._start_housekeeping(store, alerting)
        self._ingress = ingress = Ingress(
            settings,
            store,
            self.problems,
            self.metrics,
            lambda: size.full,
            alerting.request,
            hub,
            self._clock.monotonic if self._clock is not None else time.monotonic,
        )
        await self._listen(ingress)
        self.catch_up = catch_up = CatchUp(
            settings, store, ingress, self.metrics, alerting.catch_up
        )
        await catch_up.found_downtime(last_beat)
        self._background.append(asyncio.create_task(catch_up.beat(), name="heartbeat"))
        housekeeping = lambda: not store.shared or store.housekeeping  # noqa: E731
        self._background.append(asyncio.create_task(catch_up.loop(housekeeping), name="catch-up"))
        self.control = Control(
            lambda: self.settings,
            store,
            scheduler,
            self.metrics,
            self.reload,
            lambda: size.full,
            lambda: self.config_path,
            hub,
            catch_up,
        )
        await self._start_admin(self.control)
        db = settings.storage.describe()
        log.info("relay.ready", extra={"fields": {"listen": self.address, "db": db}})

    async def _start_alerting(self, store: Store) -> Alerting:
        settings = self.settings

        async def left(destination: str) -> int:
            return await store.read(lambda r: r.count_dead(DeadFilter(destination=destination)))

        self.alerting = alerting = Alerting(
            settings.alerts,
            store.ingest,
            settings.admin.public_url,
            self._clock.time if self._clock is not None else time.time,
            save=store.save_incident,
            left=left,
        )
        if settings.alerts.quiet:
            quiet = list(settings.alerts.quiet)
            alerting.seen(await store.read(lambda r: r.last_received(quiet)))
        last_received = None
        if store.shared:

            async def last_received(sources: list[str]) -> dict[str, float]:
                return await store.read(lambda r: r.last_received(sources))

        look = alerting.run(store.gauges, lambda: store.housekeeping, last_received)
        self._background.append(asyncio.create_task(look, name="alerts"))
        return alerting

    async def _start_delivery(self, store: Store, alerts: Alerting) -> tuple[Scheduler, AgentHub]:
        """The agent hub and the lanes, told of every commit by the store."""
        settings = self.settings
        self.hub = hub = AgentHub(
            settings.agents,
            self.metrics,
            trusted=settings.server.trusted_proxies,
            max_body=settings.server.max_body_size,
            lease_margin=settings.storage.lease_margin,
        )
        if self._clock is None and store.shared:
            self._clock = DatabaseClock(lambda: store.clock_offset)
        self._scheduler = scheduler = Scheduler(
            settings.destinations,
            store,
            self.metrics,
            alerts,
            self._clock,
            hub,
            settings.storage.lease_margin,
        )
        hub.wake = scheduler.wake_group
        store.add_listener(scheduler.notify)
        store.add_control_listener(scheduler.sync_soon)
        store.hand_off = scheduler
        await scheduler.load()
        scheduler.start()
        return scheduler, hub

    def _start_housekeeping(self, store: Store, alerting: Alerting) -> SizeWatch:
        """Pruning, and the watch on the database's size."""
        settings = self.settings
        pruner = Pruner(settings.retention, store)
        if pruner.enabled:
            self._background.append(asyncio.create_task(pruner.run(), name="pruner"))
        self._size = size = SizeWatch(
            settings.storage, store.size, alerting.storage_full, lambda: store.housekeeping
        )
        if settings.storage.max_size is not None:
            self._background.append(asyncio.create_task(size.run(), name="size"))
        return size

    async def _start_admin(self, control: Control) -> None:
        settings = self.settings
        if not settings.admin.enabled:
            hint = "set [admin] token, or name people in [[admin.users]], to enable it"
            log.info("admin.off", extra={"fields": {"hint": hint}})
            return
        self.people = settings.admin.people()
        self._admin = await start_admin(
            control, lambda: self.people, settings.admin, self._sockets.get("admin")
        )

    async def _listen(self, ingress: Ingress) -> None:
        server = self.settings.server
        parser_limit = max(8190, 8 * server.max_header_size)
        app = ingress.app()
        app.on_response_prepare.append(self._closing)
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=server.keepalive_timeout,
            shutdown_timeout=server.read_timeout + 5,
            lingering_time=2.0,  # after a 413, read a little so the client sees the answer
            auto_decompress=False,  # relay.encoding decodes, bounded, with clear answers
            # The parser's own limits sit above ours so that large headers reach the handler
            # and get a clear 431 rather than the parser's bare 400.
            max_line_size=parser_limit,
            max_field_size=parser_limit,
        )
        await self._runner.setup()
        host, port = split_address(server.listen)
        self.guard = Guard(
            server.max_connections,
            server.max_connections_per_address,
            server.header_timeout,
            server.trusted_proxies,
        )
        public = self._sockets.get("public")
        if public is not None:
            got = address(public)
            fields = {"listen": f"{got[0]}:{got[1]}", "name": "public"}
            log.info("listener.from_systemd", extra={"fields": fields})
            if (host or "0.0.0.0", port) != got and port != 0:  # noqa: S104 - compared only
                hint = "the socket unit decides where relay listens; make [server] listen agree"
                fields |= {"configured": server.listen, "hint": hint}
                log.warning("listener.not_as_configured", extra={"fields": fields})
        tls = server.tls
        if tls is None:
            site = GuardedSite(
                self._runner, host, port, guard=self.guard, backlog=server.backlog, sock=public
            )
            await site.start()
            return
        # Imported here: a relay without TLS never loads cryptography's x509 (about 9 MB).
        from relay.certificates import Certificates

        expiry = self.metrics.certificate_expiry
        certs = self.certificates = Certificates(
            tls,
            self._tls_state(tls),
            self._certificate_alert,
            time.time,
            lambda facts: expiry.set(facts.not_after),
        )
        have = certs.load()  # files: or a clear error; ACME: a stored one still valid?
        tls_site = TlsSite(
            self._runner,
            host,
            port,
            guard=self.guard,
            backlog=server.backlog,
            contexts=certs.for_hello,
            peek=lambda: bool(certs.alpn),
            sock=public,
        )
        await tls_site.start()
        if tls.http_listen is not None:
            plain = web.AppRunner(certs.http_app(self.port), access_log=None, handle_signals=False)
            await plain.setup()
            self._plain = plain
            passed = self._sockets.get("http")
            if passed is not None:
                await web.SockSite(plain, passed).start()
            else:
                http_host, http_port = split_address(tls.http_listen)
                await web.TCPSite(plain, http_host, http_port, backlog=128).start()
        if not have:
            # Before relay says it is ready: with no certificate nothing can be served.
            await certs.obtain()
        self._background.append(asyncio.create_task(certs.run(), name="certificates"))

    def _tls_state(self, tls: ServerTls) -> Path:
        """Where ACME keeps its account key and certificates: tls/ beside the database."""
        if tls.state_dir is not None:
            return tls.state_dir
        return self.settings.storage.path.parent / "tls"

    async def _certificate_alert(self, fields: dict[str, Any]) -> None:
        if self.alerting is not None:
            await self.alerting.certificate(fields)

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
        unpeopled: dict[str, Any] = {"token": None, "users": []}  # who may use it: applied
        for section in ("server", "storage", "admin"):
            before, after = getattr(old, section), getattr(new, section)
            if section == "admin":
                before, after = (
                    before.model_copy(update=unpeopled),
                    after.model_copy(update=unpeopled),
                )
            if after != before:
                log.warning(
                    "config.restart_needed",
                    extra={"fields": {"section": section, "hint": "restart to apply it"}},
                )
        assert self._ingress is not None
        if self.certificates is not None:
            self.certificates.reload_files()  # a renewed cert_file, without a restart
        await self.scheduler.update(new.destinations, old.server.shutdown_grace)
        self._ingress.update(new)
        if self.catch_up is not None:
            self.catch_up.update(new)
        if self.alerting is not None:
            self.alerting.update(new.alerts)
        if self.hub is not None:
            self.hub.update(new.agents)
        # Who may use the admin listener changes at once (a removed person's session ends
        # at their next request); where it listens needs a restart.
        self.people = new.admin.people()
        admin = old.admin.model_copy(update={"token": new.admin.token, "users": new.admin.users})
        self.settings = new.model_copy(
            update={"server": old.server, "storage": old.storage, "admin": admin}
        )
        log.info("config.reloaded", extra={"fields": {"path": str(self.config_path)}})
        return None

    async def _closing(self, request: web.Request, response: web.StreamResponse) -> None:
        """While relay stops, every answer closes its connection: the client's next request
        goes to a new connection, which waits in the socket for the next relay. The header
        is set here too: aiohttp (3.14) writes its own before this hook runs."""
        if self.stopping:
            response.force_close()
            response.headers["Connection"] = "close"

    async def _stop_accepting(self) -> None:
        """Stop accepting (with systemd's socket, new connections now wait in its backlog
        for the next relay) and give connections already accepted the time to send their
        request, at most ``header_timeout``: each gets its answer (after its commit, as
        always), with ``Connection: close``."""
        if self._runner is None:
            return
        for site in list(self._runner.sites):
            await site.stop()
        if self.guard is not None:
            await self.guard.answered(self.settings.server.header_timeout)

    async def stop(self) -> None:
        """In order: stop accepting and answer what was accepted; stop the background
        work and the admin listener; let attempts in flight finish (``shutdown_grace``);
        tell agents to reconnect; close the remaining connections; close the store."""
        self.stopping = True
        log.info("relay.stopping")
        await self._stop_accepting()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._admin is not None:
            await self._admin.cleanup()
        if self._scheduler is not None:
            await self._scheduler.stop(self.settings.server.shutdown_grace)
        if self.hub is not None:
            await self.hub.restarting()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._plain is not None:
            await self._plain.cleanup()
        if self._store is not None:
            await self._store.close()
        log.info("relay.stopped")


async def serve(settings: Settings, config_path: str | Path | None = None) -> None:
    """Run until SIGTERM or SIGINT, then stop in order; speaks sd_notify under systemd.
    SIGHUP re-reads the config file."""
    relay = Relay(settings, config_path, sockets=inherited())
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
        control = relay.control
        again = control.reload(Who("signal", None)) if control is not None else relay.reload()
        task = asyncio.ensure_future(again)
        reloads.add(task)
        task.add_done_callback(reloaded)

    loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        await relay.start()
    except BaseException:
        await relay.stop()
        raise
    # The cyclic garbage collector took 3.8% of relay's CPU under load (perf, at ~4,000
    # ingests/s) with Python's default of a young collection per 700 new container
    # objects; refcounting frees a request's objects anyway. What start built lives as
    # long as relay (freeze: never walked again), and a young collection waits for 20,000
    # (cycles are held a little longer): no sample in it any more (docs/benchmarks.md).
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)
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

"""The admin listener (``[admin] listen``: 127.0.0.1, a Unix socket, or HTTPS with
``[admin.tls]``): the JSON API and ``/metrics`` (``api``, a person's bearer token) and the
web console under ``/ui/`` (``console``, sign-in with the same token). Each request acts as
the person whose token it carries, within their role (relay.people). Both see the running relay only
through ``surface.Surface``; the public ingress listener serves none of it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable

from aiohttp import web

from relay.admin.api import Api, Handler
from relay.admin.console import Console
from relay.admin.surface import DestinationView, Surface, Who
from relay.errors import StorageError, StorageUnavailable
from relay.log import Throttled, brief
from relay.people import People
from relay.sections import AdminConfig, split_address

log = logging.getLogger("relay.admin")
faults = Throttled(log, "admin.storage_unavailable")

__all__ = ["DestinationView", "Surface", "Who", "start_admin"]


@web.middleware
async def unavailable(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The database cannot answer (PostgreSQL restarting, a locked or full SQLite file):
    503 with Retry-After for the API and the console alike, never a 500 with a traceback."""
    try:
        return await handler(request)
    except (StorageUnavailable, StorageError) as exc:
        faults.say(time.monotonic(), path=request.path, error=brief(str(exc)))
        return web.json_response(
            {"error": f"the database cannot answer now: {brief(str(exc))}"},
            status=503,
            headers={"Retry-After": "5"},
        )


def admin_app(surface: Surface, people: Callable[[], People]) -> web.Application:
    api, console = Api(surface, people), Console(surface, people)
    app = web.Application(
        middlewares=[unavailable, api.auth, console.guard], client_max_size=1024 * 1024
    )
    console.routes(app)
    api.routes(app)
    return app


async def start_admin(
    surface: Surface,
    people: Callable[[], People],
    config: AdminConfig,
    sock: socket.socket | None = None,
) -> web.AppRunner:
    """The admin listener, on ``sock`` when systemd passed one (``admin``); ``people``: who
    may use it now (a reload replaces them)."""
    runner = web.AppRunner(admin_app(surface, people), access_log=None, handle_signals=False)
    await runner.setup()
    site: web.BaseSite
    listen = config.listen
    if sock is not None:
        context = config.tls.context() if config.tls is not None else None
        site = web.SockSite(runner, sock, ssl_context=context)
        await site.start()
    elif listen.startswith("unix:"):
        path = listen[5:]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a socket left by a killed relay
        site = web.UnixSite(runner, path)
        await site.start()
        os.chmod(path, 0o600)
    else:
        host, port = split_address(listen)
        context = config.tls.context() if config.tls is not None else None
        site = web.TCPSite(runner, host, port, ssl_context=context)
        await site.start()
    bound = runner.addresses[0]
    address = f"unix:{bound}" if isinstance(bound, str) else f"{bound[0]}:{bound[1]}"
    log.info("admin.ready", extra={"fields": {"listen": address}})
    return runner

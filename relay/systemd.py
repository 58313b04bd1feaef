"""sd_notify without a dependency: tell systemd when relay is ready, alive and stopping.

The protocol is one datagram per message to the Unix socket named by ``NOTIFY_SOCKET``
(a path, or ``@name`` for an abstract socket). Outside systemd the variable is unset and
every call does nothing. The watchdog pings come from the event loop itself, so a wedged
loop stops them and systemd restarts the service (``WatchdogSec=``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

log = logging.getLogger("relay.systemd")


def notify(message: str) -> bool:
    """Send one sd_notify message; False when not under systemd or the socket is gone."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode(), address)
    except OSError as exc:
        log.warning("systemd.notify_failed", extra={"fields": {"error": str(exc)}})
        return False
    return True


def watchdog_interval() -> float | None:
    """Half of systemd's ``WATCHDOG_USEC`` (as sd_watchdog_enabled advises), or None."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None  # meant for another process (e.g. a wrapper)
    return int(usec) / 2_000_000


async def watchdog(interval: float) -> None:
    """Ping systemd from the event loop until cancelled."""
    with contextlib.suppress(asyncio.CancelledError):
        while True:
            notify("WATCHDOG=1")
            await asyncio.sleep(interval)

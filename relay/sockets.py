"""Listening sockets handed over by systemd (socket activation), so a restart loses nothing.

With ``relay.socket`` the listening sockets belong to systemd, not to relay: while relay
restarts (a config change, an upgrade), connections wait in the kernel's backlog for the
next process instead of being refused ("connection refused" made GitHub drop the webhook
and Stripe wait an hour). The protocol is sd_listen_fds(3): ``LISTEN_FDS`` sockets from
descriptor 3 on, named by ``LISTEN_FDNAMES`` (``FileDescriptorName=`` in the unit), for the
process ``LISTEN_PID``. relay takes the names ``public``, ``admin`` and ``http`` (the
HTTP-01 listener); a single socket with another name (systemd names it after the unit) is
the public one. A listener whose socket is not passed is bound as without systemd.

The one-file executable runs as a launcher and its child, and systemd's ``LISTEN_PID``
names the launcher (the unit's main process): the child accepts its parent's pid there, as
READY=1 already needs ``NotifyAccess=all``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from relay.launcher import unpacked

FIRST = 3  # SD_LISTEN_FDS_START
NAMES = ("public", "admin", "http")


def inherited(environ: Mapping[str, str] | None = None) -> dict[str, socket.socket]:
    """The sockets systemd passed to this process, by name; empty without any. Each is
    taken once: the variables are removed, so nothing relay starts inherits them."""
    env = os.environ if environ is None else environ
    count = env.get("LISTEN_FDS", "")
    pid = env.get("LISTEN_PID", "")
    if not count.isdigit() or not int(count) or not pid.isdigit() or not _for_us(int(pid)):
        return {}
    names = env.get("LISTEN_FDNAMES", "").split(":")
    found: dict[str, socket.socket] = {}
    for index in range(int(count)):
        fd = FIRST + index
        name = names[index] if index < len(names) else ""
        if int(count) == 1 and name not in NAMES:
            name = "public"
        sock = socket.socket(fileno=fd)
        os.set_inheritable(fd, False)
        sock.setblocking(False)
        found[name] = sock
    if environ is None:
        for key in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
            os.environ.pop(key, None)
    return found


def _for_us(pid: int) -> bool:
    if pid == os.getpid():
        return True
    return pid == os.getppid() and unpacked() is not None  # the one-file launcher's


def address(sock: socket.socket) -> tuple[str, int]:
    """Where an inherited socket listens (the config's listen may say otherwise)."""
    host, port = sock.getsockname()[:2]
    return str(host), int(port)

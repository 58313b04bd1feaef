"""The one-file executable's two processes: the child dies with its launcher, and unpacked
copies do not pile up in ``$TMPDIR``.

PyInstaller's one-file executable is a launcher (the pid a user started) that unpacks
relay into ``$TMPDIR/_MEIxxxxxx`` and runs it as its child; when the child exits, the
launcher removes the folder. A SIGKILL to the launcher (``kill -9 <pid>``, a container
runtime, a supervisor without process groups) killed only the launcher: relay kept running
with the port and the database lock, and its 39 MB folder stayed for good (a test machine
held 203 of them, 5.5 GB). So, first thing in the child:

- the kernel is asked to signal it when its parent dies (``PR_SET_PDEATHSIG``); the child
  then removes its own folder and exits at once, as a SIGKILL would have ended a single
  process (every acknowledged event is already committed);
- if the launcher died before that request took effect, the child notices (its parent no
  longer has the executable mapped) and does the same;
- it holds a lock on a marker in its folder for as long as it lives, and removes the
  folders of relay's earlier children whose lock nobody holds (a launcher and child both
  SIGKILLed leave one behind; the next start clears it).

Nothing here runs outside a one-file build, or outside Linux.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1
PARENT_GONE = signal.SIGUSR2  # relay uses it for nothing else
MARKER = ".relay-alive"
_held: list[int] = []  # the marker's descriptor, kept open (and locked) for the child's life


def unpacked() -> Path | None:
    """The folder this process runs from when it is a one-file child; None otherwise."""
    home = os.environ.get("_PYI_APPLICATION_HOME_DIR")
    meipass = getattr(sys, "_MEIPASS", None)
    if not sys.platform.startswith("linux") or home is None or meipass != home:
        return None
    return Path(meipass)


def follow_parent() -> None:
    """Call before anything else in the child (see the module docstring)."""
    folder = unpacked()
    if folder is None:
        return
    launcher = os.getppid()
    signal.signal(PARENT_GONE, lambda signum, frame: _leave(folder))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, int(PARENT_GONE), 0, 0, 0)
    if not _same_executable(launcher):
        _leave(folder)  # the launcher was gone before the request took effect
    _mark(folder)
    _sweep(folder.parent, folder)


def _same_executable(pid: int) -> bool:
    """Whether ``pid`` runs this executable: its file is mapped there. (Not /proc/PID/exe:
    under qemu-user, as the arm64 build is tested, that names the emulator.)"""
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as maps:
            return any(line.rstrip("\n").endswith(" " + sys.executable) for line in maps)
    except OSError:
        return False


def _leave(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    os._exit(128 + signal.SIGKILL)


def _mark(folder: Path) -> None:
    fd = os.open(folder / MARKER, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    _held.append(fd)


def _sweep(parent: Path, mine: Path) -> None:
    """Remove relay's earlier unpacked folders that no living child holds."""
    with contextlib.suppress(OSError):
        for folder in parent.glob("_MEI*"):
            if folder != mine and (folder / MARKER).exists() and not _held_by_anyone(folder):
                shutil.rmtree(folder, ignore_errors=True)


def _held_by_anyone(folder: Path) -> bool:
    try:
        fd = os.open(folder / MARKER, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return True  # not ours to judge
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops a lock taken here
    return False

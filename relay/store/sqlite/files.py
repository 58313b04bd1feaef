"""The SQLite file: created private, locked to one relay, opened in WAL mode, migrated.

``open_writer`` is what ``SqliteStore.open`` runs on the writer's thread; ``migrate``
applies the numbered migrations of ``relay/sql/migrations`` (also used by tests and the
benchmarks to build databases).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import sqlite3
import time
from pathlib import Path

from relay import sql
from relay.errors import StorageError
from relay.records import Action
from relay.sections import StorageConfig
from relay.store.verbs import audit_row

log = logging.getLogger("relay.store")


def open_failure(path: Path, exc: sqlite3.DatabaseError) -> str:
    """Why the database could not be opened, and what to do about it."""
    if getattr(exc, "sqlite_errorname", "").startswith("SQLITE_READONLY"):
        return (
            f"{path}: the database file is read-only ({exc}); relay must write it: make it "
            f"writable for the user relay runs as (chown that user {path}; chmod 600 {path}) "
            "and check that its file system is not mounted read-only"
        )
    if not os.access(path, os.W_OK) or not os.access(path.parent or Path("."), os.W_OK):
        return (
            f"{path}: cannot write the database or its directory ({exc}); relay needs write "
            "access to both (for the -wal and -shm files): fix the permissions or the mount"
        )
    return (
        f"{path}: cannot open the database ({exc}); if the file is damaged, restore a backup "
        "or point storage.path at a new file"
    )


def lock_database(path: Path) -> int:
    """Take ``<database>.lock`` (flock, exclusive) for as long as this relay runs; return its
    file descriptor. StorageError, naming the database and the other process, if another
    relay holds it.

    A second relay on the same SQLite file would release the first one's leases at start
    and send the deliveries in flight again. SQLite's own locks cannot tell (they are taken
    per transaction), so a lock file says it: the kernel drops a flock when its process
    ends, even by SIGKILL, so a crash never leaves a stale lock behind. The sqlite3 shell
    and relay's read-only commands do not take it and work beside a running relay.
    """
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StorageError(
            f"{lock_path}: cannot create the lock file beside the database ({exc.strerror}); "
            "relay needs write access to the database's directory"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise StorageError(f"{lock_path}: cannot lock ({exc.strerror})") from None
        raise StorageError(
            f"{path} is in use by another relay (pid {holder}); stop it first, or give this "
            "one its own storage.path (several relays on one database need PostgreSQL)"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def create_private(path: Path) -> None:
    """Create the database file readable by its owner only (0600); SQLite's WAL copies it."""
    if path.parent and not path.parent.exists():
        raise StorageError(f"{path}: directory {path.parent} does not exist; create it")
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def open_writer(path: Path, config: StorageConfig) -> tuple[sqlite3.Connection, int]:
    """On the writer thread: connect, set the pragmas, migrate, release stale leases (how
    many: the second value)."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
    try:
        db.execute(f"PRAGMA busy_timeout = {int(config.busy_timeout * 1000)}")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()
        if not mode or str(mode[0]).lower() != "wal":
            raise StorageError(f"{path}: could not switch to WAL mode (got {mode})")
        db.execute(f"PRAGMA synchronous = {config.durability.upper()}")
        db.execute("PRAGMA foreign_keys = ON")
        migrate(db, path)
        # No attempt of an earlier process is still running (lock_database made sure no
        # other relay is), so every lease is stale. This is also the first real write: a
        # file SQLite could only open read-only fails here, at start, with its path.
        released = db.execute(sql.queries()["release_leases"]).rowcount
    except BaseException:
        db.close()
        raise
    return db, released


def close_writer(db: sqlite3.Connection) -> None:
    """A last checkpoint that leaves the WAL empty when it can, and never waits: a reader
    that keeps a transaction open (Litestream holds one, so that no checkpoint overtakes
    what it has copied) would make it wait the whole busy_timeout, 5 s added to every stop
    and so to every restart."""
    with contextlib.suppress(sqlite3.Error):
        db.execute("PRAGMA busy_timeout = 0")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def migrate(db: sqlite3.Connection, path: Path | str = "database") -> int:
    """Apply every migration newer than ``PRAGMA user_version``, each atomically."""
    current = int(db.execute("PRAGMA user_version").fetchone()[0])
    known = sql.migrations()
    latest = known[-1][0] if known else 0
    if current > latest:
        raise StorageError(
            f"{path}: schema version {current} is newer than this relay knows ({latest}); "
            "run a newer relay or restore a backup taken before the upgrade"
        )
    for number, name, script in known:
        if number <= current:
            continue
        try:
            db.executescript(
                f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;"
            )
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise StorageError(f"{path}: migration {name} failed: {exc}") from None
        log.info("store.migrated", extra={"fields": {"migration": name}})
    return latest


def record_offline(
    path: Path, action: str, target: str | None, result: dict[str, object], actor: str
) -> bool:
    """Append an operator action to the audit trail of a database no relay has open (the
    CLI's backup while relay is stopped). False, and nothing written, if a relay holds it:
    that relay records what goes through it."""
    try:
        lock = lock_database(path)
    except StorageError:
        return False
    try:
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
            migrate(db, path)
            offline = Action(actor, "local", action, target)
            db.execute(sql.queries()["audit_insert"], audit_row(offline, time.time(), result))
    finally:
        os.close(lock)
    return True

"""Reads for people on a read-only SQLite connection. In WAL mode a reader never blocks the
writer; the CLI opens one on the file whether or not relay runs."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from relay.errors import StorageError
from relay.store.clauses import SQLITE
from relay.store.reader import SqlReader


@contextlib.contextmanager
def read_only(path: Path | str) -> Iterator[SqliteReader]:
    """A Reader on ``path``, opened read-only: it never writes and never blocks relay."""
    uri = f"file:{Path(path).resolve()}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: cannot open it to read ({exc})") from None
    try:
        conn.execute("PRAGMA query_only = ON")
        yield SqliteReader(conn)
    finally:
        conn.close()


class SqliteReader(SqlReader):
    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(conn, SQLITE)
        self._sqlite = conn

    def backup(self, target: Path) -> int:
        """An online, consistent copy: SQLite's backup API in one step, under one read
        transaction, so it holds exactly what was committed when it began (WAL readers do
        not block relay's writer). Returns the bytes written."""
        try:
            if target.exists():
                raise StorageError(f"{target}: already exists; choose a new file name")
            if not target.parent.is_dir():
                raise StorageError(f"{target.parent}: no such folder; create it first")
            partial = target.with_name(target.name + ".partial")
            try:
                with contextlib.closing(sqlite3.connect(partial)) as out:
                    self._sqlite.backup(out)
                    out.execute("PRAGMA journal_mode = DELETE")
                    check = out.execute("PRAGMA integrity_check").fetchone()[0]
            except sqlite3.Error as exc:
                partial.unlink(missing_ok=True)
                raise StorageError(f"{target}: cannot write the copy ({exc})") from None
            if check != "ok":
                partial.unlink(missing_ok=True)
                raise StorageError(f"{target}: the copy failed its integrity check ({check})")
            partial.rename(target)
            return target.stat().st_size
        except OSError as exc:  # a name too long, no permission, a full disk, …
            raise StorageError(f"{target}: cannot write the copy ({exc.strerror})") from None

"""relay's own ingest transaction on a scratch database, for ``relay check-storage``
(relay.storagecheck times it): one event and its delivery, committed as ingest commits
them, with the durability asked for."""

from __future__ import annotations

from pathlib import Path

from relay import sql
from relay.records import NewEvent
from relay.sections import StorageConfig
from relay.store.batch import event_row
from relay.store.sqlite.files import close_writer, open_writer


class CommitProbe:
    """A scratch database at ``path``; ``commit(event)`` stores the event and a delivery to
    its first destination in one transaction. ``close()`` when done."""

    def __init__(self, path: Path, durability: str) -> None:
        config = StorageConfig.model_validate({"path": path, "durability": durability})
        self._db, _ = open_writer(path, config)
        self._q = sql.queries()

    def commit(self, event: NewEvent, now: float) -> None:
        db, q = self._db, self._q
        db.execute("BEGIN IMMEDIATE")
        db.execute(q["insert_event"], event_row(event))
        db.execute(q["insert_delivery"], (event.id, event.destinations[0], now, now, now, None))
        db.execute("COMMIT")

    def close(self) -> None:
        close_writer(self._db)

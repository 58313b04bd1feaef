"""Upgrades from every release (issue 31): each database here was written by a released
relay with its own code (``make_fixture.py``, the command in its docstring) and holds rows
in every state. Today's relay opens it: the migrations run, every row is still there with
the same meaning, the pending deliveries (a paused destination's, and one whose attempt
was in flight when that relay was killed) are delivered, and the store keeps its promises
on the migrated file (a provider's retry of an old event is a duplicate; a dead delivery
can be replayed). An older relay on a newer database refuses in one line naming both
schema versions and writes nothing: shown with today's relay on a database one version
ahead of it, which is what today's relay will meet when it is the older one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from relay import sql
from relay.config import load_config
from relay.store import open_store
from tests import postgres
from tests.helpers import Receiver, sign, wait_for
from tests.pebble import free_port
from tests.process import RelayProcess, run_cli
from tests.upgrade.make_fixture import QUERIES, SECRET, config

HERE = Path(__file__).resolve().parent
RELEASES = sorted(p.stem.removeprefix("relay-") for p in HERE.glob("relay-*.db"))
DUMPS = sorted(p.name.removeprefix("relay-").removesuffix(".pg.sql") for p in HERE.glob("*.pg.sql"))


def manifest(version: str) -> dict[str, list[list[Any]]]:
    data: dict[str, list[list[Any]]] = json.loads((HERE / f"relay-{version}.json").read_text())
    return data


def _rows(found: list[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows as the manifest keeps them (PostgreSQL's booleans as SQLite's 0 and 1)."""
    return [[int(v) if isinstance(v, bool) else v for v in row] for row in found]


def _same_meaning(before: dict[str, list[list[Any]]], after: dict[str, list[list[Any]]]) -> None:
    for table in ("events", "audit", "rejections"):
        assert after[table] == before[table], table
    # A lease is released when the next relay opens the file (docs/guarantees.md): the
    # delivery that was in flight is pending, unleased; everything else is as it was.
    expected = [[*row[:5], 0, *row[6:]] for row in before["deliveries"]]
    assert after["deliveries"] == expected


def _receivers_config(folder: Path, storage: str, receiver: Receiver) -> Path:
    urls = dict.fromkeys(("ok", "bad", "slow"), receiver.url)
    path = config(folder, storage, 0, free_port(), urls)  # the CLI finds the admin port
    path.write_text(path.read_text().replace("paused = true", "paused = false"))  # resume
    return path


@pytest.mark.parametrize("version", RELEASES)
async def test_a_released_sqlite_database_migrates_and_keeps_its_promises(
    tmp_path: Path, receiver: Receiver, version: str
) -> None:
    db = tmp_path / "relay.db"
    shutil.copy(HERE / f"relay-{version}.db", db)
    before = manifest(version)
    path = _receivers_config(tmp_path, f'path = "{db}"', receiver)
    settings = load_config(path)
    store = await open_store(settings.storage)  # migrates; releases the dead relay's lease
    await store.close()
    with sqlite3.connect(db) as conn:
        after = {name: _rows(list(conn.execute(q))) for name, q in QUERIES.items()}
        schema = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
    assert schema == sql.migrations()[-1][0] >= before["user_version"][0][0]
    _same_meaning(before, after)
    await _serve_and_check(path, receiver, lambda q: _sqlite(db, q))


def _sqlite(db: Path, statement: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        found = list(conn.execute(statement))
    conn.close()
    return found


async def _serve_and_check(path: Path, receiver: Receiver, query: Any) -> None:
    """Today's relay on the migrated database: what was pending is delivered, an old key
    is still a duplicate, a new event goes through, and a dead delivery replays."""
    import aiohttp

    pending = query("SELECT count(*) FROM deliveries WHERE state = 'pending'")[0][0]
    assert pending == 6  # five held by the paused destination, one leased when killed
    relay = RelayProcess(path).start(timeout=20)
    try:
        await wait_for(lambda: len(receiver.received) >= pending, timeout=30)
        async with aiohttp.ClientSession() as session:
            for key, body in (
                ("inv-0", b'{"type": "invoice.paid", "n": 0}'),
                ("new-1", b'{"type": "invoice.paid"}'),
            ):
                headers = {"X-Signature": sign(body, SECRET), "X-Request-Id": key}
                async with session.post(
                    f"http://127.0.0.1:{relay.port}/in/demo", data=body, headers=headers
                ) as response:
                    answer = await response.json()
                assert response.status == 200
                assert answer["duplicate"] is (key == "inv-0"), answer
        await wait_for(
            lambda: query("SELECT count(*) FROM deliveries WHERE state = 'pending'")[0][0] == 0,
            timeout=30,
        )
        replayed = run_cli(
            "replay", "--destination", "bad", "--again", "--json", "--config", str(path)
        )
        assert replayed.returncode == 0, replayed.stderr
        assert json.loads(replayed.stdout)["replayed"] >= 1
        assert relay.terminate() == 0
    finally:
        relay.ensure_stopped()


def test_an_older_relay_refuses_a_newer_database_and_writes_nothing(tmp_path: Path) -> None:
    version = RELEASES[-1]
    db = tmp_path / "relay.db"
    shutil.copy(HERE / f"relay-{version}.db", db)
    latest = sql.migrations()[-1][0]
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {latest + 1}")  # a version ahead of this relay
    conn.close()
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    path = config(
        tmp_path,
        f'path = "{db}"',
        0,
        0,
        dict.fromkeys(("ok", "bad", "slow"), "http://127.0.0.1:9/"),
    )
    started = run_cli("serve", "--config", str(path))
    assert started.returncode == 1
    lines = started.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert f"schema version {latest + 1} is newer than this relay knows ({latest})" in lines[0]
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
    wal = db.with_name(db.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0


def _restore(version: str, sockets: Path) -> str:
    name = f"up_{version.replace('.', '_')}_{uuid.uuid4().hex[:8]}"
    url = postgres.create_database(sockets, name)
    bindir = postgres.binaries()
    assert bindir is not None
    dump = HERE / f"relay-{version}.pg.sql"
    subprocess.run(
        [
            str(bindir / "psql"),
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-f",
            str(dump),
        ],
        check=True,
        capture_output=True,
    )
    return url


@pytest.mark.parametrize("version", DUMPS)
async def test_a_released_postgresql_dump_migrates_and_keeps_its_promises(
    tmp_path: Path, pg_sockets: Path, receiver: Receiver, version: str
) -> None:
    import psycopg

    url = _restore(version, pg_sockets)
    path = _receivers_config(tmp_path, f'url = "{url}"', receiver)

    def query(statement: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(url, autocommit=True) as conn:
            return list(conn.execute(statement).fetchall())

    before = _rows(query(QUERIES["events"]))
    store = await open_store(load_config(path).storage)  # migrates (no lease released)
    await store.close()
    assert _rows(query(QUERIES["events"])) == before
    known = sql.migrations("postgresql")[-1][0]
    assert query("SELECT max(version) FROM relay_migrations")[0][0] == known
    # On PostgreSQL a lease runs out rather than being released at start (other relays
    # may hold theirs): the killed relay's lease had 1 s of margin, long past.
    await _serve_and_check(path, receiver, query)

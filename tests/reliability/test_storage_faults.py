"""The database is read-only, or corrupt, when relay starts: a clear error, nothing lost.

A database that fails while relay runs (locked, full) is covered by test_faults.py and
test_disk_full.py: writes then get 503 and relay recovers without a restart.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import Receiver, mount, post, query, running, settings_for, wait_for
from tests.process import run_cli, write_config


@pytest.fixture
def read_only_view(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A directory and a read-only bind mount of it (a read-only file system, even for root)."""
    writable, view = tmp_path / "rw", tmp_path / "ro"
    writable.mkdir()
    view.mkdir()
    mount("--bind", str(writable), str(view))
    try:
        yield writable, view
    finally:
        subprocess.run(["umount", "-l", str(view)], check=False)


async def test_read_only_database_at_start_is_refused_clearly(
    read_only_view: tuple[Path, Path], receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    writable, view = read_only_view
    async with running(settings_for(writable / "relay.db", receiver.url)) as relay:
        assert (await post(client, relay.port, b'{"n": 1}'))[0] == 200
        await wait_for(lambda: len(receiver.received) == 1)
    mount("-o", "remount,ro,bind", str(view))
    config = write_config(view.parent / "relay.toml", view / "relay.db", receiver.url)
    result = run_cli("serve", "--config", str(config))
    assert result.returncode == 1
    assert "relay.db" in result.stderr
    assert "write access" in result.stderr, result.stderr
    # The data acknowledged before is still there, untouched.
    assert query(writable / "relay.db", "SELECT count(*) FROM events") == [(1,)]


def test_corrupt_database_at_start_is_refused_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"
    db.write_bytes(b"this is not a database, but someone's data " * 200)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    config = write_config(tmp_path / "relay.toml", db, "http://127.0.0.1:9/")
    result = run_cli("serve", "--config", str(config))
    assert result.returncode == 1
    message = result.stderr.strip()
    assert "relay.db" in message
    assert "not a database" in message
    assert "restore" in message  # says what to do
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before  # nothing overwritten


async def test_read_only_database_file_in_a_writable_folder_is_named_with_the_fix(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    """Issue 14: relay exited with only "attempt to write a readonly database"."""
    db = tmp_path / "relay.db"
    async with running(settings_for(db, receiver.url)) as relay:
        assert (await post(client, relay.port, b'{"n": 1}'))[0] == 200
        await wait_for(lambda: len(receiver.received) == 1)
    mount("--bind", "-o", "ro", str(db), str(db))  # the file alone, read-only even for root
    try:
        config = write_config(tmp_path / "relay.toml", db, receiver.url)
        result = run_cli("serve", "--config", str(config))
    finally:
        subprocess.run(["umount", str(db)], check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(db) in lines[0]
    assert "read-only" in lines[0]
    assert f"chmod 600 {db}" in lines[0]  # the fix
    assert query(db, "SELECT count(*) FROM events") == [(1,)]

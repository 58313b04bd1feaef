"""The relay command as a process: the entry point runs the operator's commands, and a
backup taken of a relay process under load holds every event acknowledged before it began."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.process import RelayProcess, run_cli, write_config


def _post(port: int, key: str, body: bytes = b'{"type": "invoice.paid"}') -> int:
    signature = "sha256=" + hmac.new(b"test-secret", body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/in/demo",
        data=body,
        headers={"X-Signature": signature, "X-Request-Id": key},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _config(tmp_path: Path) -> Path:
    # max_attempts 1 against a closed port: every delivery is dead after one attempt.
    extra = (
        "max_attempts = 1\n"
        "[admin]\n"
        f'listen = "unix:{tmp_path}/admin.sock"\n'
        'token = "operator-token"\n'
    )
    return write_config(
        tmp_path / "relay.toml", tmp_path / "relay.db", "http://127.0.0.1:9/", extra=extra
    )


def _dead(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM v_dead WHERE replayed = 0").fetchone()[0])


def _until(predicate: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_the_relay_command_runs_the_operator_commands(tmp_path: Path) -> None:
    """The installed entry point, as a process: a read works with relay stopped, and a
    change says plainly that relay is not running (the commands themselves are tested in
    process, tests/test_cli_commands.py)."""
    config = _config(tmp_path)
    relay = RelayProcess(config).start()
    try:
        assert _post(relay.port, "order-0") == 200
        _until(lambda: _dead(tmp_path / "relay.db") == 1)
    finally:
        relay.terminate()
    c = ["--config", str(config)]
    listed = run_cli("events", *c, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [e["idempotency_key"] for e in json.loads(listed.stdout)] == ["order-0"]
    stopped = run_cli("pause", "app", *c)
    assert stopped.returncode == 3
    assert "relay is not running" in stopped.stderr


def test_backup_under_load_holds_every_acknowledged_event(tmp_path: Path) -> None:
    config = _config(tmp_path)
    relay = RelayProcess(config).start()
    acknowledged: list[tuple[float, str]] = []
    stop = threading.Event()

    def load() -> None:
        i = 0
        while not stop.is_set() and i < 20_000:
            key = f"k{i}"
            if _post(relay.port, key) == 200:
                acknowledged.append((time.monotonic(), key))
            i += 1

    feeder = threading.Thread(target=load)
    feeder.start()
    try:
        time.sleep(1.0)
        began = time.monotonic()
        backup = tmp_path / "backup.db"
        result = run_cli("backup", str(backup), "--config", str(config))
    finally:
        stop.set()
        feeder.join(timeout=30)
        relay.terminate()
    assert result.returncode == 0, result.stderr
    before = {key for at, key in acknowledged if at < began}
    assert len(before) > 50
    with contextlib.closing(sqlite3.connect(backup)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {row[0] for row in conn.execute("SELECT idempotency_key FROM events")}
    assert before <= stored
    # And it refuses to overwrite.
    assert run_cli("backup", str(backup), "--config", str(config)).returncode == 1

"""The operator's commands against a real relay process: output, --json, exit codes; and a
backup taken under load that holds every event acknowledged before it began."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import sqlite3
import subprocess
import sys
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


def test_operator_commands(tmp_path: Path) -> None:
    config = _config(tmp_path)
    db = tmp_path / "relay.db"
    relay = RelayProcess(config).start()
    c = ["--config", str(config)]
    try:
        for i in range(3):
            assert _post(relay.port, f"order-{i}") == 200
        _until(lambda: _dead(db) == 3)

        listed = run_cli("events", *c, "--json")
        assert listed.returncode == 0, listed.stderr
        events = json.loads(listed.stdout)
        assert [e["idempotency_key"] for e in events] == ["order-2", "order-1", "order-0"]
        assert all(e["deliveries"] == {"app": "dead"} for e in events)

        table = run_cli("events", *c)
        lines = table.stdout.splitlines()
        assert lines[0].split() == ["ID", "RECEIVED", "(UTC)", "SOURCE", "TYPE", "DELIVERIES"]
        assert len(lines) == 4
        assert all(len(line) <= 80 for line in lines)

        one = run_cli("show", events[0]["id"], *c)
        assert one.returncode == 0
        assert "invoice.paid" in one.stdout
        assert "delivery" in one.stdout
        assert "X-Signature: [redacted]" in one.stdout
        assert (
            json.loads(run_cli("show", events[0]["id"], *c, "--json").stdout)["id"]
            == (events[0]["id"])
        )
        assert run_cli("show", "evt_nope", *c).returncode == 4

        dead = json.loads(run_cli("dead", *c, "--json").stdout)
        assert dead["total"] == 3
        stats = json.loads(run_cli("stats", *c, "--json").stdout)
        assert stats["destinations"]["app"]["dead"] == 3
        assert all(len(x) <= 80 for x in run_cli("stats", *c).stdout.splitlines())

        dry = run_cli("replay", "--destination", "app", "--dry-run", *c)
        assert dry.returncode == 0
        assert dry.stdout.strip() == "3 dead deliveries would be replayed"
        assert run_cli("replay", *c).returncode == 2  # nothing said: refuse, do not guess
        assert run_cli("events", "--since", "soon", *c).returncode == 2

        replayed = run_cli("replay", "--destination", "app", "--json", *c)
        assert replayed.returncode == 0, replayed.stderr
        assert json.loads(replayed.stdout)["replayed"] == 3
        _until(lambda: _dead(db) == 3)  # the replays died too (the port is still closed)

        assert run_cli("pause", "app", *c).stdout.strip() == "app: paused"
        assert run_cli("resume", "app", *c).stdout.strip() == "app: resumed"
        assert run_cli("pause", "nope", *c).returncode == 4

        follower = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "relay",
                "tail",
                *c,
                "--count",
                "1",
                "--timeout",
                "10",
                "--json",
                "--interval",
                "0.1",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert follower.stderr is not None
        assert "following new events" in follower.stderr.readline()  # it is ready
        assert _post(relay.port, "tailed") == 200
        out, _ = follower.communicate(timeout=15)
        assert follower.returncode == 0
        assert json.loads(out)["idempotency_key"] == "tailed"
    finally:
        relay.terminate()
    # Relay stopped: reads still work; changes say plainly that relay is not running.
    assert run_cli("events", *c).returncode == 0
    stopped = run_cli("pause", "app", *c)
    assert stopped.returncode == 3
    assert "relay is not running" in stopped.stderr
    assert run_cli("replay", "--all", *c).returncode == 3
    assert run_cli("events", "--help").returncode == 0


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
        time.sleep(0.3)
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

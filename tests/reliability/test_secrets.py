"""Secrets stay secret: not in logs, not in check-config output; the database is 0600."""

from __future__ import annotations

import hashlib
import hmac
import json
import stat
from pathlib import Path

import aiohttp

from tests.helpers import Receiver, wait_for
from tests.process import RelayProcess, run_cli, write_config

SECRET = "sup3r-s3cret-value-for-grep"


def _sig(body: bytes, key: str) -> str:
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


async def test_no_secret_or_signature_in_logs_and_private_files(
    tmp_path: Path, receiver: Receiver, client: aiohttp.ClientSession
) -> None:
    db = tmp_path / "relay.db"
    config = write_config(tmp_path / "relay.toml", db, receiver.url)
    config.write_text(
        config.read_text().replace('"test-secret"', f'"{SECRET}"').replace('level = "info"', "")
        + '\n[log]\nlevel = "debug"\n'
    )
    relay = RelayProcess(config)
    body = json.dumps({"type": "x"}).encode()
    good, bad = _sig(body, SECRET), _sig(body, "wrong-key")
    try:
        relay.start()
        url = f"http://127.0.0.1:{relay.port}/in/demo"
        for signature in (good, bad):
            async with client.post(url, data=body, headers={"X-Signature": signature}) as r:
                assert r.status == (200 if signature == good else 401)
        await wait_for(lambda: len(receiver.received) == 1)
        assert relay.terminate() == 0
    finally:
        relay.ensure_stopped()
    log = relay.log.read_text()
    assert "event.rejected" in log  # the rejection was logged ...
    for needle in (SECRET, good.removeprefix("sha256="), bad.removeprefix("sha256=")):
        assert needle not in log  # ... without the secret or any signature
    for path in (db, db.with_name("relay.db-wal"), db.with_name("relay.db-shm")):
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_check_config_never_prints_the_secret(tmp_path: Path) -> None:
    config = write_config(tmp_path / "relay.toml", tmp_path / "relay.db", "http://127.0.0.1:9/")
    config.write_text(config.read_text().replace('"test-secret"', f'"{SECRET}"'))
    result = run_cli("check-config", str(config))
    assert result.returncode == 0
    assert SECRET not in result.stdout + result.stderr

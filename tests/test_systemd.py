"""The relay speaks sd_notify: READY=1 once it answers, WATCHDOG=1 on time, STOPPING=1."""

from __future__ import annotations

import hashlib
import hmac
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.process import write_config


def _listening_port(log: Path) -> int | None:
    for line in log.read_text().splitlines():
        if "msg=relay.ready" in line:
            return int(line.rsplit(":", 1)[1].split()[0])
    return None


def test_ready_watchdog_and_stopping(tmp_path: Path) -> None:
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(10)
    config = write_config(tmp_path / "relay.toml", tmp_path / "relay.db", "http://127.0.0.1:9/")
    log = tmp_path / "relay.log"
    env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "relay", "serve", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        first = sock.recv(4096).decode()
        assert first.startswith("READY=1"), first
        # When READY=1 arrives the port already answers.
        port = _listening_port(log)
        assert port is not None
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            assert answer.status == 200

        pings = []
        deadline = time.monotonic() + 5
        while len(pings) < 5 and time.monotonic() < deadline:
            message = sock.recv(4096).decode()
            if message == "WATCHDOG=1":
                pings.append(time.monotonic())
        # They keep coming; how often is watchdog_interval's (the table below), not read off
        # a clock here: on a busy machine two pings may wait in the socket and arrive as one.
        assert len(pings) == 5

        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGTERM)  # twice, as a onefile bootloader may forward it
        messages = []
        for _ in range(20):  # bounded: a few watchdog pings may still come first
            messages.append(sock.recv(4096).decode())
            if messages[-1] == "STOPPING=1":
                break
        assert messages[-1] == "STOPPING=1"
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()


def _wait_for_line(log: Path, needle: str, count: int = 1, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while log.read_text().count(needle) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.read_text().count(needle) >= count, log.read_text()


def _post(port: int, source: str) -> int:
    body = b'{"id": "x"}'
    signature = "sha256=" + hmac.new(b"test-secret", body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/in/{source}",
        data=body,
        headers={"X-Signature": signature, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_sighup_reloads_and_a_broken_file_keeps_the_old_config(tmp_path: Path) -> None:
    second = '[[sources]]\nname = "second"\nverify = "hmac"\nsecret = "test-secret"\n'
    second += 'prefix = "sha256="\n'
    config = write_config(tmp_path / "relay.toml", tmp_path / "relay.db", "http://127.0.0.1:9/")
    original = config.read_text()
    log = tmp_path / "relay.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "relay", "serve", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 10
        while _listening_port(log) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        port = _listening_port(log)
        assert port is not None, log.read_text()
        assert _post(port, "second") == 404
        # A valid change: the new source answers, without a restart.
        config.write_text(original.replace("[[destinations]]", second + "[[destinations]]"))
        proc.send_signal(signal.SIGHUP)
        _wait_for_line(log, "config.reloaded")
        assert _post(port, "second") == 200
        # A broken file: refused with the reason; the relay goes on with what it had.
        config.write_text(original.replace('verify = "hmac"', 'verify = "hmac"\nsecert = "x"'))
        proc.send_signal(signal.SIGHUP)
        _wait_for_line(log, "config.reload_refused")
        assert "secert" in log.read_text()
        assert proc.poll() is None
        assert _post(port, "second") == 200
        assert _post(port, "demo") == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("200000", None, 0.1),  # half of systemd's WATCHDOG_USEC, as sd_watchdog_enabled says
        ("30000000", "self", 15.0),
        ("0", None, None),  # no watchdog
        ("", None, None),
        ("abc", None, None),
        ("200000", "1", None),  # meant for another process (a wrapper)
    ],
)
def test_the_watchdog_pings_at_half_its_timeout(
    monkeypatch: pytest.MonkeyPatch, usec: str, pid: str | None, expected: float | None
) -> None:
    from relay.systemd import watchdog_interval

    monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid is None:
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
    else:
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()) if pid == "self" else pid)
    assert watchdog_interval() == expected

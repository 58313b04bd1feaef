"""Run the relay as a real subprocess (``python -m relay serve``) for crash and CLI tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

READY = re.compile(r"msg=relay\.ready listen=(\S+)")


def write_config(
    path: Path, db: Path, url: str, *, durability: str = "full", extra: str = ""
) -> Path:
    path.write_text(
        f"""
[server]
listen = "127.0.0.1:0"
shutdown_grace = "2s"
[storage]
path = "{db}"
durability = "{durability}"
[[sources]]
name = "demo"
verify = "hmac"
secret = "test-secret"
prefix = "sha256="
idempotency_key = "header:X-Request-Id"
[[destinations]]
name = "app"
url = "{url}"
timeout = "2s"
max_concurrency = 20
[destinations.retry]
base = "50ms"
cap = "200ms"
{extra}
[[routes]]
source = "demo"
destinations = ["app"]
"""
    )
    return path


class RelayProcess:
    def __init__(self, config: Path, cwd: Path | None = None) -> None:
        self.config = config
        self.cwd = cwd  # relay's working directory (None: the test's)
        self.log = config.with_suffix(".log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self, timeout: float = 10.0) -> RelayProcess:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "relay", "serve", "--config", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                cwd=self.cwd,
                start_new_session=True,  # its own group: a kill reaches all of it
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_bytes()[offset:].decode(errors="replace")
            if match := READY.search(text):
                self.port = int(match.group(1).rsplit(":", 1)[1])
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"relay exited {self.proc.returncode}:\n{text}")
            time.sleep(0.02)
        raise AssertionError(f"relay not ready within {timeout}s:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL to relay's process group, as a user killing what they started would."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def ensure_stopped(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relay", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
        check=False,
    )

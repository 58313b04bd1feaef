"""Real agent processes for tests: a public relay with an agent group, and `relay agent`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import SECRET
from tests.process import RelayProcess

TOKEN = "agent-token-for-tests"


def relay_config(
    tmp: Path,
    url: str,
    *,
    destination: str = "",
    extra: str = "",
    agent: bool = True,
) -> Path:
    """A public relay: source demo (HMAC) routed to destination 'internal', which is
    reached through the agent group 'office' (or directly, with ``agent=False``)."""
    path = tmp / "relay.toml"
    path.write_text(
        f"""
[server]
listen = "127.0.0.1:0"
shutdown_grace = "2s"
[storage]
path = "{tmp / "relay.db"}"
[[sources]]
name = "demo"
verify = "hmac"
secret = "{SECRET}"
prefix = "sha256="
idempotency_key = "header:X-Request-Id"
[[agents]]
name = "office"
token = "{TOKEN}"
heartbeat = "2s"
[[destinations]]
name = "internal"
url = "{url}"
timeout = "2s"
max_concurrency = 20
{'agent = "office"' if agent else ""}
{destination}
[destinations.retry]
base = "50ms"
cap = "200ms"
[[routes]]
source = "demo"
destinations = ["internal"]
{extra}
"""
    )
    return path


def agent_config(
    tmp: Path, relay_url: str, allow: str, *, token: str = TOKEN, name: str = "agent"
) -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(
        f"""
[agent]
relay = "{relay_url}"
name = "office"
token = "{token}"
allow = [{allow}]
credits = 10
heartbeat = "2s"
"""
    )
    return path


class AgentProcess:
    def __init__(self, config: Path) -> None:
        self.config = config
        self.log = config.with_suffix(".log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True, timeout: float = 10.0) -> AgentProcess:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "relay", "agent", "--config", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,  # its own process group: kill() takes all of it
            )
        if wait:
            self.wait_for(r"msg=agent\.connected", offset, timeout)
        return self

    def wait_for(self, pattern: str, offset: int = 0, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_bytes()[offset:].decode(errors="replace")
            if re.search(pattern, text):
                return
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}:\n{text}")
            time.sleep(0.02)
        raise AssertionError(f"{pattern} not in the agent's log:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL to the agent's process group, as a user's kill of the one-file executable
        must be (a launcher and its child), not only to the pid."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=15)

    def ensure_stopped(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def relay_url(relay: RelayProcess) -> str:
    return f"http://127.0.0.1:{relay.port}"

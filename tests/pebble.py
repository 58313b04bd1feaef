"""A real ACME server for tests: Debian's ``pebble`` (Let's Encrypt's test CA) with
``pebble-challtestsrv`` as its DNS, on 127.0.0.1.

challtestsrv answers every A query with 127.0.0.1 (and no AAAA), so any test domain
resolves to the machine; Pebble validates HTTP-01 and TLS-ALPN-01 on the ports the test
gives it (the relay's). Pebble's own HTTPS certificate is made here, from a CA the test
trusts (``ca_file``); the roots Pebble signs with are fetched from its management port.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.certs import make_ca, make_leaf

DOMAIN = "relay.test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def installed() -> bool:
    return shutil.which("pebble") is not None and shutil.which("pebble-challtestsrv") is not None


@dataclass
class Pebble:
    directory: str  # the ACME directory URL
    ca_file: Path  # trusts Pebble's own HTTPS (for relay's tls.ca_file)
    management: str  # https://127.0.0.1:port
    http_port: int  # where Pebble validates HTTP-01
    tls_port: int  # where Pebble validates TLS-ALPN-01
    folder: Path
    pid: int  # the ACME server's process (a test may stop it for a while: SIGSTOP)

    def roots(self) -> Path:
        """The root Pebble issues under (new at every start), as a PEM file."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        with urllib.request.urlopen(f"{self.management}/roots/0", context=context) as r:  # noqa: S310
            pem = r.read()
        path = self.folder / "pebble-root.pem"
        path.write_bytes(pem)
        return path


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited {proc.returncode}:\n{log.read_text()}")
        time.sleep(0.05)
    raise RuntimeError(f"{proc.args}: nothing on port {port} after {timeout}s")


@contextlib.contextmanager
def pebble(folder: Path, http_port: int, tls_port: int) -> Iterator[Pebble]:
    """Pebble and its DNS, validating on ``http_port`` and ``tls_port`` of 127.0.0.1."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = make_ca(folder, "pebble-https-ca")
    cert, key = make_leaf(folder, ["127.0.0.1", "localhost"], ca, "pebble-https")
    acme_port, manage_port, dns_port, chall_manage = (free_port() for _ in range(4))
    config = folder / "pebble.json"
    config.write_text(
        json.dumps(
            {
                "pebble": {
                    "listenAddress": f"127.0.0.1:{acme_port}",
                    "managementListenAddress": f"127.0.0.1:{manage_port}",
                    "certificate": str(cert),
                    "privateKey": str(key),
                    "httpPort": http_port,
                    "tlsPort": tls_port,
                    "ocspResponderURL": "",
                    "externalAccountBindingRequired": False,
                }
            }
        )
    )
    env = {
        **os.environ,
        "PEBBLE_VA_NOSLEEP": "1",  # validate at once, not after up to 15 s
        "PEBBLE_WFE_NONCEREJECT": "5",  # a few bad nonces: the client must retry them
        "PEBBLE_AUTHZREUSE": "0",  # every order validates afresh
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        dns_log = folder / "challtestsrv.log"
        with dns_log.open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [
                        "pebble-challtestsrv",
                        "-defaultIPv4",
                        "127.0.0.1",
                        "-defaultIPv6",
                        "",
                        "-dns01",
                        f"127.0.0.1:{dns_port}",
                        "-http01",
                        "",
                        "-https01",
                        "",
                        "-tlsalpn01",
                        "",
                        "-management",
                        f"127.0.0.1:{chall_manage}",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        _wait_port(chall_manage, procs[-1], dns_log)
        log = folder / "pebble.log"
        with log.open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [
                        "pebble",
                        "-config",
                        str(config),
                        "-dnsserver",
                        f"127.0.0.1:{dns_port}",
                        "-strict=false",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            )
        _wait_port(acme_port, procs[-1], log)
        yield Pebble(
            f"https://127.0.0.1:{acme_port}/dir",
            ca[0],
            f"https://127.0.0.1:{manage_port}",
            http_port,
            tls_port,
            folder,
            procs[-1].pid,
        )
    finally:
        for proc in procs:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            if proc.poll() is None:
                proc.kill()
                proc.wait()

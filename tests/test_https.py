"""HTTPS on the public listener (issue 23), against a real ACME server: Debian's Pebble,
with real validation of TLS-ALPN-01 and HTTP-01 on relay's own ports, then a signed event
over HTTPS that a client trusting Pebble's root verifies, and delivery."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.certs import make_ca, make_leaf
from tests.helpers import Receiver, sign, wait_for
from tests.pebble import DOMAIN, Pebble, free_port, installed, pebble
from tests.process import RelayProcess


@pytest.fixture(autouse=True)
def pebble_installed() -> None:
    if not installed():
        pytest.fail("Debian's pebble is missing: make pebble (as root) installs it")


def https_config(
    path: Path, target: str, port: int, tls: str, *, storage: Path | None = None
) -> Path:
    db = storage or path.with_suffix(".db")
    path.write_text(
        f"""
[server]
listen = "127.0.0.1:{port}"
shutdown_grace = "2s"
[server.tls]
{tls}
[storage]
path = "{db}"
[[sources]]
name = "demo"
verify = "hmac"
secret = "test-secret"
prefix = "sha256="
idempotency_key = "header:X-Request-Id"
[[destinations]]
name = "app"
url = "{target}"
timeout = "2s"
[[routes]]
source = "demo"
destinations = ["app"]
"""
    )
    return path


def acme_tls(p: Pebble, challenge: str, http_port: int | None = None, extra: str = "") -> str:
    lines = [
        "acme = true",
        f'domains = ["{DOMAIN}"]',
        'email = "ops@relay.test"',
        f'directory = "{p.directory}"',
        f'ca_file = "{p.ca_file}"',
        f'challenge = "{challenge}"',
    ]
    if http_port is not None:
        lines.append(f'http_listen = "127.0.0.1:{http_port}"')
    return "\n".join(lines) + "\n" + extra


@pytest.fixture
def ports() -> tuple[int, int]:
    """(HTTPS, HTTP): relay listens there, and Pebble validates there."""
    return free_port(), free_port()


@pytest.fixture
def acme_server(tmp_path: Path, ports: tuple[int, int]) -> Iterator[Pebble]:
    https, http = ports
    with pebble(tmp_path / "pebble", http_port=http, tls_port=https) as server:
        yield server


def trusting(root: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(root))


async def post_https(
    port: int, context: ssl.SSLContext, body: bytes, key: str, session: aiohttp.ClientSession
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", "X-Signature": sign(body), "X-Request-Id": key}
    async with session.post(
        f"https://127.0.0.1:{port}/in/demo",
        data=body,
        headers=headers,
        ssl=context,
        server_hostname=DOMAIN,  # the name the certificate must carry
    ) as response:
        return response.status, await response.json()


class KeptConnection:
    """One TLS connection kept open, with HTTP/1.1 keep-alive requests on it."""

    def __init__(self, port: int, root: Path) -> None:
        import socket

        from cryptography import x509

        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.tls = trusting(root).wrap_socket(raw, server_hostname=DOMAIN)
        der = self.tls.getpeercert(binary_form=True)
        assert der is not None
        self.serial = x509.load_der_x509_certificate(der).serial_number

    def post(self, body: bytes, key: str) -> int:
        import http.client

        head = (
            f"POST /in/demo HTTP/1.1\r\nHost: {DOMAIN}\r\nContent-Type: application/json\r\n"
            f"X-Signature: {sign(body)}\r\nX-Request-Id: {key}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.tls.sendall(head.encode() + body)
        response = http.client.HTTPResponse(self.tls)  # type: ignore[arg-type]
        response.begin()
        response.read()
        assert not response.will_close, "relay closed the kept connection"
        return response.status

    def close(self) -> None:
        self.tls.close()


def facts_of(cert: Path) -> Any:
    from relay.tls import facts

    return facts(cert.read_bytes())


async def expiry_metric(admin: int) -> float:
    headers = {"Authorization": "Bearer admin-secret"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{admin}/metrics", headers=headers) as r,
    ):
        text = await r.text()
    for line in text.splitlines():
        if line.startswith("relay_tls_certificate_expiry_timestamp_seconds "):
            return float(line.split()[1])
    raise AssertionError("no expiry metric")


def served_certificate(port: int, root: Path) -> int:
    """The serial number of the certificate a new connection is shown (verified)."""
    import socket

    from cryptography import x509

    context = trusting(root)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=DOMAIN) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


@pytest.mark.parametrize("challenge", ["tls-alpn-01", "http-01"])
async def test_relay_obtains_a_certificate_and_serves_https(
    tmp_path: Path,
    acme_server: Pebble,
    ports: tuple[int, int],
    receiver: Receiver,
    challenge: str,
) -> None:
    https, http = ports
    tls = acme_tls(acme_server, challenge, http if challenge == "http-01" else None)
    relay = RelayProcess(https_config(tmp_path / "relay.toml", receiver.url, https, tls))
    try:
        relay.start(timeout=60)  # ready only once the certificate is there
        log = relay.log.read_text()
        assert f"msg=acme.validated domain={DOMAIN} challenge={challenge}" in log
        root = acme_server.roots()
        async with aiohttp.ClientSession() as session:
            status, answer = await post_https(
                https, trusting(root), b'{"type": "x.y"}', "k1", session
            )
        assert status == 200
        await wait_for(lambda: len(receiver.received) == 1)
        assert receiver.received[0].headers["X-Relay-Event-Id"] == answer["id"]
        if challenge == "http-01":  # the plain listener sends everything else to HTTPS
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    f"http://127.0.0.1:{http}/in/demo?x=1", data=b"{}", allow_redirects=False
                ) as r,
            ):
                assert r.status == 308
                assert r.headers["Location"] == f"https://127.0.0.1:{https}/in/demo?x=1"
        state = tmp_path / "tls"
        assert (state / f"{DOMAIN}.key").stat().st_mode & 0o777 == 0o600
        assert (state / "account.key").stat().st_mode & 0o777 == 0o600
        assert relay.terminate() == 0
    finally:
        relay.ensure_stopped()


async def test_a_renewed_certificate_reaches_new_connections_and_spares_open_ones(
    tmp_path: Path, acme_server: Pebble, ports: tuple[int, int], receiver: Receiver
) -> None:
    """A first start obtains a certificate. The second start finds it stored (and serves
    it at once), but with renew_before longer than its life renewal is due: relay renews in
    the background, new connections get the new certificate, and a keep-alive connection
    opened on the old one goes on working."""
    https, _ = ports
    config = tmp_path / "relay.toml"
    relay = RelayProcess(
        https_config(config, receiver.url, https, acme_tls(acme_server, "tls-alpn-01"))
    )
    try:
        relay.start(timeout=60)
        assert relay.terminate() == 0
        https_config(
            config,
            receiver.url,
            https,
            acme_tls(acme_server, "tls-alpn-01", extra='renew_before = "100000d"\n'),
        )
        offset = relay.log.stat().st_size
        root = acme_server.roots()
        # The ACME server held still until the keep-alive connection is open: else, on a
        # busy machine, the renewal (due at start) could finish before the test connects,
        # and "first" would already be the renewed certificate.
        os.kill(acme_server.pid, signal.SIGSTOP)
        try:
            relay.start(timeout=60)
            first = served_certificate(https, root)
            # A keep-alive connection opened on the first certificate...
            kept = KeptConnection(https, root)
            assert kept.serial == first
            assert kept.post(b'{"n": 1}', "k1") == 200
        finally:
            os.kill(acme_server.pid, signal.SIGCONT)
        await wait_for(lambda: b"msg=tls.issued" in relay.log.read_bytes()[offset:], timeout=60)
        # ...new connections get the renewed one...
        second = served_certificate(https, root)
        assert second != first
        # ...and the old connection goes on, on its certificate.
        assert kept.post(b'{"n": 2}', "k2") == 200
        assert kept.serial == first
        kept.close()
        assert relay.terminate() == 0
    finally:
        relay.ensure_stopped()
    await wait_for(lambda: len(receiver.received) == 2)


async def test_certificate_files_are_reloaded_on_sighup(tmp_path: Path, receiver: Receiver) -> None:
    ca = make_ca(tmp_path, "files CA")
    cert, key = make_leaf(tmp_path, [DOMAIN], ca, "served")
    port = free_port()
    tls = f'cert_file = "{cert}"\nkey_file = "{key}"\n'
    config = https_config(tmp_path / "relay.toml", receiver.url, port, tls)
    admin = free_port()
    config.write_text(
        config.read_text() + f'[admin]\nlisten = "127.0.0.1:{admin}"\ntoken = "admin-secret"\n'
    )
    relay = RelayProcess(config)
    try:
        relay.start(timeout=20)
        before = served_certificate(port, ca[0])
        assert await expiry_metric(admin) == facts_of(cert).not_after
        # A new pair, written over the old files (as certbot or an operator would).
        new_cert, new_key = make_leaf(tmp_path, [DOMAIN], ca, "next", days=60)
        cert.write_bytes(new_cert.read_bytes())
        key.write_bytes(new_key.read_bytes())
        assert relay.proc is not None
        relay.proc.send_signal(signal.SIGHUP)
        await wait_for(lambda: served_certificate(port, ca[0]) != before, timeout=10)
        assert await expiry_metric(admin) == facts_of(cert).not_after  # the new one's
        async with aiohttp.ClientSession() as session:
            status, _ = await post_https(port, trusting(ca[0]), b"{}", "k1", session)
        assert status == 200
        assert relay.terminate() == 0
    finally:
        relay.ensure_stopped()


async def test_a_stored_certificate_serves_while_the_directory_is_down(
    tmp_path: Path, acme_server: Pebble, ports: tuple[int, int], receiver: Receiver
) -> None:
    https, _ = ports
    config = tmp_path / "relay.toml"
    relay = RelayProcess(
        https_config(config, receiver.url, https, acme_tls(acme_server, "tls-alpn-01"))
    )
    try:
        relay.start(timeout=60)
        assert relay.terminate() == 0
    finally:
        relay.ensure_stopped()
    down = f"https://127.0.0.1:{free_port()}/dir"  # nothing listens there
    text = config.read_text().replace(acme_server.directory, down)
    config.write_text(text)
    relay.start(timeout=20)  # the stored certificate is still valid: it starts
    try:
        root = acme_server.roots()
        async with aiohttp.ClientSession() as session:
            status, _ = await post_https(https, trusting(root), b"{}", "k1", session)
        assert status == 200
        assert relay.terminate() == 0
    finally:
        relay.ensure_stopped()
    # Without a stored certificate, the directory being down is a clear error, exit 1.
    other = tmp_path / "fresh"
    other.mkdir()
    fresh = https_config(
        other / "relay.toml",
        receiver.url,
        free_port(),
        acme_tls(acme_server, "tls-alpn-01").replace(acme_server.directory, down),
    )
    result = subprocess.run(
        [sys.executable, "-m", "relay", "serve", "--config", str(fresh)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert f"ACME directory {down}: cannot reach it" in result.stderr


def test_old_protocols_are_refused(tmp_path: Path) -> None:
    from relay.tls import server_context

    ca = make_ca(tmp_path, "proto CA")
    cert, key = make_leaf(tmp_path, ["127.0.0.1"], ca, "p")
    context = server_context(cert, key)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    # A client that only speaks TLS 1.1 cannot complete a handshake with it.
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    errors: list[BaseException] = []

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            context.wrap_socket(conn, server_side=True).close()
        except (ssl.SSLError, OSError) as exc:
            errors.append(exc)
        finally:
            conn.close()

    thread = threading.Thread(target=serve)
    thread.start()
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():  # Python warns about the old versions: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with (
        pytest.raises((ssl.SSLError, OSError)),
        socket.create_connection(("127.0.0.1", port)) as raw,
    ):
        old.wrap_socket(raw).close()
    thread.join(timeout=5)
    listener.close()
    assert errors  # the server refused it too


def test_check_config_names_what_is_wrong_with_the_tls_section(tmp_path: Path) -> None:
    from tests.process import run_cli

    ca = make_ca(tmp_path, "cc CA")
    cert, _ = make_leaf(tmp_path, [DOMAIN], ca, "a")
    _, other_key = make_leaf(tmp_path, [DOMAIN], ca, "b")
    cases = {
        f'cert_file = "{cert}"\nkey_file = "{other_key}"': "does not match cert_file",
        f'cert_file = "{tmp_path}/missing.crt"\nkey_file = "{other_key}"': "cannot read cert_file",
        'acme = true\ndomains = ["https://hooks.example.com"]': "is not a domain name",
        "acme = true": "needs domains",
        'acme = true\ndomains = ["a.example.com"]\nchallenge = "http-01"': "needs http_listen",
    }
    for tls, message in cases.items():
        config = https_config(tmp_path / "c.toml", "http://127.0.0.1:9/", 8443, tls)
        result = run_cli("check-config", str(config))
        assert result.returncode == 1, tls
        assert "server.tls" in result.stderr, result.stderr
        assert message in result.stderr, (tls, result.stderr)


async def test_an_agent_dials_the_https_listener_with_its_ca_file(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The agent's `wss://` connection goes through the TLS listener (upgrade and all),
    trusting a private CA through `ca_file`; events reach the receiver behind it."""
    from tests.agents import AgentProcess, agent_config, relay_config

    ca = make_ca(tmp_path, "agent CA")
    cert, key = make_leaf(tmp_path, ["127.0.0.1", DOMAIN], ca, "public")
    port = free_port()
    config = relay_config(tmp_path, receiver.url)
    config.write_text(
        config.read_text()
        .replace('listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{port}"')
        .replace(
            'shutdown_grace = "2s"\n',
            f'shutdown_grace = "2s"\n[server.tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n',
        )
    )
    relay = RelayProcess(config)
    agent_file = agent_config(tmp_path, f"https://127.0.0.1:{port}", f'"{receiver.url}"')
    agent_file.write_text(agent_file.read_text() + f'ca_file = "{ca[0]}"\n')
    agent = AgentProcess(agent_file)
    try:
        relay.start(timeout=20)
        agent.start()
        async with aiohttp.ClientSession() as session:
            for i in range(5):
                status, _ = await post_https(port, trusting(ca[0]), b"{}", f"k{i}", session)
                assert status == 200
        await wait_for(lambda: len(receiver.received) == 5, timeout=20)
        assert agent.stop() == 0
        assert relay.terminate() == 0
    finally:
        agent.ensure_stopped()
        relay.ensure_stopped()


async def test_plain_http_to_the_https_port_gets_a_400_that_says_so(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Issue 29: plain HTTP sent to the HTTPS port was closed with no answer (curl: "Empty
    reply from server"); nginx and Caddy answer 400 with a hint. HTTPS still works."""
    ca = make_ca(tmp_path, "plain CA")
    cert, key = make_leaf(tmp_path, [DOMAIN], ca, "served")
    port = free_port()
    tls = f'cert_file = "{cert}"\nkey_file = "{key}"\n'
    relay = RelayProcess(https_config(tmp_path / "relay.toml", receiver.url, port, tls))
    try:
        relay.start(timeout=20)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /in/demo HTTP/1.1\r\nHost: relay\r\nContent-Length: 2\r\n\r\n{}")
        answer = await asyncio.wait_for(reader.read(), timeout=10)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 400 "), answer
        assert b"https://" in answer
        async with aiohttp.ClientSession() as session:
            status, _ = await post_https(port, trusting(ca[0]), b"{}", "k1", session)
        assert status == 200
        assert relay.terminate() == 0
    finally:
        relay.ensure_stopped()

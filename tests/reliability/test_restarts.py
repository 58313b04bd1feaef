"""Restarts lose nothing with systemd's socket (issue 31).

The first relay starts on the database written by release 0.1.0 (tests/upgrade/), so an
upgrade's migration happens while requests wait in the socket.

The test holds the listening socket as systemd's ``relay.socket`` does, and starts relay on
it the way systemd does (``LISTEN_FDS``, ``LISTEN_FDNAMES``, ``LISTEN_PID`` set to the pid
that execs relay: a shell sets it to its own pid, then execs). Signed requests arrive at
300 a second, each on a new connection, while relay is restarted 20 times (SIGTERM, then a
new process on the same socket). Every request must get an answer: no connection refused,
no reset, no 5xx; every acknowledged event is stored and delivered. The same test with
relay binding its own socket (no systemd) sees refusals, so it can tell the difference.
The worst latency of a request during the restarts is printed (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import Receiver, query, sign, wait_for
from tests.process import READY, write_config

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / "dist" / "relay"
RATE = 300  # requests a second
RESTARTS = 20
ADDRESSES = 30


class Holder:
    """What systemd does for relay.socket: bind, listen, keep the socket, and start relay
    (again and again) with it."""

    def __init__(self, tmp: Path, argv: list[str], config: Path, activated: bool) -> None:
        self.tmp = tmp
        self.argv = argv
        self.config = config
        self.activated = activated
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=4096)
        self.port = self.sock.getsockname()[1]
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / "relay.log"
        self.starts = 0

    def start(self) -> float:
        """Start relay; the seconds until it said it was ready."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        command = [*self.argv, "serve", "--config", str(self.config)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        fd = self.sock.fileno()

        def as_systemd_does() -> None:  # in the child: the socket at descriptor 3
            os.dup2(fd, 3)

        if self.activated:
            env |= {"LISTEN_FDS": "1", "LISTEN_FDNAMES": "public"}
            # systemd sets LISTEN_PID in the process it then execs: here a shell does.
            script = "LISTEN_PID=$$ exec " + shlex.join(command)
            command = ["sh", "-c", f"export LISTEN_PID; {script}"]
        started = time.monotonic()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                close_fds=False,  # descriptor 3 must stay open through the exec
                preexec_fn=as_systemd_does if self.activated else None,
                start_new_session=True,
            )
        while READY.search(self.log.read_bytes()[offset:].decode(errors="replace")) is None:
            if self.proc.poll() is not None:
                raise AssertionError(self.log.read_text()[-3000:])
            if time.monotonic() - started > 30:
                raise AssertionError("relay not ready in 30 s")
            time.sleep(0.01)
        self.starts += 1
        return time.monotonic() - started

    def stop(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGTERM)  # the unit's KillMode=mixed sends it
        assert self.proc.wait(timeout=30) == 0, self.log.read_text()[-3000:]

    def ensure_stopped(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.sock.close()


class Load:
    """Signed requests at ``RATE`` a second, each on a new connection, each answer kept."""

    def __init__(self, port: int, tls: ssl.SSLContext | None) -> None:
        # Each connection counts against its address from accept (over TLS through its
        # handshake): after a restart the queued ones arrive at once, so a provider sending
        # 300/s from ten addresses meets max_connections_per_address (64) on a busy machine
        # (121 answered 503 in one run). From thirty (10/s each) it does not
        # (docs/operations.md).
        self.addresses = ADDRESSES
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/in/demo"
        self.tls = tls
        self.answers: list[tuple[str, int | str, float]] = []  # key, status or error, seconds
        self.stop = asyncio.Event()
        self.said: list[bytes] = []  # what answers other than 200 said
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def one(self, session: aiohttp.ClientSession, key: str) -> None:
        body = b'{"key": "%s"}' % key.encode()
        headers = {"X-Signature": sign(body), "X-Request-Id": key}
        started = time.monotonic()
        try:
            async with session.post(
                self.url,
                data=body,
                headers=headers,
                ssl=self.tls if self.tls is not None else True,
                timeout=aiohttp.ClientTimeout(total=30),
            ) as response:
                text = await response.read()
                outcome: int | str = response.status
                if outcome != 200:
                    self.said.append(text[:200])
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            outcome = type(exc).__name__ + ": " + str(exc)[-160:]
            self.said.append(outcome.encode())
        self.answers.append((key, outcome, time.monotonic() - started))

    def sessions(self) -> list[aiohttp.ClientSession]:
        """One client per address, each request on a new connection."""
        return [
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    force_close=True, limit=0, local_addr=(f"127.0.0.{10 + i}", 0)
                )
            )
            for i in range(self.addresses)
        ]

    async def run(self) -> None:
        # From several addresses, as a provider sends (Stripe lists a dozen): the requests
        # queued during a restart stay under the per-address connection cap.
        sessions = self.sessions()
        try:
            await self._send(sessions)
        finally:
            for session in sessions:
                await session.close()

    async def _send(self, sessions: list[aiohttp.ClientSession]) -> None:
        n = 0
        start = time.monotonic()
        while not self.stop.is_set():
            n += 1
            session = sessions[n % len(sessions)]
            task = asyncio.create_task(self.one(session, f"r{n}"))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            await asyncio.sleep(max(0.0, start + n / RATE - time.monotonic()))
        await asyncio.gather(*self._tasks)


async def _restarts(
    tmp_path: Path,
    receiver: Receiver,
    argv: list[str],
    *,
    activated: bool,
    restarts: int,
    tls: bool = False,
    release: str | None = None,
) -> tuple[Load, list[float]]:
    """With ``release``, the first relay starts on that release's database
    (tests/upgrade/), migrating it while the load's connections wait in the socket."""
    db = tmp_path / "relay.db"
    if release is not None:
        shutil.copy(ROOT / "tests" / "upgrade" / f"relay-{release}.db", db)
    config = write_config(tmp_path / "relay.toml", db, receiver.url)
    context = None
    if tls:
        from tests.certs import make_ca, make_leaf

        ca = make_ca(tmp_path, "restart CA")
        cert, key = make_leaf(tmp_path, ["127.0.0.1"], ca, "public")
        text = config.read_text().replace(
            "[storage]", f'[server.tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n[storage]'
        )
        config.write_text(text)
        context = ssl.create_default_context(cafile=str(ca[0]))
    holder = Holder(tmp_path, argv, config, activated)
    port = holder.port
    if not activated:  # relay binds its own: the port is in the config, the holder lets go
        holder.sock.close()
        text = config.read_text().replace('listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{port}"')
        config.write_text(text)
    ready_times: list[float] = []
    try:
        load = Load(port, context)
        if release is None:
            holder.start()
            sending = asyncio.create_task(load.run())
        else:  # the load first: its connections wait while the old database is migrated
            sending = asyncio.create_task(load.run())
            await asyncio.to_thread(holder.start)
        await wait_for(lambda: len(load.answers) > RATE // 2, timeout=20)
        for _ in range(restarts):
            await asyncio.to_thread(holder.stop)
            ready_times.append(await asyncio.to_thread(holder.start))
            before = len(load.answers)
            await wait_for(lambda b=before: len(load.answers) > b + RATE // 5, timeout=30)
            # What queued during the restart is served before the next one: restarts back to
            # back on a machine shared with another suite piled the queue up until clients
            # gave up (30 s), a test of capacity rather than of restarts.
            await wait_for(lambda: load.in_flight < RATE, timeout=60)
        load.stop.set()
        await sending
        if activated:
            acknowledged = {k for k, outcome, _ in load.answers if outcome == 200}

            def delivered() -> bool:
                return acknowledged <= {
                    r.headers.get("X-Request-Id", "") for r in receiver.received
                } or acknowledged <= set(_delivered_keys(receiver))

            await wait_for(delivered, timeout=60)
            stored = {row[0] for row in query(db, "SELECT idempotency_key FROM events")}
            assert acknowledged <= stored, sorted(acknowledged - stored)[:5]
        holder.stop()
    finally:
        holder.ensure_stopped()
    return load, ready_times


def _delivered_keys(receiver: Receiver) -> list[str]:
    import json

    return [json.loads(r.body)["key"] for r in receiver.received]


def _summary(load: Load) -> Counter[str]:
    return Counter(
        str(outcome) if isinstance(outcome, int) else outcome.split(":")[0]
        for _, outcome, _ in load.answers
    )


def _argv(kind: str) -> list[str]:
    if kind == "binary":
        if not BINARY.exists():  # make test builds it: missing is a broken setup
            pytest.fail(f"{BINARY} is not built: run `make binary` (make test does)")
        return [str(BINARY)]
    return [sys.executable, "-m", "relay"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", ["package", "binary"])
async def test_twenty_restarts_on_systemds_socket_answer_every_request(
    tmp_path: Path, receiver: Receiver, kind: str
) -> None:
    load, ready = await _restarts(
        tmp_path, receiver, _argv(kind), activated=True, restarts=RESTARTS, release="0.1.0"
    )
    summary = _summary(load)
    worst = max(seconds for _, _, seconds in load.answers)
    print(
        f"{kind}: {len(load.answers)} requests over {RESTARTS} restarts: {dict(summary)}; "
        f"worst latency {worst:.2f} s; ready in {min(ready):.2f}-{max(ready):.2f} s"
    )
    assert set(summary) == {"200"}, (summary, load.said[:5])


@pytest.mark.timeout(300)
async def test_restarts_over_https_on_systemds_socket_answer_every_request(
    tmp_path: Path, receiver: Receiver
) -> None:
    load, _ = await _restarts(
        tmp_path, receiver, _argv("package"), activated=True, restarts=5, tls=True
    )
    summary = _summary(load)
    assert set(summary) == {"200"}, (summary, load.said[:5])


@pytest.mark.timeout(300)
async def test_without_systemds_socket_restarts_refuse_connections(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The control: relay binding its own socket, as before. It must show refusals, or the
    test above could not tell the difference."""
    load, _ = await _restarts(tmp_path, receiver, _argv("package"), activated=False, restarts=3)
    summary = _summary(load)
    assert any("Connect" in outcome for outcome in summary), summary


@pytest.mark.timeout(120)
async def test_agents_are_told_to_reconnect_and_follow_the_restart(
    tmp_path: Path, receiver: Receiver
) -> None:
    """An agent's WebSocket is closed with 1012 (service restart) once relay's attempts
    are done, not cut: the agent says so, reconnects to the next relay on the same socket,
    and deliveries go on through it."""
    from tests.agents import AgentProcess, agent_config, relay_config

    config = relay_config(tmp_path, receiver.url)
    holder = Holder(tmp_path, _argv("package"), config, activated=True)
    agent = AgentProcess(
        agent_config(tmp_path, f"http://127.0.0.1:{holder.port}", f'"{receiver.url}"')
    )
    try:
        holder.start()
        agent.start()
        async with aiohttp.ClientSession() as session:
            for round_ in range(3):
                body = b'{"round": %d}' % round_
                headers = {"X-Signature": sign(body), "X-Request-Id": f"a{round_}"}
                async with session.post(
                    f"http://127.0.0.1:{holder.port}/in/demo", data=body, headers=headers
                ) as response:
                    assert response.status == 200
                await wait_for(lambda r=round_: len(receiver.received) == r + 1, timeout=20)
                offset = agent.log.stat().st_size
                await asyncio.to_thread(holder.stop)
                await asyncio.to_thread(holder.start)
                await asyncio.to_thread(agent.wait_for, r"msg=agent\.connected", offset, 20)
        text = agent.log.read_text()
        assert text.count("msg=agent.relay_restarting") == 3, text
        assert "msg=agent.disconnected" not in text, text
        assert agent.stop() == 0
        holder.stop()
    finally:
        agent.ensure_stopped()
        holder.ensure_stopped()


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("count", "server"),
    [(200, "max_connections = 20"), (1800, 'header_timeout = "1s"')],
    ids=["over-max-connections", "over-header-timeout"],
)
async def test_a_tls_burst_waits_in_the_queue_and_is_served(
    tmp_path: Path, receiver: Receiver, count: int, server: str
) -> None:
    """What waited in the socket during a restart arrives at once: signed webhooks over
    TLS, each on a new connection whose ClientHello is already sent.
    - 200 against max_connections = 20. Before: relay accepted 64 at a time and each past
      the 20th evicted an older connection whose handshake it had not done yet (the HTTPS
      test above saw 18% ServerDisconnected on a busy machine; here 180 of 200 were cut).
    - 1,800 against header_timeout = 1 s. Before the cap on handshakes at once, relay
      accepted them all and started every handshake together: most ran out of the time a
      connection has from accept to its first request (1,536 of 1,800 cut, beside another
      suite; with 500 ms, 1,189 on an idle machine, but 500 ms was too tight for the fix
      too with three suites on two cores).
    Now a connection relay owes a handshake is not evicted, at most 64 handshakes run at
    once, and the rest wait in the socket's queue (no deadline of relay's runs there): every
    one is answered 200."""
    from tests.certs import make_ca, make_leaf

    config = write_config(tmp_path / "relay.toml", tmp_path / "relay.db", receiver.url)
    ca = make_ca(tmp_path, "burst CA")
    cert, key = make_leaf(tmp_path, ["127.0.0.1"], ca, "public")
    tls = f'[server.tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n'
    text = config.read_text().replace("[server]", f"[server]\n{server}")
    config.write_text(text.replace("[storage]", tls + "[storage]"))
    context = ssl.create_default_context(cafile=str(ca[0]))
    holder = Holder(tmp_path, _argv("package"), config, activated=True)
    load = Load(holder.port, context)  # its sessions, from thirty addresses
    sessions = load.sessions()
    try:
        sending = [
            asyncio.create_task(load.one(sessions[n % len(sessions)], f"b{n}"))
            for n in range(count)
        ]
        await wait_for(lambda: _queued(holder.port) >= count, timeout=60)
        await asyncio.to_thread(holder.start)
        await asyncio.gather(*sending)
        holder.stop()
    finally:
        holder.ensure_stopped()
        for session in sessions:
            await session.close()
    summary = _summary(load)
    assert summary == {"200": count}, (summary, load.said[:5])


def _queued(port: int) -> int:
    """Connections waiting in the listening socket's accept queue (for a socket in LISTEN,
    the rx_queue column of /proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
            return int(fields[4].split(":")[1], 16)
    return 0

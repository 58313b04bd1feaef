"""Agent groups on the public relay: the other end of ``relay agent`` (``relay.agent``).

An agent inside a private network dials out to ``GET /agent/connect`` on the public
listener (WebSocket; the same listener and proxy as ``/in/…``), names its group and
presents a token, says how many deliveries it takes at once (its credits), and then gets
deliveries and returns results. A destination with ``agent = "office"`` is delivered by
``AgentHub.attempt`` instead of an HTTP request of the relay's own; everything else about
the delivery (leases, retries, dead letters, the circuit, rate limits, ordering, metrics)
is the lane's, as for a direct destination.

The protocol (JSON text frames; bodies base64, so binary bodies arrive byte-exact):

    agent → relay  {"type": "hello", "credits": 10, "version": "…"}
    relay → agent  {"type": "welcome", "group": "office", "heartbeat": 15}
    relay → agent  {"type": "deliver", "lease": "42:7", "url": "…", "headers": [[k, v], …],
                    "body": "<base64>", "timeout": 10.0, "keep": 512, "event_id": "evt_…"}
    agent → relay  {"type": "result", "lease": "42:7", "status": 200, "error": null,
                    "excerpt": "…", "headers": "[[k, v], …]", "retry_after": null,
                    "duration_ms": 3.1, "started_at": 1764…, "permanent": false}

    relay → agent  {"type": "error", "error": "result.status: Input should be …"}

``lease`` is the delivery id and its lease's fencing id: a result that comes back under a
lease the relay no longer holds (it expired, or the delivery went again after the agent's
connection was lost) changes nothing in the store. WebSocket pings both ways (aiohttp's
heartbeat) find a half-open connection within about 1.5 heartbeats.

Every frame an agent sends is parsed strictly (``relay.agentframes``). A malformed hello
closes the connection (1008, with the reason); any other malformed frame is answered with
an ``error`` frame, and when it names a lease in flight, that attempt is recorded as failed
by the agent (it counts towards ``max_attempts``), rather than left to its lease.

A result must come back while its lease holds: the attempt waits the destination's timeout
plus ``TRANSIT``, but never more than half the lease margin beyond the timeout, so the "no
result from the agent" outcome is recorded under the lease that sent it, whatever
``lease_margin`` is (with a margin of 5 s or less it arrived after the lease had ended, was
fenced out, and a silent agent's deliveries went out again uncounted, for ever).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMessage, WSMsgType, web

from relay import delivery
from relay.agentframes import FrameError, Hello, Result, lease_of, parse
from relay.log import Throttled
from relay.metrics import Metrics
from relay.network import client_address
from relay.records import Claim, EventPayload
from relay.sections import AgentGroupConfig, DestinationConfig

log = logging.getLogger("relay.agents")

HEARTBEAT = 15.0  # seconds between pings; a silent peer is dropped after 1.5 of them
HELLO_WAIT = 10.0  # seconds an agent has to say hello after connecting
TRANSIT = 5.0  # seconds a result may take beyond the attempt's timeout to come back


class Returned(Exception):
    """The delivery never reached its receiver through an agent (none connected, or the
    connection was lost with it): its lease goes back and it is not counted as an attempt."""


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(eq=False)
class Connection:
    """One connected agent."""

    group: str
    ws: web.WebSocketResponse
    credits: int
    address: str | None
    agent_id: str = field(default_factory=lambda: secrets.token_hex(4))
    inflight: dict[str, asyncio.Future[delivery.AttemptResult]] = field(default_factory=dict)
    connected_at: float = field(default_factory=time.time)

    @property
    def free(self) -> int:
        return max(0, self.credits - len(self.inflight))


class AgentHub:
    def __init__(
        self,
        groups: Iterable[AgentGroupConfig],
        metrics: Metrics,
        wake: Callable[[str], None] = lambda group: None,
        heartbeat: float = HEARTBEAT,
        trusted: tuple[Any, ...] = (),
        max_body: int = 1024 * 1024,
        lease_margin: float = 30.0,
    ) -> None:
        self._metrics = metrics
        # See the module docstring: a result is awaited within the lease, by construction.
        self._transit = min(TRANSIT, lease_margin / 2)
        self._refused = Throttled(log, "agent.refused")
        self._bad_frames = Throttled(log, "agent.bad_frame")
        self._sending: set[asyncio.Task[None]] = set()
        self.wake = wake  # the app points it at the scheduler
        self._heartbeat = heartbeat
        self._trusted = trusted
        self._max_message = 2 * max_body + 256 * 1024  # base64 and headers around a body
        self._tokens: dict[str, list[bytes]] = {}
        self._heartbeats: dict[str, float] = {}
        self._connections: dict[str, list[Connection]] = {}
        self._closing: set[asyncio.Future[bool]] = set()
        self.last_seen: dict[str, float] = {}  # group: when an agent of it was last connected
        self.update(groups)

    def update(self, groups: Iterable[AgentGroupConfig]) -> None:
        """A reloaded config: new tokens take effect for new connections at once; agents
        of a removed group, or whose token was revoked, are disconnected."""
        groups = list(groups)
        self._tokens = {g.name: [token_digest(t) for t in g.token_values()] for g in groups}
        self._heartbeats = {g.name: g.heartbeat for g in groups}
        for name, connections in self._connections.items():
            if name not in self._tokens:
                for conn in connections:
                    task = asyncio.ensure_future(conn.ws.close(message=b"group removed"))
                    self._closing.add(task)
                    task.add_done_callback(self._closing.discard)

    async def restarting(self) -> None:
        """relay is stopping (its attempts through agents are finished): tell every agent
        to reconnect (1012, service restart), rather than cutting its connection. The
        agent reconnects at once, to the next relay on the same socket."""
        connections = [c for group in self._connections.values() for c in group]
        await asyncio.gather(
            *(
                c.ws.close(code=WSCloseCode.SERVICE_RESTART, message=b"relay restarting")
                for c in connections
            ),
            return_exceptions=True,
        )

    def status(self) -> dict[str, dict[str, Any]]:
        """Per group: connected agents, their free credits, and when one was last seen."""
        now = time.time()
        out = {}
        for name in self._tokens:
            connections = self._connections.get(name, [])
            seen = now if connections else self.last_seen.get(name)
            out[name] = {
                "connected": len(connections),
                "credits": sum(c.credits for c in connections),
                "free": self.free(name),
                "last_seen": seen,
                "offline_seconds": None if connections or seen is None else round(now - seen),
            }
        return out

    def free(self, group: str) -> int:
        """Deliveries the group's agents would take now (0: offline, or all busy)."""
        return sum(c.free for c in self._connections.get(group, []))

    # -- the connection --------------------------------------------------------------------

    def _admit(self, request: web.Request) -> tuple[str | None, str]:
        """The group, or why not."""
        group = request.query.get("group") or request.headers.get("X-Relay-Agent-Group") or ""
        given = request.headers.get("Authorization", "")
        scheme, _, token = given.partition(" ")
        expected = self._tokens.get(group)
        if expected is None:
            return None, "unknown group"
        if scheme.lower() != "bearer" or not token:
            return None, "missing token"
        if not token.isascii():  # tokens are ASCII; aiohttp decoded other bytes as it could
            return None, "wrong token"
        digest = token_digest(token.strip())
        matched = [hmac.compare_digest(digest, e) for e in expected]  # no early exit
        if not any(matched):
            return None, "wrong token"
        return group, ""

    async def connect(self, request: web.Request) -> web.StreamResponse:
        """``GET /agent/connect``: authenticate, upgrade, and serve the agent until it goes."""
        address = client_address(request.remote, request.headers, self._trusted)
        group, why = self._admit(request)
        if group is None:
            name = request.query.get("group", "")[:64]
            self._refused.say(time.monotonic(), group=name, reason=why, remote=address)
            self._metrics.agent_refusals.labels(why).inc()
            return web.json_response({"error": why}, status=401)
        heartbeat = self._heartbeats.get(group, self._heartbeat)
        ws = web.WebSocketResponse(heartbeat=heartbeat, max_msg_size=self._max_message)
        if not all(value.isascii() for value in request.headers.values()):
            # aiohttp's handshake fails with a traceback (and a 500) on other text in the
            # upgrade's headers, even while refusing it; the protocol's headers are ASCII.
            return web.json_response({"error": "headers must be ASCII"}, status=400)
        await ws.prepare(request)
        try:
            async with asyncio.timeout(HELLO_WAIT):
                hello = _hello(await ws.receive())
        except TimeoutError:
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"say hello first")
            return ws
        except FrameError as exc:
            self._bad_frames.say(time.monotonic(), group=group, remote=address, error=str(exc))
            reason = f"bad hello: {exc}".encode()[:120]
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=reason)
            return ws
        conn = Connection(group, ws, hello.credits, address)
        self._connections.setdefault(group, []).append(conn)
        self._metrics.agents_connected.labels(group).set(len(self._connections[group]))
        fields = {
            "group": group,
            "agent": conn.agent_id,
            "credits": conn.credits,
            "remote": address,
        }
        log.info("agent.connected", extra={"fields": fields})
        await ws.send_json({"type": "welcome", "group": group, "heartbeat": heartbeat})
        self.wake(group)
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    self._frame(conn, message.data)
                elif message.type is WSMsgType.BINARY:
                    self._bad_frame(conn, "frames are JSON text, not binary", None)
        finally:
            self._gone(conn)
        return ws

    def _frame(self, conn: Connection, data: str) -> None:
        try:
            frame = parse(data)
        except FrameError as exc:
            self._bad_frame(conn, str(exc), lease_of(data))
            return
        if isinstance(frame, Hello):
            self._bad_frame(conn, "hello: said already", None)
            return
        self._result(conn, frame)

    def _bad_frame(self, conn: Connection, why: str, lease: str | None) -> None:
        """Answer with a protocol error; a lease in flight that it names has failed."""
        fields = {"group": conn.group, "agent": conn.agent_id, "error": why}
        self._bad_frames.say(time.monotonic(), **fields)
        self._send(conn, {"type": "error", "error": why, "lease": lease})
        future = conn.inflight.pop(lease, None) if lease is not None else None
        if future is not None and not future.done():
            error = f"the agent sent a malformed result ({why})"
            future.set_result(delivery.AttemptResult(time.time(), 0.0, None, error, None, None))
            self.wake(conn.group)

    def _send(self, conn: Connection, message: dict[str, Any]) -> None:
        async def send() -> None:
            with contextlib.suppress(ConnectionError, RuntimeError):  # it went meanwhile
                await conn.ws.send_json(message)

        task = asyncio.create_task(send())
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    def _result(self, conn: Connection, frame: Result) -> None:
        future = conn.inflight.pop(frame.lease, None)
        if future is None or future.done():
            # A result kept over a disconnect, for a lease the relay no longer holds.
            log.info("agent.result_late", extra={"fields": {"lease": frame.lease}})
            return
        headers = None
        if frame.headers is not None:  # well-formed (agentframes); redacted again here
            headers = delivery.kept_headers(tuple(p) for p in json.loads(frame.headers))
        future.set_result(
            delivery.AttemptResult(
                started_at=frame.started_at if frame.started_at is not None else time.time(),
                duration_ms=frame.duration_ms,
                status=frame.status,
                error=frame.error,
                excerpt=frame.excerpt,
                retry_after=frame.retry_after,
                permanent=frame.permanent,
                headers=headers,
            )
        )
        self.wake(conn.group)  # a credit came free

    def _gone(self, conn: Connection) -> None:
        connections = self._connections.get(conn.group, [])
        if conn in connections:
            connections.remove(conn)
        self._metrics.agents_connected.labels(conn.group).set(len(connections))
        self.last_seen[conn.group] = time.time()
        returned = list(conn.inflight.values())
        conn.inflight.clear()
        for future in returned:
            if not future.done():
                future.set_exception(Returned("the agent's connection was lost"))
        fields = {"group": conn.group, "agent": conn.agent_id, "returned": len(returned)}
        log.warning("agent.disconnected", extra={"fields": fields})

    # -- deliveries ------------------------------------------------------------------------

    async def attempt(
        self,
        destination: DestinationConfig,
        event: EventPayload,
        claim: Claim,
        outgoing: delivery.Outgoing | None,
    ) -> delivery.AttemptResult:
        """One attempt through an agent of the destination's group; Returned if none
        could take it or its connection was lost before the result came back."""
        group = destination.agent
        assert group is not None
        candidates = [c for c in self._connections.get(group, []) if c.free > 0]
        if not candidates:
            raise Returned(f"no agent of {group} connected")
        conn = max(candidates, key=lambda c: c.free)  # the least busy
        started = time.time()
        lease = f"{claim.id}:{claim.lease}"
        future: asyncio.Future[delivery.AttemptResult] = asyncio.get_running_loop().create_future()
        conn.inflight[lease] = future
        headers, body = delivery.request_of(event, claim, outgoing, started)
        message = {
            "type": "deliver",
            "lease": lease,
            "event_id": event.id,
            "attempt": claim.attempt,
            "url": destination.url,
            "headers": headers,
            "body": base64.b64encode(body).decode(),
            "timeout": destination.timeout,
            "keep": destination.keep_response,
        }
        try:
            await conn.ws.send_str(json.dumps(message))
            async with asyncio.timeout(destination.timeout + self._transit):
                result = await future
            # The agent's clock may be off (or lie): the start is kept within the attempt.
            started_at = min(max(result.started_at, started), time.time())
            return dataclasses.replace(result, started_at=started_at)
        except ConnectionError as exc:
            raise Returned(f"the agent's connection was lost: {exc}") from None
        except TimeoutError:
            waited = time.time() - started
            return delivery.AttemptResult(
                started,
                waited * 1000,
                None,
                f"no result from the agent in {waited:.0f}s",
                None,
                None,
            )
        finally:
            if conn.inflight.pop(lease, None) is not None:
                self.wake(group)


def _hello(message: WSMessage) -> Hello:
    if message.type is not WSMsgType.TEXT:
        raise FrameError("say hello first (a JSON text frame)")
    frame = parse(message.data)
    if not isinstance(frame, Hello):
        raise FrameError("say hello first")
    return frame

"""``relay agent``: deliver into a private network that has no inbound port.

The agent runs inside the network, dials out to the public relay (``GET /agent/connect``,
a WebSocket; ``relay.agents`` is the other end), takes deliveries, performs them against
internal URLs with the same HTTP behaviour as a direct delivery (``delivery.send``), and
returns each result. It calls only targets its ``allow`` list permits, whatever the relay
asks. A result it could not send (the connection was lost) is kept and sent after it
reconnects; the relay applies it only if it still holds that lease. It reconnects with
capped, jittered backoff, and never gives up.

Config (``relay agent --config agent.toml``):

    [agent]
    relay = "https://relay.example.com"     # the public relay (ws:// for loopback trials)
    name = "office"                         # its [[agents]] group
    token = "env:OFFICE_AGENT_TOKEN"
    allow = ["http://billing.lan:8000/", "http://10.0.0.0/8"]  # URL prefixes or CIDRs
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import logging
import random
import ssl
import time
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from relay import __version__, delivery, systemd
from relay.configtypes import Duration, SecretRef, StrictModel, describe_errors
from relay.errors import ConfigError, RelayError
from relay.log import Fault, Throttled
from relay.sections import LogConfig, split_address

log = logging.getLogger("relay.agent")

MAX_BACKOFF = 30.0  # seconds: the longest wait between two tries to reconnect


class TargetTls(StrictModel):
    prefix: str = Field(description="the URLs this applies to: those starting with it")
    verify: bool = Field(True, description="false skips the target's certificate checks")
    ca_file: Path | None = Field(None, description="CA bundle the target's cert must chain to")
    cert_file: Path | None = Field(None, description="client certificate (PEM), for mTLS")
    key_file: Path | None = Field(None, description="its key (PEM)")


class AgentConfig(StrictModel):
    relay: str = Field(description="the public relay's URL, e.g. https://relay.example.com")
    name: str = Field(description="the [[agents]] group this agent belongs to")
    token: SecretRef = Field(description="the group's token")
    allow: tuple[str, ...] = Field(
        description="URL prefixes (http://billing.lan:8000/) or CIDRs (http://10.0.0.0/8)"
    )
    credits: int = Field(10, ge=1, le=1000, description="deliveries it takes at once")
    heartbeat: Duration = Field(15.0, description="seconds between pings, both ways")
    ca_file: Path | None = Field(None, description="CA bundle for the relay's certificate")
    targets: list[TargetTls] = Field([], description="TLS settings per target URL prefix")
    metrics: str | None = Field(None, description="host:port for Prometheus /metrics")

    @field_validator("relay")
    @classmethod
    def _check_relay(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            raise ValueError(f"{value!r} is not the relay's URL; write https://relay.example.com")
        return value

    @field_validator("allow")
    @classmethod
    def _check_allow(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            Allow.parse(entry)
        return value

    def connect_url(self) -> str:
        parts = urlsplit(self.relay)
        scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
        base = f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        return f"{base}/agent/connect?group={self.name}"


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RELAY_", env_nested_delimiter="__", extra="forbid", frozen=True
    )
    agent: AgentConfig
    log: LogConfig = LogConfig()


def load_agent_config(path: str | Path) -> AgentSettings:
    path = Path(path)
    try:
        tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; pass --config PATH to an agent.toml") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc})") from None

    class _FromFile(AgentSettings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, path))

    try:
        settings: AgentSettings = _FromFile()
    except ValidationError as exc:
        raise ConfigError("\n".join(describe_errors(exc))) from None
    return settings


@dataclass(frozen=True)
class Allow:
    """One entry of ``allow``: a URL prefix, or a scheme and a network of IP addresses."""

    scheme: str
    prefix: str | None
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None

    @classmethod
    def parse(cls, entry: str) -> Allow:
        parts = urlsplit(entry)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{entry!r}: write a URL prefix or scheme://a.b.c.d/nn")
        host = parts.netloc.strip("[]")
        with contextlib.suppress(ValueError):
            network = ipaddress.ip_network(f"{host}{parts.path}", strict=False)
            if "/" in parts.path:
                return cls(parts.scheme, None, network)
        return cls(parts.scheme, entry.lower(), None)

    def admits(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme != self.scheme:
            return False
        if self.prefix is not None:
            return url.lower().startswith(self.prefix)
        try:  # a network admits IP addresses in it, never a name (that could resolve anywhere)
            address = ipaddress.ip_address((parts.hostname or "").strip("[]"))
        except ValueError:
            return False
        return self.network is not None and address in self.network


def allowed(url: str, rules: Iterable[Allow]) -> bool:
    return any(rule.admits(url) for rule in rules)


def _context(ca_file: Path | None, tls: TargetTls | None = None) -> ssl.SSLContext | bool:
    if tls is not None and not tls.verify:
        return False
    cafile = str(tls.ca_file) if tls is not None and tls.ca_file else None
    cafile = cafile or (str(ca_file) if ca_file else None)
    if cafile is None and (tls is None or tls.cert_file is None):
        return True
    context = ssl.create_default_context(cafile=cafile)
    if tls is not None and tls.cert_file is not None and tls.key_file is not None:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return context


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self._config = config
        self._rules = [Allow.parse(entry) for entry in config.allow]
        self._kept: dict[str, dict[str, Any]] = {}  # results not sent yet, by lease
        self._tasks: set[asyncio.Task[None]] = set()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._fault = Fault(log, "agent.connection", settle=0.0)
        self.connected = asyncio.Event()
        self.delivered = 0
        self.refused = 0
        self._refused_frames = Throttled(log, "agent.frame_refused")
        self.reconnects = 0
        self.restarts = 0  # times the relay said it was restarting (1012)
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    def _session(self, url: str) -> aiohttp.ClientSession:
        """One client session per TLS setting (targets by prefix, else the default)."""
        tls = next((t for t in self._config.targets if url.startswith(t.prefix)), None)
        key = tls.prefix if tls is not None else ""
        session = self._sessions.get(key)
        if session is None:
            connector = aiohttp.TCPConnector(limit=self._config.credits, ssl=_context(None, tls))
            session = self._sessions[key] = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return session

    async def run(self, once: bool = False) -> None:
        """Connect, serve, reconnect, for ever (or, with ``once``, until connected)."""
        backoff = 0.5
        async with aiohttp.ClientSession() as dialer:
            while True:
                try:
                    await self._serve(dialer, once)
                    if once:
                        return
                    backoff = 0.1  # it was connected (a restarting relay is back soon)
                except (aiohttp.ClientError, OSError, TimeoutError, RelayError) as exc:
                    why = self._why(exc)
                    if once:
                        raise RelayError(f"cannot connect to {self._config.relay}: {why}") from None
                    self._fault.failed(why, time.monotonic())
                self.connected.clear()
                self.reconnects += 1
                systemd.notify("STATUS=reconnecting")
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(MAX_BACKOFF, backoff * 2)

    def _why(self, exc: BaseException) -> str:
        if isinstance(exc, aiohttp.WSServerHandshakeError) and exc.status == 401:
            return (
                f"the relay refused this agent (401): check token and name "
                f"({self._config.name!r}) against its [[agents]] entry"
            )
        if isinstance(exc, aiohttp.WSServerHandshakeError) and exc.status == 404:
            return "the relay has no agent endpoint there (404): is relay = the public relay?"
        return f"{type(exc).__name__}: {exc}"

    async def _serve(self, dialer: aiohttp.ClientSession, once: bool) -> None:
        config = self._config
        headers = {"Authorization": f"Bearer {config.token.value}", "User-Agent": "relay-agent"}
        async with dialer.ws_connect(
            config.connect_url(),
            headers=headers,
            heartbeat=config.heartbeat,
            ssl=_context(config.ca_file),
            max_msg_size=0,
            timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
        ) as ws:
            await ws.send_json({"type": "hello", "credits": config.credits, "version": __version__})
            welcome = await ws.receive_json(timeout=10)
            if welcome.get("type") != "welcome":
                raise RelayError(f"the relay said {welcome!r}")
            self._ws = ws
            self.connected.set()
            self._fault.cleared(time.monotonic())  # connected: the story is over
            fields = {"relay": config.relay, "group": config.name, "credits": config.credits}
            log.info("agent.connected", extra={"fields": fields})
            systemd.notify("READY=1\nSTATUS=connected")
            if once:
                return
            for lease in list(self._kept):  # what finished while the connection was down
                await self._send_result(self._kept[lease])
            async for message in ws:
                if message.type is aiohttp.WSMsgType.TEXT:
                    self._take(json.loads(message.data))
            self._ws = None
            if ws.close_code == aiohttp.WSCloseCode.SERVICE_RESTART:
                # The relay is restarting on its socket: the next one is there in a moment.
                log.info("agent.relay_restarting", extra={"fields": {"relay": config.relay}})
                self.restarts += 1
                return
            fields = {"relay": config.relay, "code": ws.close_code}
            log.warning("agent.disconnected", extra={"fields": fields})

    def _take(self, message: dict[str, Any]) -> None:
        if message.get("type") == "error":  # relay refused a frame of ours: a bug to report
            self._refused_frames.say(time.monotonic(), error=str(message.get("error"))[:300])
            return
        if message.get("type") != "deliver":
            return
        task = asyncio.create_task(self._deliver(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, message: dict[str, Any]) -> None:
        lease, url = str(message["lease"]), str(message["url"])
        if not allowed(url, self._rules):
            self.refused += 1
            log.warning("agent.target_refused", extra={"fields": {"url": url, "lease": lease}})
            reason = f"the agent's allow list does not include {url}"
            result = delivery.AttemptResult(time.time(), 0.0, None, reason, None, None, True)
        else:
            headers = [(str(k), str(v)) for k, v in message.get("headers", [])]
            body = base64.b64decode(message.get("body", ""))
            timeout = float(message.get("timeout", 10.0))
            keep = min(int(message.get("keep", delivery.EXCERPT_BYTES)), 65536)
            result = await delivery.send(
                self._session(url), url, headers, body, timeout, keep=max(0, keep)
            )
            self.delivered += 1
            fields = {
                "event": message.get("event_id"),
                "status": result.status,
                "error": result.error,
            }
            log.info("agent.delivered", extra={"fields": fields})
        answer = {
            "type": "result",
            "lease": lease,
            "status": result.status,
            "error": result.error,
            "excerpt": result.excerpt,
            "headers": result.headers,
            "retry_after": result.retry_after,
            "duration_ms": result.duration_ms,
            "started_at": result.started_at,
            "permanent": result.permanent,
        }
        self._kept[lease] = answer  # until the relay has it
        await self._send_result(answer)

    async def _send_result(self, answer: dict[str, Any]) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            return  # kept: sent after the next connect
        try:
            await ws.send_str(json.dumps(answer))
        except (ConnectionError, aiohttp.ClientError):
            return
        self._kept.pop(str(answer["lease"]), None)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for session in self._sessions.values():
            await session.close()


async def _metrics(agent: Agent, listen: str) -> web.AppRunner:
    """A little /metrics of the agent's own, on a local port."""

    async def handler(request: web.Request) -> web.Response:
        lines = [
            "# TYPE relay_agent_connected gauge",
            f"relay_agent_connected {1 if agent.connected.is_set() else 0}",
            "# TYPE relay_agent_deliveries_total counter",
            f"relay_agent_deliveries_total {agent.delivered}",
            "# TYPE relay_agent_refused_targets_total counter",
            f"relay_agent_refused_targets_total {agent.refused}",
            "# TYPE relay_agent_reconnects_total counter",
            f"relay_agent_reconnects_total {agent.reconnects}",
            "# TYPE relay_agent_results_kept gauge",
            f"relay_agent_results_kept {len(agent._kept)}",
        ]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    host, port = split_address(listen)
    await web.TCPSite(runner, host, port).start()
    return runner


async def serve_agent(settings: AgentSettings, check: bool = False) -> None:
    """Run the agent until SIGTERM or SIGINT (``check``: connect once, then return)."""
    import signal

    agent = Agent(settings.agent)
    if check:
        try:
            async with asyncio.timeout(20):
                await agent.run(once=True)
        except TimeoutError:
            raise RelayError(f"no answer from {settings.agent.relay} in 20 s") from None
        finally:
            await agent.close()
        return
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = await _metrics(agent, settings.agent.metrics) if settings.agent.metrics else None
    task = asyncio.create_task(agent.run())
    interval = systemd.watchdog_interval()
    pinger = asyncio.create_task(systemd.watchdog(interval)) if interval else None
    log.info("agent.started", extra={"fields": {"relay": settings.agent.relay}})
    try:
        await stop.wait()
    finally:
        systemd.notify("STOPPING=1")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await agent.close()
        if pinger is not None:
            pinger.cancel()
        if runner is not None:
            await runner.cleanup()
        log.info("agent.stopped")

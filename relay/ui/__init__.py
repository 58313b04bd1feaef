"""The web console, served by the admin listener under ``/ui/``.

Server-rendered HTML with a little plain JavaScript (live refresh of the overview, a
confirmation before bulk actions); the CSS and JS are package data inside the binary, so it
works offline and needs no build step. Sign-in takes the admin token once and sets a
session cookie (HttpOnly, SameSite=Strict, Secure over TLS; see ``relay.ui.sessions``);
every action is a POST form carrying a CSRF token derived from the session. Sign-in needs
a connection that keeps the token private: TLS (the admin listener's own, or a reverse
proxy in ``trusted_proxies`` saying ``X-Forwarded-Proto: https``), loopback, or a Unix
socket; plain HTTP from another machine is refused with what to do instead.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from html import escape
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web

from relay import inspect
from relay.network import parse_address, within
from relay.ui.sessions import SESSION_SECONDS, Sessions, Throttle

if TYPE_CHECKING:
    from relay.app import Relay

COOKIE = "relay_session"
PAGE = 50
INSECURE = (
    "Signing in over plain HTTP from another machine would send the admin token and the "
    "session in clear. Use an SSH tunnel (ssh -L 8081:127.0.0.1:8081 this-host, then open "
    "http://127.0.0.1:8081/ui/), a TLS reverse proxy listed in trusted_proxies, or [admin.tls]."
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def e(value: object) -> str:
    return escape("-" if value is None else str(value), quote=True)


def when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(stamp))


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


class Console:
    def __init__(self, relay: Relay, token: bytes) -> None:
        self._relay = relay
        self._token = token
        self._sessions = Sessions(token)
        self._throttle = Throttle()

    # -- sessions --------------------------------------------------------------------------

    def valid(self, request: web.Request) -> bool:
        return self._sessions.valid(request.cookies.get(COOKIE), time.time())

    def csrf(self, request: web.Request) -> str:
        return self._sessions.csrf(request.cookies.get(COOKIE, ""))

    def _proxied(self, request: web.Request) -> bool:
        """Forwarded by a proxy relay trusts (one in trusted_proxies, or on the Unix socket)."""
        headers = request.headers
        if not ("X-Forwarded-Proto" in headers or "X-Forwarded-For" in headers):
            return False
        trusted = self._relay.settings.server.trusted_proxies
        return _unix(request) or within(parse_address(request.remote), trusted)

    def _over_tls(self, request: web.Request) -> bool:
        """TLS to relay itself, or to a trusted proxy that says so."""
        if request.secure:
            return True
        proto = request.headers.get("X-Forwarded-Proto", "").lower()
        return proto == "https" and self._proxied(request)

    def _private(self, request: web.Request) -> bool:
        """Whether the token and the cookie can cross this connection unread: TLS to relay
        or to a trusted proxy, or, with no proxy in between, loopback or the Unix socket."""
        if self._over_tls(request):
            return True
        if self._proxied(request):
            return False  # a proxy forwarded it from elsewhere, not over TLS
        peer = parse_address(request.remote)
        return _unix(request) or (peer is not None and peer.is_loopback)

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Pages need a session; POSTs also the CSRF token of that session. Without one, a
        page goes to sign-in (and back afterwards); a refresh fetch gets 401, and the
        page's script then does the same."""
        path = request.path
        if not (path == "/ui" or path.startswith("/ui/")):
            return await handler(request)
        if path in ("/ui/login", "/ui/static/style.css", "/ui/static/app.js"):
            return await handler(request)
        if not self.valid(request):
            if request.query.get("fragment"):
                return web.Response(status=401, text="signed out", headers=_no_store())
            back = request.path_qs if request.method == "GET" else "/ui/"
            raise web.HTTPSeeOther("/ui/login?" + urlencode({"next": back}))
        if request.method == "POST":
            form = await request.post()
            if not hmac.compare_digest(str(form.get("csrf", "")), self.csrf(request)):
                return web.Response(status=403, text="stale or missing form token; reload")
        return await handler(request)

    def routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/ui", self.home)
        r.add_get("/ui/", self.overview)
        r.add_get("/ui/login", self.login_form)
        r.add_post("/ui/login", self.login)
        r.add_post("/ui/logout", self.logout)
        r.add_get("/ui/static/{name}", self.static)
        r.add_get("/ui/events", self.events)
        r.add_get("/ui/events/{id}", self.event)
        r.add_get("/ui/dead", self.dead)
        r.add_post("/ui/replay", self.replay)
        r.add_get("/ui/destinations", self.destinations)
        r.add_post("/ui/destinations/{name}/{action}", self.pause_resume)
        r.add_get("/ui/rejections", self.rejections)

    async def home(self, request: web.Request) -> web.Response:
        return _redirect("/ui/")

    async def _read(self, work: Callable[[Any], Any]) -> Any:
        return await inspect.read_in_thread(self._relay.settings.storage.path, work)

    # -- pages -----------------------------------------------------------------------------

    def page(self, request: web.Request, title: str, body: str, current: str) -> web.Response:
        links = [
            ("/ui/", "Overview"),
            ("/ui/events", "Events"),
            ("/ui/dead", "Dead letters"),
            ("/ui/destinations", "Destinations"),
            ("/ui/rejections", "Rejections"),
        ]
        nav = "".join(
            f'<li><a href="{href}"{" aria-current=page" if href == current else ""}>{label}</a></li>'
            for href, label in links
        )
        flash = request.query.get("done")
        notice = f'<p class="notice" role="status">{e(flash)}</p>' if flash else ""
        html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} · relay</title>
<link rel="stylesheet" href="/ui/static/style.css">
<script src="/ui/static/app.js" defer></script></head>
<body><a class="skip" href="#main">Skip to content</a>
<header><span class="brand">relay</span><nav aria-label="Main"><ul>{nav}</ul></nav>
<form method="post" action="/ui/logout"><input type="hidden" name="csrf" value="{self.csrf(request)}">
<button type="submit" class="link">Sign out</button></form></header>
<main id="main"><h1>{e(title)}</h1>{notice}{body}</main></body></html>"""
        return web.Response(text=html, content_type="text/html", headers=_no_store())

    async def login_form(self, request: web.Request) -> web.Response:
        error = request.query.get("error")
        if not self._private(request):
            error = INSECURE
        message = f'<p class="error" role="alert">{e(error)}</p>' if error else ""
        back = _local_path(request.query.get("next"))
        html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · relay</title><link rel="stylesheet" href="/ui/static/style.css"></head>
<body><main id="main" class="login"><h1>relay</h1>{message}
<form method="post" action="/ui/login">
<label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<input type="hidden" name="next" value="{e(back)}">
<button type="submit">Sign in</button></form>
<p class="hint">The <code>[admin] token</code> from relay's config.</p></main></body></html>"""
        return web.Response(text=html, content_type="text/html", headers=_no_store())

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        back = _local_path(str(form.get("next", "")))
        if not self._private(request):
            return _redirect("/ui/login?" + urlencode({"error": INSECURE}))
        given = str(form.get("token", "")).encode()
        if not hmac.compare_digest(given, self._token):
            # Wrong: answered later each time (per address); a right token never waits.
            await asyncio.sleep(self._throttle.wrong(request.remote or "-", time.monotonic()))
            retry = {"error": "That token is not right.", "next": back}
            return _redirect("/ui/login?" + urlencode(retry))
        response = _redirect(back)
        response.set_cookie(
            COOKIE,
            self._sessions.open(time.time()),
            max_age=SESSION_SECONDS,
            path="/ui",
            secure=self._over_tls(request),
            httponly=True,
            samesite="Strict",
        )
        return response

    async def logout(self, request: web.Request) -> web.Response:
        self._sessions.close(request.cookies.get(COOKIE))
        response = _redirect("/ui/login")
        response.del_cookie(COOKIE, path="/ui")
        return response

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        types = {"style.css": "text/css", "app.js": "text/javascript"}
        if name not in types:
            raise web.HTTPNotFound()
        text = resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")
        return web.Response(
            text=text, content_type=types[name], headers={"Cache-Control": "max-age=300"}
        )

    async def overview(self, request: web.Request) -> web.Response:
        stats = await self._read(inspect.stats)
        chart = await self._read(_last_hour)
        m = self._relay.metrics
        sources = []
        for name in sorted({s.name for s in self._relay.settings.sources} | set(stats["sources"])):
            s = stats["sources"].get(name, {})
            dup = _counter(m.requests, name, "duplicate")
            sources.append(
                f"<tr><th scope=row>{e(name)}</th><td>{s.get('events_last_hour', 0)}</td>"
                f"<td>{s.get('rejected_last_hour', 0)}</td><td>{int(dup)}</td></tr>"
            )
        destinations = []
        for name, lane in sorted(self._relay.scheduler.lanes.items()):
            d = stats["destinations"].get(name, {})
            circuit = lane.circuit.state if lane.circuit else "-"
            state = "paused" if lane.paused else ("trouble" if circuit == "open" else "ok")
            destinations.append(
                f'<tr class="{state}"><th scope=row><a href="/ui/destinations#{e(name)}">{e(name)}</a></th>'
                f"<td>{d.get('delivered_last_hour', 0)}</td><td>{d.get('pending', 0)}</td>"
                f"<td>{d.get('dead', 0)}</td><td>{'yes' if lane.paused else 'no'}</td>"
                f"<td>{e(circuit)}</td><td>{ago(d.get('oldest_pending_seconds'))}</td></tr>"
            )
        inner = f"""<section aria-labelledby="src"><h2 id="src">Sources</h2><div class="scroll"><table>
<thead><tr><th scope=col>Source</th><th scope=col>Received (1 h)</th><th scope=col>Rejected (1 h)</th>
<th scope=col>Duplicates (since start)</th></tr></thead><tbody>{"".join(sources) or "<tr><td colspan=4>No sources</td></tr>"}</tbody></table></div></section>
<section aria-labelledby="dst"><h2 id="dst">Destinations</h2><div class="scroll"><table>
<thead><tr><th scope=col>Destination</th><th scope=col>Delivered (1 h)</th><th scope=col>Pending</th>
<th scope=col>Dead</th><th scope=col>Paused</th><th scope=col>Circuit</th><th scope=col>Oldest pending</th></tr></thead>
<tbody>{"".join(destinations)}</tbody></table></div></section>
<section aria-labelledby="hour"><h2 id="hour">Last hour</h2>{_chart(chart)}</section>"""
        if request.query.get("fragment"):
            return web.Response(text=inner, content_type="text/html", headers=_no_store())
        body = f'<div data-refresh="/ui/?fragment=1">{inner}</div>'
        return self.page(request, "Overview", body, "/ui/")

    async def events(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            f = inspect.EventFilter(
                source=q.get("source") or None,
                event_type=q.get("type") or None,
                status=q.get("status") or None,
                since=inspect.since_to_time(q.get("since") or None),
                text=q.get("q") or None,
                before=q.get("before") or None,
                limit=PAGE,
            )
            rows = await self._read(lambda c: inspect.list_events(c, f))
            problem = ""
        except ValueError as exc:
            rows, problem = [], f'<p class="error" role="alert">{e(exc)}</p>'
        options = "".join(
            f'<option value="{s}"{" selected" if q.get("status") == s else ""}>{s}</option>'
            for s in ("", *inspect.STATUSES)
        )
        form = f"""<form method="get" class="filters" role="search" aria-label="Filter events">
<label>Source <input name="source" value="{e(q.get("source", ""))}"></label>
<label>Type <input name="type" value="{e(q.get("type", ""))}" placeholder="invoice.*"></label>
<label>Status <select name="status">{options}</select></label>
<label>Since <input name="since" value="{e(q.get("since", ""))}" placeholder="2h"></label>
<label>Text <input name="q" value="{e(q.get("q", ""))}"></label>
<button type="submit">Filter</button></form>"""
        trs = "".join(
            f'<tr><td><a href="/ui/events/{e(r["id"])}">{e(r["id"])}</a></td><td>{when(r["received_at"])}</td>'
            f"<td>{e(r['source'])}</td><td>{e(r['event_type'])}</td>"
            f"<td>{_states(r['deliveries'])}</td></tr>"
            for r in rows
        )
        more = ""
        if len(rows) == PAGE:
            params = {k: v for k, v in q.items() if k != "before"} | {"before": rows[-1]["id"]}
            more = (
                f'<p><a href="/ui/events?{e(urlencode(params))}" rel="next">Older events →</a></p>'
            )
        body = f"""{form}{problem}<div class="scroll"><table><thead><tr><th scope=col>Event</th>
<th scope=col>Received (UTC)</th><th scope=col>Source</th><th scope=col>Type</th><th scope=col>Deliveries</th></tr></thead>
<tbody>{trs or "<tr><td colspan=5>No events match.</td></tr>"}</tbody></table></div>{more}"""
        return self.page(request, "Events", body, "/ui/events")

    async def event(self, request: web.Request) -> web.Response:
        event_id = request.match_info["id"]
        ev = await self._read(lambda c: inspect.show_event(c, event_id))
        if ev is None:
            raise web.HTTPNotFound(text=f"no event {event_id}")
        headers = "".join(
            f"<tr><th scope=row>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in ev["headers"]
        )
        if ev["encoding"] == "json":
            body = json.dumps(ev["body"], indent=2, ensure_ascii=False)
        else:
            body = str(ev["body"])
        timeline = []
        token = self.csrf(request)
        for d in ev["deliveries"]:
            attempts = "".join(
                f'<li><span class="{e(a["outcome"])}">#{a["number"]} {e(a["outcome"])}</span> '
                f"{when(a['started_at'])} · {e(a['status'])} · {a['duration_ms']:.0f} ms"
                f"{' · ' + e(a['error']) if a['error'] else ''}"
                f"{'<br><code>' + e(a['response_excerpt'][:200]) + '</code>' if a['response_excerpt'] else ''}</li>"
                for a in d["history"]
            )
            replay = ""
            if d["state"] == "dead":
                replay = (
                    f'<form method="post" action="/ui/replay"><input type="hidden" name="csrf" value="{token}">'
                    f'<input type="hidden" name="delivery" value="{d["id"]}">'
                    f'<input type="hidden" name="back" value="/ui/events/{e(event_id)}">'
                    f'<button type="submit">Replay to {e(d["destination"])}</button></form>'
                )
            origin = f" (replay of {d['replay_of']})" if d["replay_of"] else ""
            timeline.append(
                f'<li class="delivery {e(d["state"])}"><h3>{e(d["destination"])}: '
                f'<span class="state">{e(d["state"])}</span>{origin}</h3>'
                f"<ol class=attempts>{attempts or '<li>no attempt yet</li>'}</ol>{replay}</li>"
            )
        raw = ""
        if "raw" in ev:
            raw = f'<details><summary>Raw, as received</summary><pre tabindex="0">{e(ev["raw"])}</pre></details>'
        body_html = f"""<dl class="meta"><dt>Source</dt><dd>{e(ev["source"])}</dd><dt>Type</dt><dd>{e(ev["event_type"])}</dd>
<dt>Idempotency key</dt><dd>{e(ev["idempotency_key"])}</dd><dt>Received (UTC)</dt><dd>{when(ev["received_at"])}</dd>
<dt>From</dt><dd>{e(ev["remote_addr"])}</dd></dl>
<section aria-labelledby="tl"><h2 id="tl">Deliveries</h2><ol class="timeline">{"".join(timeline) or "<li>Routed nowhere.</li>"}</ol></section>
<section aria-labelledby="hd"><h2 id="hd">Headers</h2><div class="scroll"><table><tbody>{headers}</tbody></table></div></section>
<section aria-labelledby="bd"><h2 id="bd">Body ({e(ev["encoding"])})</h2><pre tabindex="0">{e(body)}</pre>{raw}</section>"""
        return self.page(request, ev["id"], body_html, "/ui/events")

    async def dead(self, request: web.Request) -> web.Response:
        q = request.query
        f = inspect.DeadFilter(
            destination=q.get("destination") or None, error=q.get("error") or None
        )
        groups = await self._read(_dead_groups)
        rows = await self._read(lambda c: inspect.list_dead(c, f, 200))
        token = self.csrf(request)
        group_rows = "".join(
            f"<tr><td>{e(g['destination'])}</td><td>{e(g['error'])}</td><td>{g['count']}</td><td>"
            f'<form method="post" action="/ui/replay" data-confirm="Replay {g["count"]} dead deliveries to {e(g["destination"])}?">'
            f'<input type="hidden" name="csrf" value="{token}"><input type="hidden" name="destination" value="{e(g["destination"])}">'
            f'<input type="hidden" name="error" value="{e(g["error"])}"><input type="hidden" name="expect" value="{g["count"]}">'
            f'<button type="submit">Replay all {g["count"]}</button></form></td></tr>'
            for g in groups
        )
        items = "".join(
            f'<tr><td><input type="checkbox" name="delivery" value="{r["delivery_id"]}" id="d{r["delivery_id"]}" form="selection">'
            f'<label for="d{r["delivery_id"]}" class="visually-hidden">select delivery {r["delivery_id"]}</label></td>'
            f'<td><a href="/ui/events/{e(r["event_id"])}">{e(r["event_id"])}</a></td><td>{e(r["destination"])}</td>'
            f"<td>{when(r['died_at'])}</td><td>{e(r['last_error'])}</td></tr>"
            for r in rows
        )
        body = f"""<section aria-labelledby="grp"><h2 id="grp">By destination and error</h2><div class="scroll"><table>
<thead><tr><th scope=col>Destination</th><th scope=col>Last error</th><th scope=col>Dead</th><th scope=col>Action</th></tr></thead>
<tbody>{group_rows or "<tr><td colspan=4>Nothing is dead.</td></tr>"}</tbody></table></div></section>
<section aria-labelledby="one"><h2 id="one">Dead deliveries</h2>
<form id="selection" method="post" action="/ui/replay" data-confirm="Replay the selected deliveries?">
<input type="hidden" name="csrf" value="{token}"><button type="submit">Replay selected</button></form>
<div class="scroll"><table><thead><tr><th scope=col>Pick</th><th scope=col>Event</th><th scope=col>Destination</th>
<th scope=col>Died (UTC)</th><th scope=col>Last error</th></tr></thead><tbody>{items}</tbody></table></div></section>"""
        return self.page(request, "Dead letters", body, "/ui/dead")

    async def replay(self, request: web.Request) -> web.Response:
        form = await request.post()
        ids = [int(str(v)) for v in form.getall("delivery", []) if str(v).isdigit()]
        back = str(form.get("back", "/ui/dead"))
        if not back.startswith("/ui/"):
            back = "/ui/dead"
        if ids:
            marks = ",".join("?" * len(ids))
            f = inspect.DeadFilter(include_replayed=True)
            count = await self._relay.replay(f, (f"d.id IN ({marks})", ids))
        else:
            destination = str(form.get("destination", "")) or None
            error = str(form.get("error", "")) or None
            if destination is None:
                return _redirect(back + "?" + urlencode({"done": "Nothing selected."}))
            f = inspect.DeadFilter(destination=destination)
            extra = ("d.last_error IS ?", [error])
            count = await self._relay.replay(f, extra)
        message = f"Replayed {count} deliver{'y' if count == 1 else 'ies'}."
        return _redirect(back + "?" + urlencode({"done": message}))

    async def destinations(self, request: web.Request) -> web.Response:
        stats = await self._read(inspect.stats)
        token = self.csrf(request)
        cards = []
        for name, lane in sorted(self._relay.scheduler.lanes.items()):
            d = lane.destination
            s = stats["destinations"].get(name, {})
            action = "resume" if lane.paused else "pause"
            retry = d.retry
            schedule = ", ".join(f"{x:g}s" for x in retry.schedule) or (
                f"exponential {retry.base:g}s, factor {retry.factor:g}, up to {retry.cap:g}s"
            )
            cards.append(
                f'<section class="card" id="{e(name)}" aria-labelledby="h-{e(name)}"><h2 id="h-{e(name)}">{e(name)}</h2>'
                f"<dl class=meta><dt>URL</dt><dd><code>{e(d.url)}</code></dd>"
                f"<dt>State</dt><dd>{'paused: ' + e(lane.paused) if lane.paused else 'sending'}</dd>"
                f"<dt>Circuit</dt><dd>{e(lane.circuit.state if lane.circuit else 'none')}</dd>"
                f"<dt>Pending / dead</dt><dd>{s.get('pending', 0)} / {s.get('dead', 0)}</dd>"
                f"<dt>Concurrency</dt><dd>{d.max_concurrency}</dd>"
                f"<dt>Rate limit</dt><dd>{e(f'{d.rate_limit.rate:g}/s, burst {d.rate_limit.burst}' if d.rate_limit else 'none')}</dd>"
                f"<dt>Retries</dt><dd>{retry.max_attempts} attempts, {e(schedule)}, max age {retry.max_age:g}s</dd>"
                f"<dt>Ordering</dt><dd>{e(d.ordering)}</dd><dt>Signed</dt><dd>{'yes' if d.signing_secret else 'no'}</dd></dl>"
                f'<form method="post" action="/ui/destinations/{e(name)}/{action}">'
                f'<input type="hidden" name="csrf" value="{token}">'
                f'<button type="submit">{action.capitalize()} {e(name)}</button></form></section>'
            )
        return self.page(request, "Destinations", "".join(cards), "/ui/destinations")

    async def pause_resume(self, request: web.Request) -> web.Response:
        name, action = request.match_info["name"], request.match_info["action"]
        if name not in self._relay.scheduler.lanes or action not in ("pause", "resume"):
            raise web.HTTPNotFound()
        if action == "pause":
            await self._relay.scheduler.pause(name, "paused from the console")
        else:
            await self._relay.scheduler.resume(name)
        done = f"{name} {'paused' if action == 'pause' else 'resumed'}."
        return _redirect("/ui/destinations?" + urlencode({"done": done}))

    async def rejections(self, request: web.Request) -> web.Response:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT at, source, status, reason, remote_addr FROM rejections ORDER BY id DESC LIMIT 200"
            ).fetchall()
        )
        trs = "".join(
            f"<tr><td>{when(r[0])}</td><td>{e(r[1])}</td><td>{r[2]}</td><td>{e(r[3])}</td><td>{e(r[4])}</td></tr>"
            for r in rows
        )
        body = f"""<div class="scroll"><table><thead><tr><th scope=col>When (UTC)</th><th scope=col>Source</th>
<th scope=col>Status</th><th scope=col>Reason</th><th scope=col>From</th></tr></thead>
<tbody>{trs or "<tr><td colspan=5>No rejected requests.</td></tr>"}</tbody></table></div>"""
        return self.page(request, "Rejections", body, "/ui/rejections")


def _no_store() -> dict[str, str]:
    return {
        "Cache-Control": "no-store",
        "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }


def _unix(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and isinstance(transport.get_extra_info("sockname"), str)


def _local_path(path: str | None) -> str:
    """Where to go after sign-in: a console page, never another site."""
    if path and path.startswith("/ui/") and not path.startswith("//"):
        return path
    return "/ui/"


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _counter(counter: Any, *labels: str) -> float:
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and tuple(sample.labels.values()) == labels:
                return float(sample.value)
    return 0.0


def _states(deliveries: dict[str, str]) -> str:
    if not deliveries:
        return '<span class="muted">unrouted</span>'
    return " ".join(f'<span class="{e(s)}">{e(d)}: {e(s)}</span>' for d, s in deliveries.items())


def _last_hour(conn: Any) -> dict[str, list[float]]:
    """Events per minute and p95 received → delivered per minute, for the last hour, read
    through indexes (events by time; deliveries by state, destination and time)."""
    now = time.time()
    start = now - 3600
    events = [0.0] * 60
    for minute, count in conn.execute(
        "SELECT CAST((received_at - ?) / 60 AS INTEGER), COUNT(*) FROM events"
        " WHERE received_at >= ? GROUP BY 1",
        (start, start),
    ):
        if 0 <= minute < 60:
            events[minute] = float(count)
    latency: list[list[float]] = [[] for _ in range(60)]
    for name in inspect.delivered_destinations(conn):
        for minute, seconds in conn.execute(
            "SELECT CAST((updated_at - ?) / 60 AS INTEGER), delivered_at - created_at"
            " FROM deliveries WHERE state = 'delivered' AND destination = ? AND updated_at >= ?",
            (start, name, start),
        ):
            if 0 <= minute < 60 and seconds is not None:
                latency[minute].append(float(seconds))
    p95 = [sorted(v)[int(len(v) * 0.95)] if v else 0.0 for v in latency]
    return {"events": events, "p95": p95}


def _chart(data: dict[str, list[float]]) -> str:
    """Two small inline SVG charts: events per minute (bars), p95 latency (line)."""
    width, height = 600, 120

    def bars(values: list[float], label: str) -> str:
        top = max(values) or 1.0
        step = width / len(values)
        rects = "".join(
            f'<rect x="{i * step:.1f}" y="{height - v / top * height:.1f}" width="{step - 1:.1f}" height="{v / top * height:.1f}"/>'
            for i, v in enumerate(values)
            if v
        )
        return (
            f'<figure><svg viewBox="0 0 {width} {height}" role="img" aria-label="{label}, peak {top:g}" class="bars">{rects}</svg>'
            f"<figcaption>{label} (peak {top:g})</figcaption></figure>"
        )

    def line(values: list[float], label: str) -> str:
        top = max(values) or 1.0
        step = width / (len(values) - 1)
        points = " ".join(
            f"{i * step:.1f},{height - v / top * height:.1f}" for i, v in enumerate(values)
        )
        shown = f"{top * 1000:.0f} ms" if top < 10 else f"{top:.0f} s"
        return (
            f'<figure><svg viewBox="0 0 {width} {height}" role="img" aria-label="{label}, peak {shown}" class="line">'
            f'<polyline points="{points}"/></svg><figcaption>{label} (peak {shown})</figcaption></figure>'
        )

    return f'<div class="charts">{bars(data["events"], "Events per minute")}{line(data["p95"], "p95 received → delivered")}</div>'


def _dead_groups(conn: Any) -> list[dict[str, Any]]:
    where, params = inspect.DeadFilter().where()
    rows = conn.execute(
        "SELECT d.destination, d.last_error, COUNT(*) FROM deliveries d JOIN events e ON e.id = d.event_id"
        f"{where} GROUP BY d.destination, d.last_error ORDER BY COUNT(*) DESC LIMIT 100",
        params,
    ).fetchall()
    return [{"destination": r[0], "error": r[1], "count": r[2]} for r in rows]

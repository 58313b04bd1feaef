"""The web console, served by the admin listener under ``/ui/``.

Pages are Jinja2 templates (``templates/``, autoescaped: no value reaches the page
unescaped) over the same reads as the JSON API; the handlers build a context and render.
A little plain JavaScript (live refresh of the overview, a confirmation before bulk
actions) and the CSS are package data inside the binary, so it works offline and needs no
build step. Sign-in takes the admin token once and sets a session cookie (HttpOnly,
SameSite=Strict, Secure over TLS; see ``sessions``); every action is a POST form carrying
a CSRF token derived from the session. Sign-in needs a connection that keeps the token
private: TLS (the admin listener's own, or a reverse proxy in ``trusted_proxies`` saying
``X-Forwarded-Proto: https``), loopback, or a Unix socket; plain HTTP from another machine
is refused with what to do instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from importlib import resources
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from relay.admin.console import outgoing
from relay.admin.console.notices import PARAMS, notice, sign_in_error, told
from relay.admin.console.sessions import SESSION_SECONDS, Sessions, Throttle
from relay.admin.surface import Surface, Who
from relay.alerting import ALERT_SOURCE
from relay.errors import KeyReused
from relay.network import parse_address, within
from relay.records import STATUSES, Claim, DeadFilter, EventFilter, ReplaySelection, since_to_time
from relay.store import Reader, clauses, rollup
from relay.text import plural

COOKIE = "relay_session"
EVENT_ID = re.compile(r"evt_[0-9A-Za-z]{4,26}")  # relay's ids (relay.ids), or a start of one
PAGE = 50
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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


def _template(name: str) -> str:
    return resources.files(__package__).joinpath("templates", name).read_text(encoding="utf-8")


def templates() -> jinja2.Environment:
    """The console's templates: package data read through importlib.resources, so they
    load from a wheel, a checkout or the single executable alike. Autoescape is on for
    every template, and an undefined name is an error, not an empty string."""
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_template),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
    )
    env.filters.update(
        when=when,
        ago=ago,
        dash=lambda v: "-" if v is None else v,
        from_now=lambda stamp: ago(stamp - time.time()) if stamp is not None else "-",
        plural=plural,
    )
    return env


class Console:
    def __init__(self, surface: Surface, token: bytes) -> None:
        self._surface = surface
        self._token = token
        self._sessions = Sessions(token)
        self._throttle = Throttle()
        self._templates = templates()

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
        trusted = self._surface.trusted_proxies
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
            back = _without_secrets(request) if request.method == "GET" else "/ui/"
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
        r.add_get("/ui/tail", self.events)
        r.add_get("/ui/dead", self.dead)
        r.add_post("/ui/replay", self.replay)
        r.add_get("/ui/destinations", self.destinations)
        r.add_post("/ui/destinations/{name}/{action}", self.pause_resume)
        r.add_get("/ui/rejections", self.rejections)
        r.add_get("/ui/audit", self.audit)
        r.add_get("/ui/alerts", self.alerts)

    async def home(self, request: web.Request) -> web.Response:
        return _redirect("/ui/")

    # -- pages -----------------------------------------------------------------------------

    def render(
        self, request: web.Request, template: str, title: str, current: str, **context: Any
    ) -> web.Response:
        html = self._templates.get_template(template).render(
            title=title,
            current=current,
            csrf=self.csrf(request),
            done=notice(request.query, frozenset(d.name for d in self._surface.destinations())),
            **context,
        )
        return web.Response(text=html, content_type="text/html", headers=_no_store())

    async def login_form(self, request: web.Request) -> web.Response:
        error = sign_in_error(request.query.get("error"))
        if not self._private(request):
            error = sign_in_error("insecure")
        html = self._templates.get_template("login.html").render(
            error=error, next=_local_path(request.query.get("next"))
        )
        return web.Response(text=html, content_type="text/html", headers=_no_store())

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        back = _local_path(str(form.get("next", "")))
        if not self._private(request):
            return _redirect("/ui/login?" + urlencode({"error": "insecure"}))
        given = str(form.get("token", "")).encode()
        who = Who("console", request.remote or "unix")
        if not hmac.compare_digest(given, self._token):
            await self._surface.audit(who, "sign-in-failed", None, {})
            # Wrong: answered later each time (per address); a right token never waits.
            await asyncio.sleep(self._throttle.wrong(request.remote or "-", time.monotonic()))
            retry = {"error": "wrong", "next": back}
            return _redirect("/ui/login?" + urlencode(retry))
        await self._surface.audit(who, "sign-in", None, {})
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
        """Health at a glance, from the per-minute rollup and the backlog's indexes (never
        a scan of the event tables): each source and destination judged from its own
        numbers (relay.store.rollup), what needs attention first, linked to its list."""
        now = time.time()
        rows = await self._surface.read(lambda r: r.minutes(now))
        backlog = await self._surface.read(lambda r: r.backlog())
        per = rollup.series(rows, now)
        empty = rollup.Series()
        attention: list[dict[str, Any]] = []
        names = {n for kind, n in per if kind == rollup.SOURCE}
        sources = []
        for name in sorted(set(self._surface.sources()) | names):
            s = per.get((rollup.SOURCE, name), empty)
            health = rollup.source_health(name, s)
            sources.append(
                {
                    "name": name,
                    "health": health,
                    "received": s.total("received"),
                    "rejected": s.total("rejected"),
                    "duplicates": self._surface.duplicates(name),
                    "spark": rollup.chart([float(v) for v in s.of("received")]),
                }
            )
            if health.level != "ok":
                attention.append({"kind": "source", "name": name, "health": health})
        groups = self._surface.agents()
        destinations = []
        for view in self._surface.destinations():
            s = per.get((rollup.DESTINATION, view.name), empty)
            pending, oldest_at, dead = backlog.get(view.name, (0, 0.0, 0))
            oldest = now - oldest_at if pending else None
            group = view.config.agent
            offline = (
                group if group is not None and not groups.get(group, {}).get("connected") else None
            )
            health = rollup.destination_health(
                view.name, s, pending, oldest, view.paused is not None, view.circuit, offline
            )
            delivered, died, retried = s.total("delivered"), s.total("dead"), s.total("retried")
            attempts = delivered + died + retried
            p95 = s.p95()
            destinations.append(
                {
                    "name": view.name,
                    "health": health,
                    "delivered": delivered,
                    "died": died,
                    "success": f"{100 * delivered / attempts:.0f}%" if attempts else "-",
                    "pending": pending,
                    "dead": dead,
                    "oldest": oldest,
                    "p95": _seconds(p95),
                    "spark": rollup.chart([float(v) for v in s.of("delivered")]),
                    "latency": rollup.chart(s.p95_per_minute()),
                }
            )
            if health.level != "ok":
                attention.append({"kind": "destination", "name": view.name, "health": health})
        attention.sort(key=lambda a: -rollup.LEVELS[a["health"].level])
        received = [0.0] * rollup.WINDOW
        for (kind, _), s in per.items():
            if kind == rollup.SOURCE:
                received = [a + b for a, b in zip(received, s.of("received"), strict=True)]
        context = {
            "sources": sources,
            "destinations": destinations,
            "attention": attention,
            "chart": _chart(received, now),
        }
        if request.query.get("fragment"):
            html = self._templates.get_template("_overview.html").render(**context)
            return web.Response(text=html, content_type="text/html", headers=_no_store())
        return self.render(request, "overview.html", "Overview", "/ui/", **context)

    async def events(self, request: web.Request) -> web.Response:
        q = request.query
        for given in (q.get("key", ""), q.get("q", "")):
            # relay's own event id (or its start, as a table showed it) in the search: that
            # event's page, when only one event has it.
            prefix = given.strip().rstrip("…")
            if EVENT_ID.fullmatch(prefix):

                def starting(reader: Reader, start: str = prefix) -> list[str]:
                    return reader.event_ids_starting(start)

                found = await self._surface.read(starting)
                if len(found) == 1:
                    return _redirect(f"/ui/events/{found[0]}")
        try:
            f = EventFilter(
                source=q.get("source") or None,
                event_type=q.get("type") or None,
                status=q.get("status") or None,
                since=since_to_time(q.get("since") or None),
                until=since_to_time(q.get("until") or None),
                key=q.get("key") or None,
                destination=q.get("destination") or None,
                text=q.get("q") or None,
                before=q.get("before") or None,
                limit=PAGE + 1,  # one more: is there an older page?
            )
            rows = await self._surface.read(lambda r: r.events(f))
            problem = None
        except ValueError as exc:
            rows, problem = [], str(exc)
        rows, older = _paged(q, rows, "id")
        names = ("source", "destination", "type", "status", "since", "until", "key", "q")
        form = {k: q.get(k, "") for k in names}
        replayable = None
        # Delivered ones can be millions: counted for a replay only when asked (count=1).
        counted = ("dead", "unrouted", "delivered") if q.get("count") else ("dead", "unrouted")
        # The replay selection says exactly what the filter says (the live tail has none).
        live = request.path == "/ui/tail"
        if problem is None and f.status in counted and not live:
            sel = ReplaySelection(
                source=f.source,
                event_type=clauses.type_glob(f.event_type) if f.event_type else None,
                since=f.since,
                until=f.until,
                state=f.status or "dead",
                destination=f.destination,
                key=f.key,
                text=f.text,
            )
            who = Who("console", request.remote or "unix")
            seen = await self._surface.replay(sel, who, dry_run=True)
            replayable = {"sel": sel, "count": int(seen["matched"]), "form_id": _form_id()}
        back_query = urlencode({k: v for k, v in form.items() if v})
        if live and q.get("fragment"):
            html = self._templates.get_template("_events_table.html").render(rows=rows)
            return web.Response(text=html, content_type="text/html", headers=_no_store())
        return self.render(
            request,
            "events.html",
            "Live tail" if live else "Events",
            "/ui/events",
            live=live,
            page=PAGE,
            back_query=back_query,
            fragment_query=urlencode({k: v for k, v in form.items() if v} | {"fragment": "1"}),
            q=form,
            statuses=("", *STATUSES),
            rows=rows,
            problem=problem,
            older=older,
            replayable=replayable,
            count_link=urlencode(dict(q) | {"count": "1"}),
            back="/ui/events?" + back_query,
        )

    async def event(self, request: web.Request) -> web.Response:
        event_id = request.match_info["id"]
        ev = await self._surface.read(lambda r: r.event(event_id))
        if ev is None:
            raise web.HTTPNotFound(text=f"no event {event_id}")
        if ev["encoding"] == "json":
            body = json.dumps(ev["body"], indent=2, ensure_ascii=False)
        else:
            body = str(ev["body"])
        replayed = {d["replay_of"] for d in ev["deliveries"] if d["replay_of"] is not None}
        configs = {view.name: view.config for view in self._surface.destinations()}
        payload = await self._surface.payload(event_id) if ev["deliveries"] else None
        for d in ev["deliveries"]:
            config = configs.get(d["destination"])
            if payload is None or config is None:
                continue  # a destination no longer configured: nothing to rebuild it from
            last = d["history"][-1] if d["history"] else None
            number = last["number"] if last else 1
            at = last["started_at"] if last else time.time()
            claim = Claim(d["id"], event_id, number, d["created_at"])
            d["request"] = outgoing.shown(config, payload, claim, at)
        views = {view.name: view for view in self._surface.destinations()}
        # While a delivery is on its way, the page fetches its deliveries' states every 5 s
        # and replaces only those (not the page: an open "Copy as curl" stays open).
        pending = any(d["state"] == "pending" for d in ev["deliveries"])
        if request.query.get("fragment") == "deliveries":
            html = self._templates.get_template("_delivery_states.html").render(
                ev=ev, views=views, now=time.time(), refresh=pending
            )
            return web.Response(text=html, content_type="text/html", headers=_no_store())
        return self.render(
            request,
            "event.html",
            ev["id"],
            "/ui/events",
            ev=ev,
            body=body,
            replayed=replayed,
            form_id=_form_id(),
            views=views,
            now=time.time(),
            refresh=pending,
        )

    async def dead(self, request: web.Request) -> web.Response:
        """Dead letters: a filter (destination, source, type, error, From and Until on the
        time they died), pages of ``PAGE`` by delivery id, and how many match in all, with
        one form that replays exactly those."""
        q = request.query
        names = ("destination", "source", "type", "error", "from", "until", "key", "q")
        form = {k: q.get(k, "") for k in names}
        problem = None
        rows: list[dict[str, Any]] = []
        total, last_died = 0, None
        try:
            f = DeadFilter(
                destination=form["destination"] or None,
                source=form["source"] or None,
                event_type=form["type"] or None,
                error=form["error"] or None,
                since=since_to_time(form["from"] or None),
                until=since_to_time(form["until"] or None),
                key=form["key"] or None,
                text=form["q"] or None,
            )
            before = q.get("before", "")
            page = replace(f, before_id=int(before) if before.isdigit() else None)
            rows = await self._surface.read(lambda r: r.dead(page, PAGE + 1))  # more after?
            total, last_died = await self._surface.read(lambda r: r.dead_summary(f))
        except ValueError as exc:
            problem, f = str(exc), DeadFilter()
        rows, older = _paged(q, rows, "delivery_id")
        by = q.get("group", "")
        grouped: list[dict[str, Any]] = []
        if by in clauses.DEAD_GROUPS:
            grouped = await self._surface.read(lambda r: r.dead_grouped(f, by))
            keep = {k: v for k, v in form.items() if v and k != by}
            for g in grouped:
                if g["value"] is not None:
                    g["link"] = "/ui/dead?" + urlencode(keep | {by: g["value"]})
        groups = await self._surface.read(lambda r: r.dead_groups())
        return self.render(
            request,
            "dead.html",
            "Dead letters",
            "/ui/dead",
            groups=[g | {"form_id": _form_id()} for g in groups],
            by=by if by in clauses.DEAD_GROUPS else "",
            grouped=grouped,
            group_links={
                k: "/ui/dead?" + urlencode({x: v for x, v in form.items() if v} | {"group": k})
                for k in clauses.DEAD_GROUPS
            },
            rows=rows,
            q=form,
            matching={
                "count": total,
                "last_died": last_died,
                "since": f.since,
                "until": f.until,
                "filtered": any(form.values()),
            },
            problem=problem,
            older=older,
            back="/ui/dead?" + urlencode({k: v for k, v in form.items() if v}),
            form_id=_form_id(),
            matching_id=_form_id(),
        )

    async def replay(self, request: web.Request) -> web.Response:
        """Every replay form carries a request id made when the page was rendered: sent
        twice (a double click, a reload and resubmit), it replays once. "Replay all N" also
        carries N and when the last of them died: if the set changed meanwhile, it says so
        instead of replaying something else."""
        form = await request.post()
        ids = tuple(int(str(v)) for v in form.getall("delivery", []) if str(v).isdigit())
        back = _local_path(str(form.get("back", "/ui/dead")))
        key = str(form.get("request", "")) or None
        who = Who("console", request.remote or "unix")
        if ids:
            sel = ReplaySelection(deliveries=ids)
            if key is not None:  # the same form with another selection is another request
                chosen = ",".join(str(i) for i in sorted(ids)).encode()
                key = f"{key}:{hashlib.sha256(chosen).hexdigest()[:16]}"
        elif form.get("events"):  # the events list's "Replay the N": its filter, exactly
            sel = ReplaySelection(
                source=str(form.get("source", "")) or None,
                event_type=str(form.get("type", "")) or None,
                since=_float(form.get("since")),
                until=_float(form.get("until")),
                state=str(form.get("state", "dead")),
                destination=str(form.get("destination", "")) or None,
                key=str(form.get("key", "")) or None,
                text=str(form.get("q", "")) or None,
            )
        elif form.get("matching"):  # "Replay all N matching": the list's own filter
            sel = ReplaySelection(
                destination=str(form.get("destination", "")) or None,
                source=str(form.get("source", "")) or None,
                event_type=str(form.get("type", "")) or None,
                error=str(form.get("error", "")) or None,
                died_since=_float(form.get("died_since")),
                died_until=_float(form.get("died_until")),
                died_before=_float(form.get("died_before")),
                key=str(form.get("key", "")) or None,
                text=str(form.get("q", "")) or None,
            )
        else:
            destination = str(form.get("destination", "")) or None
            if destination is None:
                return _redirect(told(back, "nothing"))
            sel = ReplaySelection(
                destination=destination,
                error=str(form.get("error", "")) or None,
                exact_error=True,
                died_before=_float(form.get("died_before")),
            )
        if not ids:
            expect = _float(form.get("expect"))
            if expect is not None:
                seen = await self._surface.replay(sel, who, dry_run=True)
                if seen["matched"] != int(expect):
                    return _redirect(told(back, "changed", n=seen["matched"], shown=int(expect)))
        try:
            answer = await self._surface.replay(sel, who, key)
        except KeyReused:
            return _redirect(told(back, "reused"))
        if answer.get("repeated"):
            return _redirect(told(back, "repeated"))
        return _redirect(told(back, "replayed", n=int(answer["replayed"])))

    async def audit(self, request: web.Request) -> web.Response:
        """Operators' actions, newest first: an action, From/Until, pages by id."""
        return await self._timed_list(
            request,
            "action",
            lambda r, action, since, until, before: r.audit(since, PAGE + 1, until, before, action),
            "audit.html",
            "Audit",
        )

    async def _timed_list(
        self,
        request: web.Request,
        field: str,
        read: Callable[[Any, str | None, float | None, float | None, int | None], Any],
        template: str,
        title: str,
    ) -> web.Response:
        """A list filtered by one field and From/Until, newest first, paged by id:
        ``read(reader, field's value, since, until, before)`` reads PAGE + 1 rows."""
        q = request.query
        form = {k: q.get(k, "") for k in (field, "from", "until")}
        rows: list[dict[str, Any]] = []
        problem = None
        try:
            since, until = since_to_time(form["from"] or None), since_to_time(form["until"] or None)
            before, value = _int(q.get("before")), form[field] or None
            rows = await self._surface.read(lambda r: read(r, value, since, until, before))
        except ValueError as exc:
            problem = str(exc)
        rows, older = _paged(q, rows, "id")
        path = request.path
        return self.render(
            request, template, title, path, rows=rows, q=form, problem=problem, older=older
        )

    async def alerts(self, request: web.Request) -> web.Response:
        """What raises an alert and where it goes (``[alerts]``), and the alerts sent: events
        of relay's own source, delivered like any other."""
        config = self._surface.alerts()
        conditions = []
        if config.dead:
            conditions.append(("dead", "deliveries died"))
        if config.backlog is not None:
            conditions.append(("backlog", f"oldest pending older than {ago(config.backlog)}"))
        if config.rejections is not None:
            conditions.append(("rejections", "a source refuses too large a share"))
        for source, quiet in sorted(config.quiet.items()):
            conditions.append(("quiet", f"{source} received nothing for {ago(quiet)}"))
        f = EventFilter(source=ALERT_SOURCE, limit=PAGE + 1, before=request.query.get("before"))
        rows = await self._surface.read(lambda r: r.events(f))
        rows, older = _paged(request.query, rows, "id")
        return self.render(
            request,
            "alerts.html",
            "Alerts",
            "/ui/alerts",
            config=config,
            conditions=conditions,
            every=ago(config.every),
            rows=rows,
            older=older,
        )

    async def destinations(self, request: web.Request) -> web.Response:
        stats = await self._surface.read(lambda r: r.stats())
        groups = self._surface.agents()
        cards = []
        for view in self._surface.destinations():
            d, s = view.config, stats["destinations"].get(view.name, {})
            retry = d.retry
            schedule = ", ".join(f"{x:g}s" for x in retry.schedule) or (
                f"exponential {retry.base:g}s, factor {retry.factor:g}, up to {retry.cap:g}s"
            )
            limit = d.rate_limit
            cards.append(
                {
                    "name": view.name,
                    "url": d.url,
                    "paused": view.paused,
                    "circuit": view.circuit,
                    "pending": s.get("pending", 0),
                    "dead": s.get("dead", 0),
                    "concurrency": d.max_concurrency,
                    "rate_limit": f"{limit.rate:g}/s, burst {limit.burst}" if limit else "none",
                    "retries": (
                        f"{retry.max_attempts} attempts, {schedule}, max age {retry.max_age:g}s"
                    ),
                    "ordering": d.ordering,
                    "signed": d.signing_secret is not None,
                    "action": "resume" if view.paused else "pause",
                    "agent": _agent_line(d.agent, groups),
                }
            )
        return self.render(
            request, "destinations.html", "Destinations", "/ui/destinations", destinations=cards
        )

    async def pause_resume(self, request: web.Request) -> web.Response:
        name, action = request.match_info["name"], request.match_info["action"]
        who = Who("console", request.remote or "unix")
        if action == "pause":
            found = await self._surface.pause(name, "paused from the console", who)
        elif action == "resume":
            found = await self._surface.resume(name, who)
        else:
            found = False
        if not found:
            raise web.HTTPNotFound()
        code = "paused" if action == "pause" else "resumed"
        return _redirect(told("/ui/destinations", code, destination=name))

    async def rejections(self, request: web.Request) -> web.Response:
        """Refused requests, newest first: a source, From/Until, pages by id."""
        return await self._timed_list(
            request,
            "source",
            lambda r, source, since, until, before: r.rejections(
                source, PAGE + 1, since, until, before
            ),
            "rejections.html",
            "Rejections",
        )


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


SECRET_PARAMS = frozenset({"token", "access_token", "secret", "password"})  # never a filter


def _without_secrets(request: web.Request) -> str:
    """The page to come back to after sign-in, without a token someone put in its URL: the
    console takes none there, and a Location header ends up in proxy logs and history."""
    kept = [(k, v) for k, v in request.query.items() if k.lower() not in SECRET_PARAMS]
    return request.path + ("?" + urlencode(kept) if kept else "")


def _local_path(path: str | None) -> str:
    """Where to go after sign-in: a console page, never another site."""
    if path and path.startswith("/ui/") and not path.startswith("//"):
        return path
    return "/ui/"


def _agent_line(group: str | None, groups: dict[str, dict[str, Any]]) -> str | None:
    """How a destination behind an agent group is reached right now."""
    if group is None:
        return None
    g = groups.get(group, {})
    if g.get("connected"):
        return f"{group}: {g['connected']} connected, {g['free']} of {g['credits']} credits free"
    offline = g.get("offline_seconds")
    since = f" for {ago(offline)}" if offline is not None else " (never connected)"
    return f"{group}: offline{since}; deliveries wait, spending no attempts"


def _form_id() -> str:
    """A replay form's request id: made once per rendered form (see Console.replay)."""
    return "ui-" + secrets.token_urlsafe(16)


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def _paged(q: Any, rows: list[dict[str, Any]], key: str) -> tuple[list[dict[str, Any]], str | None]:
    """A page read with one row more than it shows: the rows to show, and the query of the
    next (older) page when that extra row exists (keyset paging on ``key``)."""
    if len(rows) <= PAGE:
        return rows, None
    rows = rows[:PAGE]
    kept = {k: v for k, v in q.items() if k != "before" and k not in PARAMS}
    return rows, urlencode(kept | {"before": rows[-1][key]})


def _float(value: object) -> float | None:
    try:
        return float(str(value)) if value not in (None, "") else None
    except ValueError:
        return None


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"≤ {value * 1000:.0f} ms" if value < 1 else f"≤ {value:g} s"


def _chart(events: list[float], now: float) -> dict[str, Any]:
    """The geometry of the overview's events-per-minute chart: bars, a y axis with its
    peak and unit, and an x axis of clock times (UTC) every 15 minutes."""
    left, bottom, width, height = 44, 18, 600, 120
    plot_w, plot_h = width - left, height - bottom
    top = max(events) or 1.0
    step = plot_w / len(events)
    bars = [
        {
            "x": f"{left + i * step:.1f}",
            "y": f"{plot_h - v / top * plot_h:.1f}",
            "w": f"{max(step - 1, 1):.1f}",
            "h": f"{v / top * plot_h:.1f}",
        }
        for i, v in enumerate(events)
        if v
    ]
    first = (rollup.minute_of(now) - len(events) + 1) * 60
    ticks = [
        {
            "x": f"{left + i * step:.1f}",
            "label": time.strftime("%H:%M", time.gmtime(first + i * 60)),
        }
        for i in range(0, len(events), 15)
    ]
    return {
        "width": width,
        "height": height,
        "left": left,
        "plot_h": plot_h,
        "bars": bars,
        "peak": f"{top:g}",
        "ticks": ticks,
        "total": f"{sum(events):g}",
    }

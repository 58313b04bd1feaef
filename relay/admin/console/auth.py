"""Sign-in, sign-out and the guard in front of every console page.

Sign-in takes a person's token once (relay.people) and sets a session cookie of that person
(HttpOnly, SameSite=Strict, Secure over TLS; see ``sessions``); every request then acts as
them, within their role: a page a viewer may read, a change only an operator or an admin
may make (403 with the reason otherwise), and a person removed from the config is signed
out at their next request. Every action is a POST form carrying a CSRF token derived from
the session. Sign-in needs a connection that keeps the token private: TLS (the admin
listener's own, or a reverse proxy in ``trusted_proxies`` saying ``X-Forwarded-Proto:
https``), loopback, or a Unix socket; plain HTTP from another machine is refused with what to
do instead.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Callable
from urllib.parse import urlencode

from aiohttp import web

from relay.admin.console.notices import sign_in_error
from relay.admin.console.pages import (
    PERSON,
    Handler,
    Page,
    Pages,
    html_response,
    local_path,
    no_store,
    package_text,
    redirect,
)
from relay.admin.console.sessions import SESSION_SECONDS, Sessions, Throttle
from relay.admin.surface import Who
from relay.network import parse_address, within
from relay.people import People, Person, refusal

COOKIE = "relay_session"
OPEN = frozenset({"/ui/login", "/ui/static/style.css", "/ui/static/app.js"})  # no session
SECRET_PARAMS = frozenset({"token", "access_token", "secret", "password"})  # never a filter
STATIC = {"style.css": "text/css", "app.js": "text/javascript"}


class Auth:
    def __init__(self, pages: Pages, sessions: Sessions, people: Callable[[], People]) -> None:
        self._pages = pages
        self._surface = pages.surface
        self._sessions = sessions
        self._people = people
        self._throttle = Throttle()

    def pages(self) -> list[Page]:
        return [
            Page("GET", "/ui/login", self.login_form),
            Page("POST", "/ui/login", self.login),
            Page("POST", "/ui/logout", self.logout),
            Page("GET", "/ui/static/{name}", self.static),
        ]

    def person(self, request: web.Request) -> Person | None:
        """Who is signed in on this request (None: nobody, or a person no longer in the
        config, whose session ends here)."""
        session = request.cookies.get(COOKIE)
        name = self._sessions.person(session, time.time())
        person = self._people().named(name) if name else None
        if name and person is None:
            self._sessions.close(session)
        return person

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
        if path in OPEN:
            return await handler(request)
        person = self.person(request)
        if person is None:
            if request.query.get("fragment"):
                return web.Response(status=401, text="signed out", headers=no_store())
            back = _without_secrets(request) if request.method == "GET" else "/ui/"
            raise web.HTTPSeeOther("/ui/login?" + urlencode({"next": back}))
        if request.method == "POST":
            form = await request.post()
            if not hmac.compare_digest(str(form.get("csrf", "")), self.csrf(request)):
                return web.Response(status=403, text="stale or missing form token; reload")
            action = action_of(request)
            if action is not None and not person.may(action):
                return web.Response(status=403, text=refusal(person, action))
        request[PERSON] = person
        return await handler(request)

    async def login_form(self, request: web.Request) -> web.Response:
        error = sign_in_error(request.query.get("error"))
        if not self._private(request):
            error = sign_in_error("insecure")
        html = self._pages.env.get_template("login.html").render(
            error=error, next=local_path(request.query.get("next"))
        )
        return html_response(html)

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        back = local_path(str(form.get("next", "")))
        if not self._private(request):
            return redirect("/ui/login?" + urlencode({"error": "insecure"}))
        person = self._people().find(str(form.get("token", "")))
        if person is None:
            who = Who("console", request.remote or "unix")
            await self._surface.audit(who, "sign-in-failed", None, {})
            # Wrong: answered later each time (per address); a right token never waits.
            await asyncio.sleep(self._throttle.wrong(request.remote or "-", time.monotonic()))
            retry = {"error": "wrong", "next": back}
            return redirect("/ui/login?" + urlencode(retry))
        await self._surface.audit(Who(person.name, request.remote or "unix"), "sign-in", None, {})
        response = redirect(back)
        response.set_cookie(
            COOKIE,
            self._sessions.open(time.time(), person.name),
            max_age=SESSION_SECONDS,
            path="/ui",
            secure=self._over_tls(request),
            httponly=True,
            samesite="Strict",
        )
        return response

    async def logout(self, request: web.Request) -> web.Response:
        self._sessions.close(request.cookies.get(COOKIE))
        response = redirect("/ui/login")
        response.del_cookie(COOKIE, path="/ui")
        return response

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        return web.Response(
            text=package_text("static", name),
            content_type=STATIC[name],
            headers={"Cache-Control": "max-age=300"},
        )


def _unix(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and isinstance(transport.get_extra_info("sockname"), str)


def _without_secrets(request: web.Request) -> str:
    """The page to come back to after sign-in, without a token someone put in its URL: the
    console takes none there, and a Location header ends up in proxy logs and history."""
    kept = [(k, v) for k, v in request.query.items() if k.lower() not in SECRET_PARAMS]
    return request.path + ("?" + urlencode(kept) if kept else "")


def action_of(request: web.Request) -> str | None:
    """The change a console POST makes (relay.people.NEEDS), None for signing in or out."""
    path = request.path
    if path == "/ui/replay":
        return "replay"
    if path.startswith("/ui/destinations/"):
        asked = request.match_info.get("action", "")
        return asked if asked in ("pause", "resume") else "pause"
    return None


def who(request: web.Request) -> Who:
    """The audit trail's actor for a console action: the person signed in."""
    return Who(request[PERSON].name, request.remote or "unix")

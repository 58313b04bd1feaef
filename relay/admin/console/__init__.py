"""The web console, served by the admin listener under ``/ui/``.

Pages are Jinja2 templates (``templates/``, autoescaped: no value reaches the page
unescaped) over the same reads as the JSON API; the handlers build a context and render.
A little plain JavaScript (live refresh of the overview, a confirmation before bulk
actions) and the CSS are package data inside the binary, so it works offline and needs no
build step. One module per resource (``overview``, ``events``, ``dead``, ``replay``,
``lists``, ``destinations``; sign-in and the guard in ``auth``), each listing its pages; the
table they make feeds both the routes and the navigation.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from aiohttp import web

from relay.admin.console.auth import COOKIE, Auth
from relay.admin.console.dead import Dead
from relay.admin.console.destinations import Destinations
from relay.admin.console.events import Events
from relay.admin.console.lists import Lists
from relay.admin.console.overview import Overview
from relay.admin.console.pages import Page, Pages, redirect
from relay.admin.console.replay import Replays
from relay.admin.console.sessions import Sessions
from relay.admin.surface import Surface
from relay.people import People


class Console:
    def __init__(self, surface: Surface, people: Callable[[], People]) -> None:
        sessions = Sessions(secrets.token_bytes(32))  # sessions live in memory: so may the key
        pages = Pages(surface, lambda request: sessions.csrf(request.cookies.get(COOKIE, "")))
        auth = Auth(pages, sessions, people)
        self.guard = auth.guard
        # In the navigation's order: each resource's pages, those with a label listed.
        resources = (Overview, Events, Dead, Destinations, Lists, Replays)
        self.table: list[Page] = [Page("GET", "/ui", self.home), *auth.pages()]
        for resource in resources:
            self.table += resource(pages).pages()
        pages.nav = [(p.path, p.nav) for p in self.table if p.nav is not None]

    def routes(self, app: web.Application) -> None:
        for page in self.table:
            app.router.add_route(page.method, page.path, page.handler)

    async def home(self, request: web.Request) -> web.Response:
        return redirect("/ui/")

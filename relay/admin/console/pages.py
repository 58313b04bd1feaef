"""What every console page shares: the templates, rendering with the navigation and the
form token, keyset paging, redirects and the headers every page carries."""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from relay.admin.console.notices import PARAMS, notice
from relay.admin.surface import Surface
from relay.people import Person
from relay.text import plural

PAGE = 50  # rows per page of every list
PERSON = web.RequestKey("console_person", Person)  # who is signed in (set by auth's guard)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Page:
    """One route of the console; ``nav``: its label in the navigation, in table order."""

    method: str
    path: str
    handler: Handler
    nav: str | None = None


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


def package_text(*parts: str) -> str:
    """A file of the console's package data (templates, static): read through
    importlib.resources, so it loads from a wheel, a checkout or the executable alike."""
    return resources.files(__package__).joinpath(*parts).read_text(encoding="utf-8")


def templates() -> jinja2.Environment:
    """The console's templates. Autoescape is on for every template, and an undefined name
    is an error, not an empty string."""
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: package_text("templates", name)),
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


class Pages:
    """Rendering for the resource modules: a page in the site's frame, or a fragment."""

    def __init__(self, surface: Surface, csrf: Callable[[web.Request], str]) -> None:
        self.surface = surface
        self.csrf = csrf
        self.env = templates()
        self.nav: list[tuple[str, str]] = []  # (path, label), set from the page table

    def render(
        self, request: web.Request, template: str, title: str, current: str, **context: Any
    ) -> web.Response:
        person = request.get(PERSON)
        html = self.env.get_template(template).render(
            title=title,
            current=current,
            nav=self.nav,
            person=person,
            may=person.may if person is not None else (lambda action: False),
            csrf=self.csrf(request),
            done=notice(request.query, frozenset(d.name for d in self.surface.destinations())),
            **context,
        )
        return html_response(html)

    def fragment(self, template: str, **context: Any) -> web.Response:
        """A part of a page, fetched by its script to refresh it in place."""
        return html_response(self.env.get_template(template).render(**context))


def html_response(html: str) -> web.Response:
    return web.Response(text=html, content_type="text/html", headers=no_store())


def no_store() -> dict[str, str]:
    return {
        "Cache-Control": "no-store",
        "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def form_id() -> str:
    """A replay form's request id: made once per rendered form (see replay.Replays)."""
    return "ui-" + secrets.token_urlsafe(16)


def as_int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def as_float(value: object) -> float | None:
    try:
        return float(str(value)) if value not in (None, "") else None
    except ValueError:
        return None


R = TypeVar("R", bound=Mapping[str, Any])


def paged(q: Any, rows: list[R], key: str) -> tuple[list[R], str | None]:
    """A page read with one row more than it shows: the rows to show, and the query of the
    next (older) page when that extra row exists (keyset paging on ``key``)."""
    if len(rows) <= PAGE:
        return rows, None
    rows = rows[:PAGE]
    kept = {k: v for k, v in q.items() if k != "before" and k not in PARAMS}
    return rows, urlencode(kept | {"before": rows[-1][key]})


def local_path(path: str | None) -> str:
    """Where to go back to (after sign-in, after a form): a console page, never another
    site."""
    if path and path.startswith("/ui/") and not path.startswith("//"):
        return path
    return "/ui/"

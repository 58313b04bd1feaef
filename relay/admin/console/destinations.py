"""Destinations: each one's policy and state, how it is reached, and pause / resume."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from relay.admin.console import auth
from relay.admin.console.notices import told
from relay.admin.console.pages import Page, Pages, ago, redirect


class Destinations:
    def __init__(self, pages: Pages) -> None:
        self._pages = pages
        self._surface = pages.surface

    def pages(self) -> list[Page]:
        return [
            Page("GET", "/ui/destinations", self.destinations, nav="Destinations"),
            Page("POST", "/ui/destinations/{name}/{action}", self.pause_resume),
        ]

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
                    "agent": agent_line(d.agent, groups),
                }
            )
        return self._pages.render(
            request, "destinations.html", "Destinations", "/ui/destinations", destinations=cards
        )

    async def pause_resume(self, request: web.Request) -> web.Response:
        name, action = request.match_info["name"], request.match_info["action"]
        who = auth.who(request)
        if action == "pause":
            found = await self._surface.pause(name, "paused from the console", who)
        elif action == "resume":
            found = await self._surface.resume(name, who)
        else:
            found = False
        if not found:
            raise web.HTTPNotFound()
        code = "paused" if action == "pause" else "resumed"
        return redirect(told("/ui/destinations", code, destination=name))


def agent_line(group: str | None, groups: dict[str, dict[str, Any]]) -> str | None:
    """How a destination behind an agent group is reached right now."""
    if group is None:
        return None
    g = groups.get(group, {})
    if g.get("connected"):
        return f"{group}: {g['connected']} connected, {g['free']} of {g['credits']} credits free"
    offline = g.get("offline_seconds")
    since = f" for {ago(offline)}" if offline is not None else " (never connected)"
    return f"{group}: offline{since}; deliveries wait, spending no attempts"

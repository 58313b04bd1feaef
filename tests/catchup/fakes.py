"""The providers' APIs that catch-up calls, served on 127.0.0.1 by small aiohttp apps.

Each implements the documented endpoints with the shapes of the provider's published
description (the excerpts in ``openapi/``, with their origin): query parameters not
declared there are refused with 400, pagination works as documented, a wrong key gets the
provider's 401, and ``throttle`` answers the next N requests with the provider's 429 (or
GitHub's 403) and ``Retry-After``. The push providers send the redeliveries they are asked
for as real signed webhooks to relay, as the provider would, a moment after answering 202.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

SPECS = Path(__file__).parent / "openapi"


def declared(spec: str, path: str, method: str = "get") -> set[str]:
    """The query parameters the excerpt declares for an operation (deepObject ones by
    their base name, as Stripe's ``created[gte]`` is ``created``)."""
    operation = json.loads((SPECS / spec).read_text())["paths"][path][method]
    return {p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"}


def _undeclared(request: web.Request, allowed: set[str]) -> str | None:
    for name in request.query:
        if name.split("[", 1)[0] not in allowed:
            return name
    return None


@dataclass
class Fake:
    """What every fake has: its key, the requests it saw, the throttle, a runner."""

    key: str = "key_test_1"
    throttle: int = 0  # the next N requests are rate limited
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path_qs)
    port: int = 0
    _runner: web.AppRunner | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> web.Application:
        raise NotImplementedError

    async def start(self) -> Any:
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    def later(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def gate(self, request: web.Request) -> web.Response | None:
        """Record the request; the provider's 401 or 429 when due, else None."""
        self.requests.append((request.method, request.path_qs))
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            return self.unauthorized()
        if self.throttle > 0:
            self.throttle -= 1
            return self.limited()
        return None

    def unauthorized(self) -> web.Response:
        return web.json_response({"message": "Bad credentials"}, status=401)

    def limited(self) -> web.Response:
        return web.json_response(
            {"message": "rate limited"}, status=429, headers={"Retry-After": "1"}
        )


async def send(url: str, body: bytes, headers: dict[str, str]) -> int:
    """A webhook to relay, as the provider sends it; relay's status."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as response,
    ):
        await response.read()
        return response.status


# -- Stripe ------------------------------------------------------------------------------------


def stripe_event(n: int, created: int) -> dict[str, Any]:
    """An event shaped as Stripe's published fixture (openapi/stripe-events.json)."""
    fixture = json.loads((SPECS / "stripe-events.json").read_text())["x-fixtures"]["event"]
    event = json.loads(json.dumps(fixture))
    event.update(
        id=f"evt_{n:04d}{uuid.uuid4().hex[:20]}",
        created=created,
        type="invoice.paid",
        api_version="2026-08-27.basil",
    )
    event["data"]["object"] = {"id": f"in_{n}", "object": "invoice", "amount_paid": 100 * n}
    return event


def stripe_signature(body: bytes, secret: str, at: int | None = None) -> str:
    stamp = str(at if at is not None else int(time.time()))
    mac = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={mac}"


@dataclass
class FakeStripe(Fake):
    key: str = "sk_test_catchup"
    events: list[dict[str, Any]] = field(default_factory=list)
    pages: int = 0
    delay: float = 0.0  # seconds each page takes (a run long enough to be interrupted)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/events", self.list_events)
        return app

    def unauthorized(self) -> web.Response:
        error = {"type": "invalid_request_error", "message": "Invalid API Key provided"}
        return web.json_response({"error": error}, status=401)

    def limited(self) -> web.Response:
        error = {"type": "rate_limit_error", "message": "Too many requests hit the API"}
        return web.json_response({"error": error}, status=429, headers={"Retry-After": "1"})

    async def list_events(self, request: web.Request) -> web.Response:
        refused = self.gate(request)
        if refused is not None:
            return refused
        bad = _undeclared(request, declared("stripe-events.json", "/v1/events"))
        if bad is not None:
            error = {
                "type": "invalid_request_error",
                "message": f"Received unknown parameter: {bad}",
            }
            return web.json_response({"error": error}, status=400)
        q = request.query
        limit = int(q.get("limit", "10"))
        if not 1 <= limit <= 100:
            error = {"type": "invalid_request_error", "message": "limit must be 1 to 100"}
            return web.json_response({"error": error}, status=400)
        gte = int(q.get("created[gte]", "0"))
        lte = int(q.get("created[lte]", str(2**62)))
        # Newest first, as Stripe lists; ties keep the order they were made in, reversed.
        chosen = [e for e in reversed(self.events) if gte <= e["created"] <= lte]
        if q.get("delivery_success") == "false":  # pending somewhere, or failed for good
            chosen = [e for e in chosen if e["pending_webhooks"] > 0]
        chosen.sort(key=lambda e: -e["created"])
        after = q.get("starting_after")
        if after is not None:
            ids = [e["id"] for e in chosen]
            chosen = chosen[ids.index(after) + 1 :] if after in ids else []
        page = chosen[:limit]
        if self.delay:
            await asyncio.sleep(self.delay)
        self.pages += 1
        return web.json_response(
            {"object": "list", "data": page, "has_more": len(chosen) > limit, "url": "/v1/events"}
        )


# -- GitHub ------------------------------------------------------------------------------------


@dataclass
class FakeGitHub(Fake):
    """One repository hook's delivery log. ``deliveries``: newest last; each has the
    documented fields plus the request it carried (``_body``), to send again."""

    key: str = "ghp_catchup"
    hook: str = "repos/octo/shop/hooks/42"
    secret: str = "gh-secret"
    relay_url: str = ""
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    redeliveries: list[int] = field(default_factory=list)  # delivery ids asked for
    max_page: int = 100  # GitHub's own cap; a test lowers it to see pagination

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(f"/{self.hook}/deliveries", self.list_deliveries)
        app.router.add_post(f"/{self.hook}/deliveries/{{id}}/attempts", self.redeliver)
        return app

    def limited(self) -> web.Response:
        # A secondary rate limit, as GitHub answers it: 403 with Retry-After.
        return web.json_response(
            {"message": "You have exceeded a secondary rate limit."},
            status=403,
            headers={"Retry-After": "1"},
        )

    def log(self, guid: str, status_code: int, at: float, body: bytes, event: str) -> None:
        self.deliveries.append(
            {
                "id": len(self.deliveries) + 1000,
                "guid": guid,
                "delivered_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at)),
                "redelivery": False,
                "duration": 0.1,
                "status": "OK" if 200 <= status_code < 300 else "failed to connect",
                "status_code": status_code,
                "event": event,
                "action": "opened",
                "installation_id": None,
                "repository_id": 7,
                "throttled_at": None,
                "_body": body.decode(),
            }
        )

    def shown(self, delivery: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in delivery.items() if not k.startswith("_")}

    async def list_deliveries(self, request: web.Request) -> web.Response:
        refused = self.gate(request)
        if refused is not None:
            return refused
        spec = "github-hook-deliveries.json"
        bad = _undeclared(
            request, declared(spec, "/repos/{owner}/{repo}/hooks/{hook_id}/deliveries")
        )
        if bad is not None:
            return web.json_response({"message": f"Unknown parameter {bad}"}, status=422)
        per_page = min(int(request.query.get("per_page", "30")), self.max_page)
        newest_first = sorted(self.deliveries, key=lambda d: -d["id"])
        cursor = request.query.get("cursor")
        start = int(cursor) if cursor else 0
        page = newest_first[start : start + per_page]
        headers = {}
        if start + per_page < len(newest_first):
            link = (
                f"{self.url}/{self.hook}/deliveries?per_page={per_page}&cursor={start + per_page}"
            )
            headers["Link"] = f'<{link}>; rel="next"'
        return web.json_response([self.shown(d) for d in page], headers=headers)

    async def redeliver(self, request: web.Request) -> web.Response:
        refused = self.gate(request)
        if refused is not None:
            return refused
        wanted = int(request.match_info["id"])
        original = next((d for d in self.deliveries if d["id"] == wanted), None)
        if original is None:
            return web.json_response({"message": "Not Found"}, status=404)
        self.redeliveries.append(wanted)
        self.later(self._send(original))
        return web.json_response({}, status=202)

    async def _send(self, original: dict[str, Any]) -> None:
        body = original["_body"].encode()
        mac = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Delivery": original["guid"],
            "X-GitHub-Event": original["event"],
            "X-GitHub-Hook-ID": self.hook.rsplit("/", 1)[1],
            "X-Hub-Signature-256": f"sha256={mac}",
        }
        status = await send(self.relay_url, body, headers)
        self.log(original["guid"], status, time.time(), body, original["event"])
        self.deliveries[-1]["redelivery"] = True


# -- Paddle ------------------------------------------------------------------------------------


def paddle_signature(body: bytes, secret: str, at: int | None = None) -> str:
    stamp = str(at if at is not None else int(time.time()))
    mac = hmac.new(secret.encode(), f"{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return f"ts={stamp};h1={mac}"


@dataclass
class FakePaddle(Fake):
    key: str = "pdl_live_apikey_catchup"
    secret: str = "pdl_ntfset_secret"
    relay_url: str = ""
    notifications: list[dict[str, Any]] = field(default_factory=list)
    replays: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/notifications", self.list_notifications)
        app.router.add_post("/notifications/{id}/replay", self.replay)
        return app

    def unauthorized(self) -> web.Response:
        error = {"type": "request_error", "code": "authentication_malformed", "detail": "bad key"}
        return web.json_response({"error": error, "meta": {"request_id": "r"}}, status=401)

    def add(self, event_id: str, status: str, at: float) -> dict[str, Any]:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(at))
        note_id = f"ntf_{uuid.uuid4().hex[:26]}"
        note = {
            "id": note_id,
            "type": "transaction.completed",
            "status": status,
            "payload": {
                "event_id": event_id,
                "event_type": "transaction.completed",
                "occurred_at": stamp,
                "notification_id": note_id,
                "data": {"id": f"txn_{event_id[-6:]}", "status": "completed"},
            },
            "occurred_at": stamp,
            "delivered_at": None,
            "replayed_at": None,
            "origin": "event",
            "last_attempt_at": stamp,
            "retry_at": None,
            "times_attempted": 3,
            "notification_setting_id": "ntfset_01relay",
            "_at": at,
        }
        self.notifications.append(note)
        return note

    async def list_notifications(self, request: web.Request) -> web.Response:
        refused = self.gate(request)
        if refused is not None:
            return refused
        bad = _undeclared(request, declared("paddle-notifications.json", "/notifications"))
        if bad is not None:
            error = {"type": "request_error", "code": "invalid_field", "detail": bad}
            return web.json_response({"error": error}, status=400)
        q = request.query
        statuses = set(q.get("status", "").split(",")) - {""}
        since = _rfc(q["from"]) if "from" in q else 0.0
        until = _rfc(q["to"]) if "to" in q else 2e10
        per_page = min(int(q.get("per_page", "50")), 200)
        chosen = [
            n
            for n in sorted(self.notifications, key=lambda n: n["id"], reverse=True)
            if (not statuses or n["status"] in statuses) and since <= n["_at"] <= until
        ]
        after = q.get("after")
        if after is not None:
            chosen = [n for n in chosen if n["id"] < after]
        page = chosen[:per_page]
        more = len(chosen) > per_page
        next_url = None
        if page:
            keep = {k: v for k, v in q.items() if k != "after"}
            keep["after"] = page[-1]["id"]
            next_url = str(request.url.with_query(keep))
        pagination = {
            "per_page": per_page,
            "next": next_url,
            "has_more": more,
            "estimated_total": len(chosen),
        }
        data = [{k: v for k, v in n.items() if not k.startswith("_")} for n in page]
        return web.json_response(
            {"data": data, "meta": {"request_id": "r", "pagination": pagination}}
        )

    async def replay(self, request: web.Request) -> web.Response:
        refused = self.gate(request)
        if refused is not None:
            return refused
        original = next(
            (n for n in self.notifications if n["id"] == request.match_info["id"]), None
        )
        if original is None:
            return web.json_response({"error": {"code": "not_found"}}, status=404)
        if original["status"] not in ("delivered", "failed") or original["origin"] != "event":
            error = {"type": "request_error", "code": "notification_cannot_replay", "detail": "no"}
            return web.json_response({"error": error}, status=400)
        self.replays.append(original["id"])
        new_id = f"ntf_{uuid.uuid4().hex[:26]}"
        self.later(self._send(original, new_id))
        return web.json_response(
            {"data": {"notification_id": new_id}, "meta": {"request_id": "r"}}, status=202
        )

    async def _send(self, original: dict[str, Any], new_id: str) -> None:
        payload = dict(original["payload"], notification_id=new_id)
        body = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "Paddle-Signature": paddle_signature(body, self.secret),
        }
        status = await send(self.relay_url, body, headers)
        note = self.add(payload["event_id"], "delivered" if status < 300 else "failed", time.time())
        note["origin"] = "replay"


def _rfc(text: str) -> float:
    import datetime

    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# -- Svix --------------------------------------------------------------------------------------

SVIX_SECRET = "whsec_" + base64.b64encode(b"svix-catch-up-secret-0123456789").decode()


def svix_headers(msg_id: str, body: bytes, at: int | None = None) -> dict[str, str]:
    stamp = str(at if at is not None else int(time.time()))
    key = base64.b64decode(SVIX_SECRET.removeprefix("whsec_"))
    signed = f"{msg_id}.{stamp}.".encode() + body
    signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {
        "Content-Type": "application/json",
        "svix-id": msg_id,
        "svix-timestamp": stamp,
        "svix-signature": f"v1,{signature}",
    }


@dataclass
class FakeSvix(Fake):
    key: str = "testsk_catchup"
    app_id: str = "app_2relay"
    endpoint_id: str = "ep_2relay"
    relay_url: str = ""
    messages: dict[str, bytes] = field(default_factory=dict)  # msg id: payload
    attempts: list[dict[str, Any]] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        base = f"/api/v1/app/{self.app_id}"
        app.router.add_get(f"{base}/attempt/endpoint/{self.endpoint_id}", self.list_attempts)
        app.router.add_post(f"{base}/msg/{{msg}}/endpoint/{self.endpoint_id}/resend", self.resend)
        return app

    def attempt(self, msg_id: str, status: int, code: int, at: float) -> None:
        self.attempts.append(
            {
                "id": f"atmpt_{uuid.uuid4().hex[:27]}",
                "msgId": msg_id,
                "endpointId": self.endpoint_id,
                "url": self.relay_url,
                "response": "",
                "responseStatusCode": code,
                "responseDurationMs": 12,
                "status": status,
                "statusText": "success" if status == 0 else "fail",
                "triggerType": 0,
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at)),
                "_at": at,
            }
        )

    async def list_attempts(self, request: web.Request) -> web.Response:
        refused = self.gate(request)
        if refused is not None:
            return refused
        spec = "svix.json"
        path = "/api/v1/app/{app_id}/attempt/endpoint/{endpoint_id}"
        bad = _undeclared(request, declared(spec, path))
        if bad is not None:
            return web.json_response({"code": "validation", "detail": bad}, status=422)
        q = request.query
        status = int(q["status"]) if "status" in q else None
        since = _rfc(q["after"]) if "after" in q else 0.0
        until = _rfc(q["before"]) if "before" in q else 2e10
        limit = int(q.get("limit", "50"))
        if not 1 <= limit <= 250:
            return web.json_response({"code": "validation", "detail": "limit"}, status=422)
        chosen = [
            a
            for a in sorted(self.attempts, key=lambda a: a["id"], reverse=True)
            if (status is None or a["status"] == status) and since <= a["_at"] <= until
        ]
        iterator = q.get("iterator")
        if iterator is not None:
            chosen = [a for a in chosen if a["id"] < iterator]
        page = chosen[:limit]
        done = len(chosen) <= limit
        data = [{k: v for k, v in a.items() if not k.startswith("_")} for a in page]
        last = page[-1]["id"] if page else None
        return web.json_response(
            {"data": data, "iterator": last, "prevIterator": None, "done": done}
        )

    async def resend(self, request: web.Request) -> web.Response:
        refused = self.gate(request)
        if refused is not None:
            return refused
        msg = request.match_info["msg"]
        if msg not in self.messages:
            return web.json_response(
                {"code": "not_found", "detail": "Message not found"}, status=404
            )
        self.resent.append(msg)
        self.later(self._send(msg))
        return web.json_response({}, status=202)

    async def _send(self, msg: str) -> None:
        body = self.messages[msg]
        status = await send(self.relay_url, body, svix_headers(msg, body))
        self.attempt(msg, 0 if status < 300 else 2, status, time.time())

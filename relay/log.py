"""Logs: a stable event name plus key=value fields, one line each, to stdout.

``logfmt`` on a terminal or in a file, ``json`` when asked; under journald
(``JOURNAL_STREAM`` set) no timestamp, since the journal adds its own. Callers log
``log.info("delivery.attempt", extra={"fields": {...}})`` and never put a secret, a signature
or a body in ``fields``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, Literal

from aiohttp.http_exceptions import HttpProcessingError

Format = Literal["auto", "logfmt", "json"]


def _quote(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        return json.dumps(text)
    return text


class LogfmtFormatter(logging.Formatter):
    def __init__(self, timestamps: bool) -> None:
        super().__init__()
        self._timestamps = timestamps

    def format(self, record: logging.LogRecord) -> str:
        parts = []
        if self._timestamps:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            parts.append(f"ts={stamp}.{int(record.msecs):03d}Z")
        parts += [f"level={record.levelname.lower()}", f"msg={_quote(record.getMessage())}"]
        fields: dict[str, Any] = getattr(record, "fields", {})
        parts += [f"{k}={_quote(v)}" for k, v in fields.items() if v is not None]
        if record.exc_info:
            parts.append(f"exc={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": record.created,
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class ClientGarbage(logging.Filter):
    """Malformed requests are the client's problem: one debug line, never a traceback.

    aiohttp logs each unparsable request with a traceback, so anyone could flood the log.
    Errors raised inside relay's own handlers still pass through in full.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            record.msg, record.args = "http.bad_request", ()
            record.fields = {"reason": str(exc.message).splitlines()[0][:200]}
            record.exc_info = None
            return record.levelno >= logging.getLogger("relay").getEffectiveLevel()
        return True


def setup(level: str = "info", fmt: Format = "auto") -> None:
    handler = logging.StreamHandler(sys.stdout)
    journald = bool(os.environ.get("JOURNAL_STREAM"))
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(LogfmtFormatter(timestamps=not journald))
    root = logging.getLogger("relay")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    server = logging.getLogger("aiohttp")
    server.handlers[:] = [handler]
    server.setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
    server.propagate = False
    handler.addFilter(ClientGarbage())
    # The PostgreSQL driver's own warnings come in its own format, per connection; relay's
    # fault stories (store.write, store.listen, scheduler.lane) tell an outage once, so
    # only the driver's errors pass.
    driver = logging.getLogger("psycopg")
    driver.handlers[:] = [handler]
    driver.setLevel(logging.DEBUG if level == "debug" else logging.ERROR)
    driver.propagate = False


ERROR_TEXT = 300  # characters of an error's text a log line keeps


def brief(error: str) -> str:
    """An error's text for a log line: its first line, at most ``ERROR_TEXT`` characters.
    A driver can pile a message up (libpq repeated one line 27 million times across an
    outage); the log must stay readable and small whatever the error says."""
    first, _, rest = error.partition("\n")
    if rest or len(first) > ERROR_TEXT:
        return first[:ERROR_TEXT] + " …"
    return first


class Throttled:
    """A line that anyone outside can cause at will (a refused agent, a malformed frame):
    the first is written, then at most one every ``every`` seconds, which says how many
    were not (``unlogged``). 3,000 refused upgrades in half a second make one line, not
    3,016."""

    def __init__(self, logger: logging.Logger, name: str, every: float = 10.0) -> None:
        self._log = logger
        self._name = name
        self._every = every
        self._said_at: float | None = None
        self._unsaid = 0

    def say(self, now: float, **fields: Any) -> None:
        if self._said_at is not None and now - self._said_at < self._every:
            self._unsaid += 1
            return
        if self._unsaid:
            fields["unlogged"] = self._unsaid
        self._said_at, self._unsaid = now, 0
        self._log.warning(self._name, extra={"fields": fields})


class Fault:
    """A condition that can last (a full disk, a locked database), logged as one story: a
    line when it starts, a summary at most every ``every`` seconds while it lasts, and a
    line when it clears. A failing disk retried many times a second must not write a line
    and a traceback per retry (that fills the same disk and buries the first cause).
    """

    def __init__(
        self, logger: logging.Logger, name: str, every: float = 10.0, settle: float = 2.0
    ) -> None:
        self._log = logger
        self._name = name
        self._every = every
        self._settle = settle
        self.since: float | None = None  # time.monotonic() when it started
        self._count = 0
        self._said_at = 0.0
        self._last = 0.0  # the latest failure

    def failed(
        self, error: str, now: float, exc: BaseException | None = None, **fields: Any
    ) -> None:
        """It failed (again). ``exc``: shown with its traceback in the first line only (for
        a bug; a full disk needs no traceback)."""
        error = brief(error)
        self._count += 1
        self._last = now
        if self.since is None:
            self.since, self._said_at, self._count = now, now, 1
            self._log.error(
                f"{self._name}.failing", exc_info=exc, extra={"fields": {"error": error, **fields}}
            )
        elif now - self._said_at >= self._every:
            self._said_at = now
            self._log.warning(
                f"{self._name}.still_failing",
                extra={
                    "fields": {
                        "error": error,
                        "failures": self._count,
                        "for_s": round(now - self.since, 1),
                        **fields,
                    }
                },
            )

    def cleared(self, now: float, **fields: Any) -> None:
        """It worked. The story ends only after ``settle`` seconds without a failure: a
        nearly full disk lets some writes through, and must not make a story per write."""
        if self.since is None or now - self._last < self._settle:
            return
        self._log.info(
            f"{self._name}.recovered",
            extra={
                "fields": {"failures": self._count, "after_s": round(now - self.since, 1), **fields}
            },
        )
        self.since, self._count = None, 0

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

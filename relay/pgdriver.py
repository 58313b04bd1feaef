"""The PostgreSQL driver, psycopg 3: an optional dependency (``pip install
'webhook-relay[postgresql]'``) that SQLite users never import. A leaf module, so that the config can
ask for it (``check-config`` reports a PostgreSQL URL without the driver) without importing
the store."""

from __future__ import annotations

from typing import Any

from relay.errors import StorageError


def driver() -> Any:
    """The psycopg module, or a StorageError that says how to install it."""
    try:
        import psycopg
    except ImportError as exc:
        if "libpq" in str(exc) or "pq wrapper" in str(exc):
            # The single executable carries the driver but uses the system's libpq.
            raise StorageError(
                "storage.url names PostgreSQL, but the PostgreSQL client library libpq is "
                "not installed: apt-get install libpq5 (dnf install libpq; apk add libpq)"
            ) from None
        raise StorageError(
            "storage.url names PostgreSQL, but psycopg is not installed: pip install "
            "'webhook-relay[postgresql]' (from a clone of relay: pip install '.[postgresql]')"
        ) from None
    return psycopg

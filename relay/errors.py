"""Errors a user can act on.

    RelayError
    ├── ConfigError          the config file is wrong; the message names the key and the fix
    ├── StorageError         the database cannot be opened or migrated at start
    ├── StorageUnavailable   a write failed at run time (disk full, read-only, locked);
    │                        ingress answers 503 and the relay keeps running
    └── KeyReused            an Idempotency-Key sent again with another request (422)

The CLI is the only place that turns these into exit codes.
"""


class RelayError(Exception):
    """Base of every error relay raises on purpose."""


class ConfigError(RelayError):
    """The configuration is invalid; ``str()`` is one line naming the key and the fix."""


class StorageError(RelayError):
    """The database cannot be opened, migrated, or is not a relay database."""


class StorageUnavailable(RelayError):
    """A write could not be committed; nothing from it was acknowledged."""


class KeyReused(RelayError):
    """An idempotency key that was used for another request: nothing was done."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"Idempotency-Key {key!r} was used for another request; send a new key for a "
            "new request (the same key answers only the same request again)"
        )

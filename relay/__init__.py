"""relay: a webhook relay that verifies, commits to SQLite, and delivers with retries."""

__version__ = "0.1.0"

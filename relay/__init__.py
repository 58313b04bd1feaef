"""relay: a webhook relay that verifies, commits to SQLite, and delivers with retries."""

# The one place the version is written: pyproject.toml, `relay version`, the executable, the
# release archives and the Debian packages all read it (CHANGELOG.md says what changed).
__version__ = "0.2.0"

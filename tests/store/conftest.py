"""The contract suite's backends. A second backend (PostgreSQL) adds a parameter here and
passes every test in this folder unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relay.config import StorageConfig
from relay.store import Store, open_store

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def storage(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> StorageConfig:
    if backend == "postgresql":
        return StorageConfig.model_validate({"url": request.getfixturevalue("pg_url")})
    return StorageConfig(path=tmp_path / "relay.db")


@pytest.fixture
async def store(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Store]:
    config = storage(backend, request, tmp_path)
    opened = await open_store(config)
    opened.start()
    try:
        yield opened
    finally:
        await opened.close()

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests import postgres
from tests.helpers import Receiver


@pytest.fixture(scope="session")
def pg_sockets() -> Iterator[Path]:
    """A real PostgreSQL for the session: the one `make test` started (RELAY_TEST_PG), or
    one started here."""
    given = os.environ.get("RELAY_TEST_PG")
    if given:
        yield Path(given)
        return
    with postgres.cluster() as sockets:
        yield sockets


@pytest.fixture
def pg_url(pg_sockets: Path) -> str:
    """A new, empty database of its own for each test."""
    return postgres.create_database(pg_sockets, f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rx = await Receiver().start()
    yield rx
    await rx.stop()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session

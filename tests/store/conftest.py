"""The contract suite's backends: SQLite, PostgreSQL, and the store in memory that tests of a
Lane or the Batcher may use (tests/store/memory.py), which must mean what the two mean."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import TypeVar

import pytest

from relay.sections import StorageConfig
from relay.store import Store, open_store
from tests.store.memory import MemoryStore

T = TypeVar("T")

BACKENDS = ["sqlite", "postgresql", "memory"]


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
    opened = await bounded(opening(backend, config), "opening the store")
    opened.start()
    try:
        yield opened
    finally:
        await bounded(opened.close(), "closing the store")


async def opening(backend: str, config: StorageConfig) -> Store:
    if backend == "memory":
        return await MemoryStore.open(config)  # type: ignore[return-value]
    return await open_store(config)


async def bounded(step: Awaitable[T], what: str, limit: float = 60.0) -> T:
    """Await a step of the fixture; if it hangs, fail with every task's stack (pytest-timeout
    alone shows only the event loop waiting, not what it waits for)."""
    try:
        return await asyncio.wait_for(step, limit)
    except TimeoutError:
        stacks = io.StringIO()
        for task in asyncio.all_tasks():
            task.print_stack(file=stacks)
        pytest.fail(f"{what} took over {limit} s; tasks:\n{stacks.getvalue()}")

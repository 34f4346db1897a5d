"""Store backends for the conformance suite in tests/store/.

Every test there is written against the `Store` protocol only and runs once per
backend listed in `BACKENDS`. A backend is an async context manager that prepares
one empty database (a temporary file, a scratch schema...) and yields a
`StoreFactory`: calling the factory opens a store on that same database, so a test
can close a store and reopen the data it wrote. Each store reads the time from the
test's `Clock`, so tests can state timestamps and time rules exactly. Adding a backend
(PostgreSQL) means adding one entry here; the tests do not change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from provd.store import Store
from provd.store.memory import MemoryDatabase, open_memory_store
from provd.store.sqlite import open_sqlite_store

StoreFactory = Callable[[], AbstractAsyncContextManager[Store]]
"""Opens a store on the test's database; each call opens a new store on the same data."""


@dataclass
class Clock:
    """The stores' clock in tests: Unix milliseconds that move only when a test says."""

    ms: int = 1_700_000_000_000

    def __call__(self) -> int:
        return self.ms

    def advance(self, ms: int = 1000) -> int:
        """Move the clock `ms` forward and return the new time."""
        self.ms += ms
        return self.ms


Backend = Callable[[Path, Clock], AbstractAsyncContextManager[StoreFactory]]


@asynccontextmanager
async def sqlite_backend(tmp_path: Path, clock: Clock) -> AsyncIterator[StoreFactory]:
    """A fresh SQLite file in the test's temporary directory."""
    yield partial(open_sqlite_store, tmp_path / "provd.db", clock=clock)


@asynccontextmanager
async def memory_backend(tmp_path: Path, clock: Clock) -> AsyncIterator[StoreFactory]:
    """A fresh `MemoryDatabase`; every store the factory opens shares it."""
    yield partial(open_memory_store, MemoryDatabase(), now=clock)


BACKENDS: dict[str, Backend] = {
    "memory": memory_backend,
    "sqlite": sqlite_backend,
}


@pytest.fixture
def clock() -> Clock:
    """The time every store of the test reads."""
    return Clock()


@pytest.fixture(params=sorted(BACKENDS))
async def open_store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Clock
) -> AsyncIterator[StoreFactory]:
    """A factory of stores that all open the same, initially empty, database."""
    async with BACKENDS[request.param](tmp_path, clock) as factory:
        yield factory


@pytest.fixture
async def store(open_store: StoreFactory) -> AsyncIterator[Store]:
    """One open store on an empty database, closed when the test ends."""
    async with open_store() as opened:
        yield opened

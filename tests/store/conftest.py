"""Store backends for the conformance suite in test_store.py.

Every test there is written against the `Store` protocol only and runs once per
backend listed in `BACKENDS`. A backend is an async context manager that prepares
one empty database (a temporary file, a scratch schema...) and yields a
`StoreFactory`: calling the factory opens a store on that same database, so a test
can close a store and reopen the data it wrote. Adding a backend (PostgreSQL) means
adding one entry here; test_store.py does not change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from pathlib import Path

import pytest

from provd.store import Store
from provd.store.sqlite import open_sqlite_store

StoreFactory = Callable[[], AbstractAsyncContextManager[Store]]
"""Opens a store on the test's database; each call opens a new store on the same data."""

Backend = Callable[[Path], AbstractAsyncContextManager[StoreFactory]]


@asynccontextmanager
async def sqlite_backend(tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """A fresh SQLite file in the test's temporary directory."""
    yield partial(open_sqlite_store, tmp_path / "provd.db")


BACKENDS: dict[str, Backend] = {
    "sqlite": sqlite_backend,
}


@pytest.fixture(params=sorted(BACKENDS))
async def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """A factory of stores that all open the same, initially empty, database."""
    async with BACKENDS[request.param](tmp_path) as factory:
        yield factory


@pytest.fixture
async def store(open_store: StoreFactory) -> AsyncIterator[Store]:
    """One open store on an empty database, closed when the test ends."""
    async with open_store() as opened:
        yield opened

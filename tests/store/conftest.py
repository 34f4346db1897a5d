"""Store backends for the conformance suite in tests/store/.

Every test there is written against the `Store` protocol only and runs once per
backend listed in `BACKENDS`. A backend is an async context manager that prepares
one empty database (a temporary file, a scratch schema...) and yields a
`StoreFactory`: calling the factory opens a store on that same database, so a test
can close a store and reopen the data it wrote. Each store reads the time from the
test's `Clock`, so tests can state timestamps and time rules exactly. Adding a backend
means adding one entry here; the tests do not change.

PostgreSQL runs on a throwaway cluster that the session starts (tests/pg.py) only when
a postgres test is selected; each test gets a schema of its own. Where the server
cannot start (no binaries, no psycopg) its tests are skipped, saying why, except in CI
(CI=true), where they fail.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NoReturn

import pytest
import trio

from provd.store import Store
from provd.store.memory import MemoryDatabase, open_memory_store
from provd.store.sqlite import open_sqlite_store
from tests import pg

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


_clusters: list[pg.Cluster] = []  # the session's cluster, once `pg_cluster` started it


@asynccontextmanager
async def postgres_backend(tmp_path: Path, clock: Clock) -> AsyncIterator[StoreFactory]:
    """A fresh, empty schema on the session's cluster; the first store migrates it."""
    from provd.store.postgres import open_postgres_store

    (cluster,) = _clusters
    dsn = await trio.to_thread.run_sync(pg.create_schema, cluster)
    try:
        yield partial(open_postgres_store, dsn, now=clock, pool_size=2)
    finally:
        await trio.to_thread.run_sync(pg.drop_schema, cluster, dsn)


BACKENDS: dict[str, Backend] = {
    "memory": memory_backend,
    "postgres": postgres_backend,
    "sqlite": sqlite_backend,
}


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[pg.Cluster]:
    """The session's PostgreSQL cluster, with the database of the tests' schemas."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as error:
        _unavailable(f"psycopg is not installed ({error}): pip install -e '.[postgres]'")
    try:
        cluster = pg.start_cluster()
    except pg.ClusterUnavailable as error:
        _unavailable(str(error))
    try:
        pg.create_test_database(cluster)
        _clusters.append(cluster)
        yield cluster
    finally:
        _clusters.clear()
        pg.stop_cluster(cluster)


def _unavailable(why: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required in CI: {why}", pytrace=False)
    pytest.skip(f"no PostgreSQL: {why}")


@pytest.fixture
def clock() -> Clock:
    """The time every store of the test reads."""
    return Clock()


# PostgreSQL's tests start a server process, so the quick loop (-m "not slow") leaves
# them out; the README's test command and CI run them.
@pytest.fixture(
    params=[
        pytest.param(name, marks=pytest.mark.slow) if name == "postgres" else name
        for name in sorted(BACKENDS)
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend's name; the PostgreSQL cluster is started (once) only when needed,
    outside trio, so that a skip or failure says why."""
    name: str = request.param
    if name == "postgres":
        request.getfixturevalue("pg_cluster")
    return name


@pytest.fixture
async def open_store(backend: str, tmp_path: Path, clock: Clock) -> AsyncIterator[StoreFactory]:
    """A factory of stores that all open the same, initially empty, database."""
    async with BACKENDS[backend](tmp_path, clock) as factory:
        yield factory


@pytest.fixture
async def store(open_store: StoreFactory) -> AsyncIterator[Store]:
    """One open store on an empty database, closed when the test ends."""
    async with open_store() as opened:
        yield opened

"""A database migrated by the provd before the stream lease (SQLite migration
0003_daemon_stream_lease, PostgreSQL 0002_daemon_stream_lease) is brought up to date
when it is opened: its daemons are kept, each with no lease, and leases work."""

from __future__ import annotations

import sqlite3
from functools import partial
from typing import Any

import pytest
import trio

from provd.model import Daemon

from .conftest import Clock, StoreFactory
from .support import TAGS

DAEMON = Daemon("id-old", "org-a", "old", "", ("echo",), dict(TAGS))


def downgrade_sqlite(path: Any) -> None:
    """Undo the SQLite migration, as if the previous provd had left the file."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("ALTER TABLE daemons DROP COLUMN connected_until")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = '0003_daemon_stream_lease'")
    finally:
        conn.close()


def downgrade_postgres(dsn: str) -> None:
    """Undo the PostgreSQL migration, as if the previous provd had left the schema."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE daemons DROP COLUMN connected_until")
        conn.execute("DELETE FROM provd_migrations WHERE name = '0002_daemon_stream_lease'")


# The memory store has no schema: SQLite and PostgreSQL only.
@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.slow)], indirect=True
)
async def test_the_previous_schema_gains_the_lease(
    backend: str, open_store: StoreFactory, clock: Clock
) -> None:
    async with open_store() as store:
        await store.upsert_daemon(DAEMON)
        before = await store.list_daemons()
    # The factory is a partial of the backend's opener; its first argument names the
    # database (a SQLite path, a PostgreSQL DSN).
    assert isinstance(open_store, partial)
    where = open_store.args[0]
    downgrade = downgrade_sqlite if backend == "sqlite" else downgrade_postgres
    await trio.to_thread.run_sync(downgrade, where)
    async with open_store() as store:
        assert await store.list_daemons() == before
        (presence,) = await store.daemon_presence()
        assert presence.connected_until == 0
        await store.touch_daemons({}, connected_until={DAEMON.id: clock() + 15_000})
        (presence,) = await store.daemon_presence()
        assert presence.connected_until == clock() + 15_000

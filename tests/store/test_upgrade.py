"""A database migrated by an older provd is brought up to date when it is opened:
before the stream lease (SQLite migration 0003_daemon_stream_lease, PostgreSQL
0002_daemon_stream_lease) its daemons are kept, each with no lease, and leases work;
before daemon keys (SQLite 0004_daemon_keys, PostgreSQL 0003_daemon_keys) its daemons
are kept, and keys and their daemons work; before log chunks (SQLite 0007_log_chunks,
PostgreSQL 0006_log_chunks) its log lines are kept, ids and all."""

from __future__ import annotations

import sqlite3
from functools import partial
from typing import Any

import pytest
import trio

from provd.model import Daemon, DaemonKey

from .conftest import Clock, StoreFactory
from .support import TAGS, log, make_running, update_logs

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


def downgrade_sqlite_keys(path: Any) -> None:
    """Undo SQLite migration 0004_daemon_keys: no keys table, no key_id, and the old
    UNIQUE (organization, name, owner) on the daemons."""
    conn = sqlite3.connect(path, isolation_level=None)
    columns = (
        "id, organization, name, owner, provisioners, tags, version, api_version,"
        " created_at, last_seen_at, connected_until"
    )
    try:
        conn.execute("BEGIN")
        conn.execute("DROP TABLE keys")
        conn.execute(
            "CREATE TABLE old_daemons (id TEXT PRIMARY KEY, organization TEXT NOT NULL,"
            " name TEXT NOT NULL, owner TEXT NOT NULL DEFAULT '', provisioners TEXT NOT NULL,"
            " tags TEXT NOT NULL, version TEXT NOT NULL DEFAULT '',"
            " api_version TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL,"
            " last_seen_at INTEGER NOT NULL, connected_until INTEGER NOT NULL DEFAULT 0,"
            " UNIQUE (organization, name, owner))"
        )
        conn.execute(f"INSERT INTO old_daemons ({columns}) SELECT {columns} FROM daemons")
        conn.execute("DROP TABLE daemons")
        conn.execute("ALTER TABLE old_daemons RENAME TO daemons")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = '0004_daemon_keys'")
        conn.execute("COMMIT")
    finally:
        conn.close()


def downgrade_postgres_keys(dsn: str) -> None:
    """Undo PostgreSQL migration 0003_daemon_keys."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute("DROP TABLE keys")
        conn.execute("ALTER TABLE daemons DROP COLUMN key_id")  # drops its constraint too
        conn.execute(
            "ALTER TABLE daemons ADD CONSTRAINT daemons_organization_name_owner_key"
            " UNIQUE (organization, name, owner)"
        )
        conn.execute("DELETE FROM provd_migrations WHERE name = '0003_daemon_keys'")


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.slow)], indirect=True
)
async def test_the_previous_schema_gains_daemon_keys(
    backend: str, open_store: StoreFactory, clock: Clock
) -> None:
    """Its daemons are kept (on the pre-shared key, with their leases), and keys and
    a key's daemon of the same name as one of them work."""
    async with open_store() as store:
        await store.upsert_daemon(DAEMON)
        await store.touch_daemons({}, connected_until={DAEMON.id: clock() + 15_000})
        before = await store.daemon_presence()
    assert isinstance(open_store, partial)
    downgrade = downgrade_sqlite_keys if backend == "sqlite" else downgrade_postgres_keys
    await trio.to_thread.run_sync(downgrade, open_store.args[0])
    async with open_store() as store:
        assert await store.daemon_presence() == before
        assert await store.list_keys() == []
        key = DaemonKey("k1", "ci", "org-a", "", (), dict(TAGS), "ab" * 32, clock())
        await store.create_key(key)
        assert await store.get_key("k1") == key
        on_key = Daemon("id-k1-old", "org-a", "old", "", ("echo",), dict(TAGS), key_id="k1")
        await store.upsert_daemon(on_key)
        assert [p.record.daemon for p in await store.daemon_presence()] == [DAEMON, on_key]


def downgrade_sqlite_logs(path: Any) -> None:
    """Undo SQLite migration 0007_log_chunks: one job_logs row per line."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        conn.execute(
            "CREATE TABLE job_logs (id INTEGER PRIMARY KEY, job_id TEXT NOT NULL"
            " REFERENCES jobs(id), created_at INTEGER NOT NULL, source INTEGER NOT NULL,"
            " level INTEGER NOT NULL, stage TEXT NOT NULL, output TEXT NOT NULL)"
        )
        conn.execute(
            "INSERT INTO job_logs SELECT c.first_id + r.key, c.job_id,"
            " r.value ->> 0, r.value ->> 1, r.value ->> 2, r.value ->> 3, r.value ->> 4"
            " FROM log_chunks AS c, json_each(c.lines) AS r"
        )
        conn.execute("DROP TABLE log_chunks")
        conn.execute("CREATE INDEX job_logs_job ON job_logs (job_id, id)")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = '0007_log_chunks'")
        conn.execute("COMMIT")
    finally:
        conn.close()


def downgrade_postgres_logs(dsn: str) -> None:
    """Undo PostgreSQL migration 0006_log_chunks."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute(
            "CREATE TABLE job_logs (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
            " job_id TEXT NOT NULL REFERENCES jobs(id), created_at BIGINT NOT NULL,"
            " source INTEGER NOT NULL, level INTEGER NOT NULL, stage TEXT NOT NULL,"
            " output TEXT NOT NULL)"
        )
        conn.execute(
            "INSERT INTO job_logs (id, job_id, created_at, source, level, stage, output)"
            " OVERRIDING SYSTEM VALUE SELECT c.first_id + r.n - 1, c.job_id,"
            " (r.v ->> 0)::bigint, (r.v ->> 1)::int, (r.v ->> 2)::int, r.v ->> 3, r.v ->> 4"
            " FROM log_chunks AS c, jsonb_array_elements(c.lines::jsonb) WITH ORDINALITY"
            " AS r(v, n)"
        )
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('job_logs', 'id'),"
            " (SELECT max(id) FROM job_logs))"
        )
        conn.execute("DROP TABLE log_chunks")
        conn.execute("CREATE INDEX job_logs_job ON job_logs (job_id, id)")
        conn.execute("DELETE FROM provd_migrations WHERE name = '0006_log_chunks'")


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.slow)], indirect=True
)
async def test_the_previous_schema_gains_log_chunks(backend: str, open_store: StoreFactory) -> None:
    """Lines stored one per row, two jobs' interleaved, are read back the same (ids,
    text, order) after the migration to chunks; `after` works on them, and new lines
    get later ids."""
    texts = ['say "hi"', "back\\slash", "日本語 🚀", "tab\there"]
    async with open_store() as store:
        a = await make_running(store, "da")
        b = await make_running(store, "db")
        for text in texts:
            await update_logs(store, a, [log(f"a {text}")])
            await update_logs(store, b, [log(f"b {text}")])
        before = {job.id: await store.read_logs(job.id) for job in (a, b)}
    assert isinstance(open_store, partial)
    downgrade = downgrade_sqlite_logs if backend == "sqlite" else downgrade_postgres_logs
    await trio.to_thread.run_sync(downgrade, open_store.args[0])
    async with open_store() as store:
        assert {job.id: await store.read_logs(job.id) for job in (a, b)} == before
        assert await store.read_logs(a.id, after=before[a.id][1].id, limit=1) == [before[a.id][2]]
        await update_logs(store, a, [log("new")])
        (new,) = await store.read_logs(a.id, after=before[a.id][-1].id)
        assert new.output == "new" and new.id > max(
            line.id for lines in before.values() for line in lines
        )

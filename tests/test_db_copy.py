"""`provd db copy SRC DST`: a SQLite database built through the store's own API is
copied into an empty schema of the throwaway PostgreSQL cluster (tests/pg.py), and
everything is read back through the PostgreSQL store: jobs equal, log lines with their
ids, files, daemons, daemon keys (a key made on SQLite authenticates on PostgreSQL),
allowances; new rows after the copy get higher ids; a destination
with data is refused; the password is never printed.

Without PostgreSQL these tests are skipped saying why, except in CI (CI=true)."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import trio

from provd.key_revocations import KeyRevocations
from provd.keys import DaemonKeys
from provd.model import Allowance, Daemon, JobUpdate, LogLevel, LogSource
from provd.store import Store
from provd.store.copy import TABLES, CopyRefused, copy_sqlite_to_postgres
from provd.store.postgres import open_postgres_store
from provd.store.sqlite import open_sqlite_store
from tests import pg
from tests.pg import PASSWORD, PASSWORD_ROLE, password_schema
from tests.store.support import (
    ORG,
    TAGS,
    all_jobs,
    claim,
    committed_build,
    log,
    make_job,
    make_running,
    new_job,
    queue_of,
    update_logs,
    workspace,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[pg.Cluster]:
    yield from pg.cluster_for_fixture()


def _url(cluster: pg.Cluster, schema: str, user: str = pg.ROLE, password: str = "") -> str:
    host = quote(str(cluster.socket_dir), safe="")
    options = quote(f"-c search_path={schema}", safe="")
    auth = f"{user}:{password}" if password else user
    return f"postgresql://{auth}@/{pg.DATABASE}?host={host}&options={options}"


@pytest.fixture
async def pg_url(pg_cluster: pg.Cluster) -> AsyncIterator[str]:
    """A postgresql:// URL on an empty schema of its own."""
    dsn = await trio.to_thread.run_sync(pg.create_schema, pg_cluster)
    schema = dsn.rsplit("search_path=", 1)[1].rstrip("'")
    try:
        yield _url(pg_cluster, schema)
    finally:
        await trio.to_thread.run_sync(pg.drop_schema, pg_cluster, dsn)


DAEMON = Daemon("d-1", ORG, "laptop", "", ("echo",), dict(TAGS), "2.0", "1.1")


async def _populate(store: Store) -> None:
    """Files, jobs in every state (with logs), daemons and allowances."""
    await store.put_file(b"\x00second archive\xff" * 100, "application/zip")
    await make_job(store, logs=[log("queued")], input=b"\x00secret\xffinput", priority=3)
    running = await make_running(store, "d1")
    await update_logs(store, running, [log(f"line {i}") for i in range(5)])
    await store.update_job(
        running.id, "d1", JobUpdate(readme=b"# readme", template_variables=b"\x01vars")
    )
    done = await make_running(store, "d2")
    await update_logs(
        store, done, [log("applying", source=LogSource.PROVISIONER, level=LogLevel.ERROR)]
    )
    await store.complete_job(done.id, "d2", b"\x00result")
    failed = await make_running(store, "d1")
    await store.fail_job(failed.id, "d1", "boom", "E_BOOM", logs=[log("failing")])
    pending_canceled = await make_job(store)
    await store.cancel_job(pending_canceled.id, [log("canceled")])
    canceling = await make_running(store, "d3")
    await store.cancel_job(canceling.id, [log("canceling")])
    await committed_build(store, workspace("ws-9", "owner-9", owner_groups=("devs",)), 4)
    await store.upsert_daemon(DAEMON)
    await store.upsert_daemon(Daemon("d-2", ORG, "server", "u-1", ("echo", "tf"), {"a": "b"}))
    await store.upsert_daemon(
        Daemon("d-3", ORG, "laptop", "", ("echo",), dict(TAGS), "2.0", "1.1", key_id="k-1")
    )
    await store.set_allowance(Allowance(ORG, "user", "owner-9", 10))
    await store.set_allowance(Allowance(ORG, "group", "devs", 100))


async def _snapshot(store: Store) -> dict[str, object]:
    jobs = sorted(await all_jobs(store), key=lambda job: job.seq)
    return {
        "jobs": jobs,
        "logs": {job.id: await store.read_logs(job.id) for job in jobs},
        "files": {
            job.file_hash: (
                await store.get_file_info(job.file_hash),
                await store.get_file_data(job.file_hash),
            )
            for job in jobs
        },
        "daemons": sorted(
            [(r.daemon, r.created_at, r.last_seen_at) for r in await store.list_daemons()],
            key=lambda item: item[0].id,
        ),
        "allowances": sorted(await store.list_allowances(ORG), key=repr),
        "keys": await store.list_keys(),
        "queues": sorted(await store.pending_queues(), key=repr),
    }


def _keys(store: Store) -> DaemonKeys:
    return DaemonKeys(store, KeyRevocations(), announce_revoked=lambda key_id: None)


async def test_copy_keeps_everything_and_new_ids_come_after(tmp_path: Path, pg_url: str) -> None:
    source = tmp_path / "provd.db"
    async with open_sqlite_store(source) as sqlite_store:
        await _populate(sqlite_store)
        keys = _keys(sqlite_store)
        used, secret = await keys.create("ci", ORG, owner="u-1", provisioners=["echo"])
        await keys.create("other", "org-b", tags={"os": "linux"})
        await keys.authenticate(secret)
        await sqlite_store.touch_keys({used.id: 1_800_000_000_000})
        second = await sqlite_store.put_file(b"\x00second archive\xff" * 100, "application/zip")
        before = await _snapshot(sqlite_store)
        second_file = (
            await sqlite_store.get_file_info(second.hash),
            await sqlite_store.get_file_data(second.hash),
        )
    # Through the command, as an operator runs it.
    result = await trio.run_process(
        [sys.executable, "-m", "provd", "db", "copy", str(source), pg_url],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    stdout = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()
    for table in TABLES:
        assert table in stdout

    async with open_postgres_store(pg_url) as pg_store:
        after = await _snapshot(pg_store)
        assert after == before
        assert len(after["keys"]) == 2  # type: ignore[arg-type]
        assert await _keys(pg_store).authenticate(secret) == await pg_store.get_key(used.id)
        assert len(after["jobs"]) == 7  # type: ignore[arg-type]
        assert sum(len(lines) for lines in after["logs"].values()) >= 10  # type: ignore[attr-defined]
        assert (
            await pg_store.get_file_info(second.hash),
            await pg_store.get_file_data(second.hash),
        ) == second_file
        # The sequences continue after the copied rows.
        jobs = after["jobs"]
        max_seq = max(job.seq for job in jobs)  # type: ignore[attr-defined]
        max_log = max(line.id for lines in after["logs"].values() for line in lines)  # type: ignore[attr-defined]
        stored = await pg_store.put_file(b"new archive", "application/x-tar")
        job = await pg_store.create_job(new_job(stored.hash), [log("new")])
        assert job.seq > max_seq
        assert (await pg_store.read_logs(job.id))[0].id > max_log
        # The pending job from SQLite is claimed first (priority 3), then the new one.
        pending = [j for j in jobs if j.status.name == "PENDING"]  # type: ignore[attr-defined]
        assert len(pending) == 1
        claimed = await claim(pg_store, [queue_of(job)], "d9")
        assert claimed.id == pending[0].id
        claimed = await claim(pg_store, [queue_of(job)], "d9")
        assert claimed.id == job.id
        await pg_store.complete_job(job.id, "d9", b"ok")

    # Copying again into a destination that now holds data is refused: exit 2.
    again = await trio.run_process(
        [sys.executable, "-m", "provd", "db", "copy", str(source), pg_url],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    stderr = again.stderr.decode()
    assert again.returncode == 2, stderr
    assert "already holds provd data" in stderr
    assert stderr.count("\n") == 2  # "copying …" and the error


async def test_a_destination_with_data_is_refused_and_untouched(
    tmp_path: Path, pg_url: str
) -> None:
    source = tmp_path / "provd.db"
    async with open_sqlite_store(source) as sqlite_store:
        await make_job(sqlite_store)
    async with open_postgres_store(pg_url) as pg_store:
        await pg_store.set_allowance(Allowance(ORG, "user", "u", 1))
    with pytest.raises(CopyRefused, match="quota_allowances"):
        await copy_sqlite_to_postgres(source, pg_url)
    async with open_postgres_store(pg_url) as pg_store:
        assert await all_jobs(pg_store) == []
        assert await pg_store.list_allowances(ORG) == [Allowance(ORG, "user", "u", 1)]


async def test_an_empty_database_copies(tmp_path: Path, pg_url: str) -> None:
    source = tmp_path / "provd.db"
    async with open_sqlite_store(source):
        pass
    counts = await copy_sqlite_to_postgres(source, pg_url)
    assert [(c.table, c.source, c.destination) for c in counts] == [(t, 0, 0) for t in TABLES]
    async with open_postgres_store(pg_url) as pg_store:
        job = await make_job(pg_store)
        assert job.seq == 1


async def test_the_password_is_never_printed(tmp_path: Path, pg_cluster: pg.Cluster) -> None:
    source = tmp_path / "provd.db"
    async with open_sqlite_store(source) as sqlite_store:
        await make_job(sqlite_store)
    schema = await trio.to_thread.run_sync(password_schema, pg_cluster)
    for password, status in ((PASSWORD, 0), ("not-" + PASSWORD, 2)):
        url = _url(pg_cluster, schema, PASSWORD_ROLE, password)
        result = await trio.run_process(
            [sys.executable, "-m", "provd", "db", "copy", str(source), url],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        output = result.stdout.decode() + result.stderr.decode()
        assert result.returncode == status, output
        assert f"postgresql://{PASSWORD_ROLE}:***@/" in output
        assert PASSWORD not in output
    assert "password authentication failed" in output


async def test_bad_usage(tmp_path: Path) -> None:
    """Not a PostgreSQL URL, or no such source file: exit 2, no traceback (no cluster)."""
    for args in (
        [str(tmp_path / "x.db"), "sqlite:///x.db"],
        [str(tmp_path / f"{uuid.uuid4().hex}.db"), "postgresql://u@/db?host=/nonexistent"],
    ):
        result = await trio.run_process(
            [sys.executable, "-m", "provd", "db", "copy", *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        stderr = result.stderr.decode()
        assert result.returncode == 2, stderr
        assert "Traceback" not in stderr
    assert not (tmp_path / "x.db").exists()

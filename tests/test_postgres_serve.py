"""provd serving PostgreSQL: two servers on one schema of the throwaway cluster
(tests/pg.py), their backup polls at an hour, so only a wake-up relayed by LISTEN/NOTIFY
can deliver in time; and the DSN's password kept out of what serve prints.

Without PostgreSQL these tests are skipped saying why, except in CI (CI=true), where
they fail (the rule of tests/store/conftest.py)."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import cast

import pytest
import trio

from provd.app import serve
from provd.config import ServerSettings
from provd.errors import StoreUnusable
from provd.wakeups import JobChanged, PostgresRelay, Wakeup, notify_directory, postgres_channel
from tests import pg
from tests.conftest import ServerFactory
from tests.daemon_clients import Follower, Jobs, TestDaemon, log, wait_until, waiting_on
from tests.pg import PASSWORD, PASSWORD_ROLE, password_schema, password_url
from tests.processes import START_SECONDS, provd_env, start_server

# Every test here runs a PostgreSQL server: out of the quick loop, in the full suite.
pytestmark = pytest.mark.slow

HOUR = 3600.0


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[pg.Cluster]:
    yield from pg.cluster_for_fixture()


@pytest.fixture
async def pg_dsn(pg_cluster: pg.Cluster) -> AsyncIterator[str]:
    """A DSN on an empty schema of its own."""
    dsn = await trio.to_thread.run_sync(pg.create_schema, pg_cluster)
    try:
        yield dsn
    finally:
        await trio.to_thread.run_sync(pg.drop_schema, pg_cluster, dsn)


@pytest.fixture
def slow_polls(pg_dsn: str) -> dict[str, object]:
    """Servers on `pg_dsn` whose own polls run once an hour."""
    return {
        "postgres_url": pg_dsn,
        "poll_interval_seconds": HOUR,
        "log_poll_interval_seconds": HOUR,
    }


def _ms(samples: Sequence[float], percentile: int) -> str:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return f"{cuts[percentile - 1] * 1000:.2f} ms"


def _listeners(cluster: pg.Cluster) -> int:
    import psycopg

    with psycopg.connect(cluster.dsn(pg.DATABASE), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN %'"
            " AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row else 0


# -- two servers on one database ------------------------------------------------------


async def test_a_job_created_on_a_reaches_a_daemon_waiting_on_b(
    make_server: ServerFactory, slow_polls: dict[str, object], nursery: trio.Nursery
) -> None:
    a = await make_server(**slow_polls)
    b = await make_server(**slow_polls)
    # Different files: no datagram relay could connect them.
    assert a.db_path != b.db_path
    daemon = TestDaemon(b, "on-b")
    jobs_a = Jobs(a)
    await jobs_a.file_hash()
    latencies: list[float] = []
    for _ in range(30):
        acquisition = await waiting_on(b, daemon, nursery)
        started = time.perf_counter()
        job = await jobs_a.create()
        acquired = await acquisition.wait(timeout=10)  # type: ignore[attr-defined]
        latencies.append(time.perf_counter() - started)
        assert acquired.job_id == job.id
    assert a.scheduler.statistics().polls == b.scheduler.statistics().polls == 0
    assert not notify_directory(a.db_path).exists()
    print(
        f"\nPostgreSQL: CreateJob on A -> acquired by a daemon on B, 30 jobs:"
        f" p50 {_ms(latencies, 50)}, p99 {_ms(latencies, 99)}"
    )


async def test_a_daemon_key_deleted_through_a_is_refused_on_b(
    make_server: ServerFactory, slow_polls: dict[str, object], nursery: trio.Nursery
) -> None:
    """Replicas: the key's daemon waits on B, the key is deleted through A; the relayed
    revocation ends the stream on B with `unauthenticated` (well before B's own 5 s
    re-check) and B refuses the daemon's next call."""
    from connectrpc.code import Code

    from tests.daemon_keys import Keys, refused, stream_error, waiting

    a = await make_server(**slow_polls)
    b = await make_server(**slow_polls)
    daemon = TestDaemon(b, "on-b", key=(await Keys(a).create("ci")).secret)
    stream = await waiting(b, daemon, nursery)
    with trio.fail_after(3):
        await Keys(a).delete("ci")
        error = await stream_error(stream)
    assert error.code == Code.UNAUTHENTICATED and "was deleted" in error.message
    await refused(Code.UNAUTHENTICATED, daemon.update("00000000-0000-4000-8000-000000000000"))


async def test_a_log_follower_on_a_sees_a_line_sent_through_b(
    make_server: ServerFactory, slow_polls: dict[str, object], nursery: trio.Nursery
) -> None:
    a = await make_server(**slow_polls)
    b = await make_server(**slow_polls)
    daemon = TestDaemon(b, "on-b")
    job = await Jobs(a).create()
    acquired = await (await daemon.acquire(nursery)).wait()
    assert acquired.job_id == job.id
    on_a = Follower(Jobs(a), job.id, nursery)
    await wait_until(lambda: "Queued" in on_a.stages())
    await daemon.update(job.id, logs=[log("hello from B")])
    await wait_until(lambda: "hello from B" in on_a.outputs())
    await daemon.fail(job.id)
    with trio.fail_after(10):
        await on_a.ended.wait()


# -- the relay alone ------------------------------------------------------------------


async def test_relay_latency_and_its_thread_and_connections_end_on_cancel(
    pg_cluster: pg.Cluster, pg_dsn: str
) -> None:
    received: list[Wakeup] = []
    arrived = trio.Event()

    def deliver(wakeups: Sequence[Wakeup]) -> None:
        received.extend(wakeups)
        arrived.set()

    sender, receiver = PostgresRelay(pg_dsn), PostgresRelay(pg_dsn)
    latencies: list[float] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(sender.run, deliver)  # hears nothing of its own
            await nursery.start(receiver.run, deliver)
            assert (
                sender.channel
                == receiver.channel
                == postgres_channel(pg_dsn.split("=")[-1].rstrip("'"))
            )
            for i in range(100):
                arrived = trio.Event()
                started = time.perf_counter()
                sender.send(JobChanged(f"job-{i}"))
                await arrived.wait()
                latencies.append(time.perf_counter() - started)
            assert await trio.to_thread.run_sync(_listeners, pg_cluster) == 2
            nursery.cancel_scope.cancel()
    assert received == [JobChanged(f"job-{i}") for i in range(100)]
    assert sender.statistics().messages_received == 0  # its own are skipped
    # Both LISTEN connections are closed (and their threads returned: run ended).
    assert await trio.to_thread.run_sync(_listeners, pg_cluster) == 0
    print(
        f"\nPostgresRelay A -> B, 100 wake-ups: p50 {_ms(latencies, 50)}, p99 {_ms(latencies, 99)}"
    )


# -- passwords ----------------------------------------------------------------------


async def test_a_wrong_password_fails_without_showing_it(pg_cluster: pg.Cluster) -> None:
    schema = await trio.to_thread.run_sync(password_schema, pg_cluster)
    url = password_url(pg_cluster, "postgresql", "not-" + PASSWORD, schema)
    with pytest.raises(StoreUnusable) as caught:
        await serve(ServerSettings(listen="127.0.0.1:0", postgres_url=url))
    assert "password authentication failed" in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert ServerSettings(postgres_url=url).database.count("***") == 1


@pytest.mark.slow
async def test_provd_serve_db_postgresql_url_never_prints_the_password(
    pg_cluster: pg.Cluster, tmp_path: Path, nursery: trio.Nursery
) -> None:
    schema = await trio.to_thread.run_sync(password_schema, pg_cluster)
    env = provd_env(XDG_DATA_HOME=str(tmp_path / "data"))
    # The right password: serves, and prints the URL without it.
    url = password_url(pg_cluster, "postgresql", PASSWORD, schema)
    server = await start_server(nursery, cast(Path, url), env=env)
    await Jobs(server).create()  # type: ignore[arg-type]
    server.signal(2)
    assert await server.wait() == 0
    output = server.output.decode()
    assert f"database: postgresql://{PASSWORD_ROLE}:***@/{pg.DATABASE}?host=" in output
    assert PASSWORD not in output
    # Credentials came from the environment: no data directory was made.
    assert not (tmp_path / "data").exists()

    # A wrong one (postgres://, through PROVD_DB): one line, exit 2, no password.
    wrong = password_url(pg_cluster, "postgres", "not-" + PASSWORD, schema)
    with trio.fail_after(START_SECONDS):
        result = await trio.run_process(
            [sys.executable, "-m", "provd", "serve", "--listen", "127.0.0.1:0"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env={**env, "PROVD_DB": wrong},
        )
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert (
        stderr.startswith("provd: cannot use the PostgreSQL database") and stderr.count("\n") == 1
    )
    assert "password authentication failed" in stderr
    assert PASSWORD not in stderr + result.stdout.decode()

"""The PostgreSQL store: psycopg 3 connections from a pool, used in trio worker threads.

Several provd replicas may share one database. Every call runs in its own
transaction on a pooled connection in a worker thread (psycopg's async API does not
run under trio), at most as many at once as the pool has connections. A claim is one
`UPDATE … WHERE seq = (SELECT … FOR UPDATE SKIP LOCKED)`, so replicas claiming at once
take different jobs; each holder check locks the job's row in the transaction that
then changes it. The SQL lives in `_pg_sql` (and `_pg_keys` for daemon keys), the
schema's migrations in `_pg_schema`.

Like SQLite's writes, a call runs to its end even if its caller is cancelled (it is
shielded, and the worker thread is never abandoned), so the caller learns its outcome.
Timestamps come from `now`, never from the database's clock.

Errors: the `Store` protocol's, plus `StoreUnreachable` (a `StoreClosed`: clients get
`unavailable`) when the database cannot be reached; a server that ran out of disk
raises `StoreFull`. No message provd raises contains the DSN's password.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import psycopg
import trio
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from provd.errors import InvalidArgument, ProvdError, StoreClosed, StoreFull, StoreUnusable
from provd.model import (
    Allowance,
    Daemon,
    DaemonKey,
    DaemonRecord,
    Job,
    JobPage,
    JobQuery,
    JobStatus,
    JobType,
    JobUpdate,
    LogLine,
    NewJob,
    NewLogLine,
    PendingSummary,
    Queue,
    QueuePosition,
    QuotaDecision,
    StoredFile,
    now_ms,
)
from provd.store import DaemonPresence, JobHistory, Purged, Store
from provd.store import _pg_keys as keys_sql
from provd.store import _pg_sql as sql
from provd.store._pg_schema import migrate

if TYPE_CHECKING:
    from provd.wakeups import Relay, RelayProvider

__all__ = ["PostgresStore", "StoreUnreachable", "open_postgres_store", "redact"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Conn = psycopg.Connection[DictRow]

POOL_SIZE = 8
CONNECT_TIMEOUT_SECONDS = 10
# How long a call waits for a pooled connection before it gives up (the database is
# down, or every connection is stuck).
POOL_WAIT_SECONDS = 30.0


class StoreUnreachable(StoreClosed):
    """The database could not be reached (refused, lost, timed out). Nothing of the
    call is known to be stored unless it committed; the next call tries again."""


# -- keeping passwords out of messages -------------------------------------------------

_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def _password_of(dsn: str) -> str | None:
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.Error:
        return None
    return None if password is None else str(password)


def redact(text: str, dsn: str = "") -> str:
    """`text` without the password of `dsn` or any password written in a DSN."""
    password = _password_of(dsn) if dsn else None
    if password:
        text = text.replace(password, "***")
    text = _URL_PASSWORD.sub(r"\1***@", text)
    return _KEYWORD_PASSWORD.sub(r"\1***", text)


def describe(dsn: str) -> str:
    """Where `dsn` points, for messages: host, port, database and user, no password."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "(a connection string that is not valid)"
    parts = [
        f"{key}={params[key]}" for key in ("host", "port", "dbname", "user") if params.get(key)
    ]
    return " ".join(parts) or "(the libpq defaults)"


def _diagnostic(error: psycopg.Error, dsn: str) -> str:
    text = str(error).strip().splitlines()
    return redact(text[0] if text else type(error).__name__, dsn)


def translate(error: BaseException, dsn: str) -> BaseException:
    """`error`, raised by psycopg or the pool during a call, as a caller of the store
    should see it. Never chain the original: its text may show the connection string."""
    if isinstance(error, PoolClosed):
        return StoreClosed("the store is shutting down")
    if isinstance(error, PoolTimeout):
        return StoreUnreachable(
            f"the PostgreSQL database at {describe(dsn)} did not give provd a connection"
            f" within {POOL_WAIT_SECONDS:g} s: check that it is up and reachable"
        )
    if isinstance(error, pg_errors.DiskFull):
        return StoreFull(
            "the PostgreSQL server's disk is full: free space there; provd takes writes again"
            " as soon as there is room"
        )
    if isinstance(error, psycopg.DataError) and "NUL" in str(error):
        # psycopg refuses to send it: PostgreSQL text cannot hold NUL.
        return InvalidArgument("text sent to provd on PostgreSQL cannot contain NUL (0x00)")
    if isinstance(error, pg_errors.UniqueViolation | pg_errors.CheckViolation):
        return ValueError(_diagnostic(error, dsn))
    if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
        return StoreUnreachable(
            f"lost the PostgreSQL database at {describe(dsn)}: {_diagnostic(error, dsn)}"
        )
    if isinstance(error, psycopg.Error):
        return ProvdError(f"PostgreSQL error: {_diagnostic(error, dsn)}")
    return error


# -- the store ----------------------------------------------------------------------


class PostgresStore:
    """The `Store` on a PostgreSQL database. Open it with `open_postgres_store`."""

    def __init__(
        self,
        pool: ConnectionPool[Conn],
        dsn: str,
        *,
        now: Callable[[], int] = now_ms,
        pool_size: int = POOL_SIZE,
    ) -> None:
        self._pool = pool
        self._dsn = dsn
        self._now = now
        self._limiter = trio.CapacityLimiter(pool_size)
        self._closed = False

    async def _run(self, fn: Callable[[Conn], T]) -> T:
        """Run `fn` in one transaction on a pooled connection in a worker thread."""
        if self._closed:
            raise StoreClosed("the store is shutting down")
        # Shielded, waiting for a connection included: a call that was asked for
        # happens, and its caller learns the outcome (a claimed job is never lost).
        with trio.CancelScope(shield=True):
            result = await trio.to_thread.run_sync(self._in_transaction, fn, limiter=self._limiter)
        return result

    def _in_transaction(self, fn: Callable[[Conn], T]) -> T:
        try:
            with self._pool.connection(timeout=POOL_WAIT_SECONDS) as conn, conn.transaction():
                return fn(conn)
        except (psycopg.Error, PoolTimeout, PoolClosed) as error:
            raise translate(error, self._dsn) from None

    def wakeup_relay(self) -> Relay:
        """The relay that carries wake-ups between the processes serving this database:
        LISTEN/NOTIFY on connections of its own (`provd.wakeups.PostgresRelay`)."""
        from provd.wakeups import PostgresRelay

        return PostgresRelay(self._dsn)

    async def aclose(self) -> None:
        """Refuse new calls, let running ones finish, close the connections."""
        self._closed = True
        await trio.to_thread.run_sync(self._pool.close)

    # -- files ---------------------------------------------------------------

    async def put_file(self, data: bytes, mimetype: str) -> StoredFile:
        now = self._now()
        file_hash = await trio.to_thread.run_sync(lambda: hashlib.sha256(data).hexdigest())
        return await self._run(
            partial(sql.put_file, file_hash=file_hash, data=bytes(data), mimetype=mimetype, now=now)
        )

    async def get_file_info(self, file_hash: str) -> StoredFile | None:
        return await self._run(partial(sql.file_info, file_hash=file_hash))

    async def get_file_data(self, file_hash: str) -> bytes | None:
        return await self._run(partial(sql.file_data, file_hash=file_hash))

    # -- jobs ----------------------------------------------------------------

    async def create_job(self, job: NewJob, logs: Sequence[NewLogLine] = ()) -> Job:
        return await self._run(partial(sql.create_job, job=job, logs=logs, now=self._now()))

    async def create_job_in_line(
        self, job: NewJob, logs: Sequence[NewLogLine] = ()
    ) -> tuple[Job, QueuePosition]:
        # Two transactions, as before: the place is read in its own REPEATABLE READ
        # snapshot (sql.queue_positions), which a write transaction cannot switch to.
        created = await self.create_job(job, logs)
        (position,) = await self.queue_positions([created])
        return created, position

    async def create_and_claim_job(
        self, job: NewJob, logs: Sequence[NewLogLine], daemon_id: str
    ) -> tuple[Job, Job]:
        return await self._run(
            partial(
                sql.create_and_claim_job,
                job=job,
                logs=logs,
                daemon_id=daemon_id,
                now=self._now(),
            )
        )

    async def get_job(self, job_id: str) -> Job | None:
        return await self._run(partial(sql.select_job, job_id=job_id))

    async def list_jobs(self, query: JobQuery) -> JobPage:
        if query.limit < 1:
            raise ValueError(f"JobQuery.limit must be at least 1, got {query.limit}")
        return await self._run(partial(sql.list_jobs, query=query))

    async def cancel_job(self, job_id: str, logs: Sequence[NewLogLine] = ()) -> Job:
        return await self._run(partial(sql.cancel_job, job_id=job_id, logs=logs, now=self._now()))

    async def claim_job(self, queues: Sequence[Queue], daemon_id: str) -> Job | None:
        if not queues:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return None
        return await self._run(
            partial(sql.claim_job, queues=list(queues), daemon_id=daemon_id, now=self._now())
        )

    async def pending_queues(self) -> list[Queue]:
        return await self._run(sql.pending_queues)

    async def queue_position(self, job: Job) -> QueuePosition:
        (position,) = await self.queue_positions([job])
        return position

    async def queue_positions(self, jobs: Sequence[Job]) -> list[QueuePosition]:
        if all(job.status is not JobStatus.PENDING for job in jobs):
            await trio.lowlevel.cancel_shielded_checkpoint()
            return [QueuePosition(0, 0)] * len(jobs)
        return await self._run(partial(sql.queue_positions, jobs=list(jobs)))

    async def pending_summary(self) -> list[PendingSummary]:
        return await self._run(sql.pending_summary)

    async def job_history(
        self, window_ms: int, bucket_ms: int, organization: str = ""
    ) -> JobHistory:
        return await self._run(
            partial(
                sql.job_history,
                window_ms=window_ms,
                bucket_ms=bucket_ms,
                organization=organization,
                now=self._now(),
            )
        )

    async def purge_expired(self, completed_before: int, files_before: int, limit: int) -> Purged:
        return await self._run(
            partial(
                sql.purge_expired,
                completed_before=completed_before,
                files_before=files_before,
                limit=limit,
            )
        )

    async def read_logs(self, job_id: str, after: int = 0, limit: int = 1000) -> list[LogLine]:
        return await self._run(partial(sql.read_logs, job_id=job_id, after=after, limit=limit))

    # -- the daemon protocol -------------------------------------------------

    async def release_job(
        self, job_id: str, daemon_id: str, logs: Sequence[NewLogLine] = ()
    ) -> Job | None:
        return await self._run(
            partial(sql.release_job, job_id=job_id, daemon_id=daemon_id, logs=logs, now=self._now())
        )

    async def update_job(self, job_id: str, daemon_id: str, update: JobUpdate) -> Job:
        return await self._run(
            partial(
                sql.update_job, job_id=job_id, daemon_id=daemon_id, update=update, now=self._now()
            )
        )

    async def complete_job(
        self, job_id: str, daemon_id: str, result: bytes, job_type: JobType | None = None
    ) -> Job:
        return await self._run(
            partial(
                sql.complete_job,
                job_id=job_id,
                daemon_id=daemon_id,
                result=result,
                job_type=job_type,
                now=self._now(),
            )
        )

    async def fail_job(
        self,
        job_id: str,
        daemon_id: str,
        error: str,
        error_code: str = "",
        result: bytes | None = None,
        logs: Sequence[NewLogLine] = (),
    ) -> Job:
        return await self._run(
            partial(
                sql.fail_job,
                job_id=job_id,
                daemon_id=daemon_id,
                error=error,
                error_code=error_code,
                result=result,
                logs=logs,
                now=self._now(),
            )
        )

    async def fail_hung_jobs(
        self, updated_before: int, error: str, error_code: str, logs: Sequence[NewLogLine] = ()
    ) -> list[Job]:
        return await self._run(
            partial(
                sql.fail_hung_jobs,
                updated_before=updated_before,
                error=error,
                error_code=error_code,
                logs=logs,
                now=self._now(),
            )
        )

    async def fail_pending_jobs(
        self,
        queue: Queue,
        created_before: int,
        error: str,
        error_code: str,
        logs: Sequence[NewLogLine] = (),
    ) -> list[Job]:
        return await self._run(
            partial(
                sql.fail_pending_jobs,
                queue=queue,
                created_before=created_before,
                error=error,
                error_code=error_code,
                logs=logs,
                now=self._now(),
            )
        )

    async def running_jobs_by_daemon(self) -> dict[str, str]:
        return await self._run(sql.running_jobs_by_daemon)

    # -- daemons -------------------------------------------------------------

    async def upsert_daemon(self, daemon: Daemon) -> None:
        await self._run(partial(sql.upsert_daemon, daemon=daemon, now=self._now()))

    async def touch_daemons(
        self, last_seen: Mapping[str, int], connected_until: Mapping[str, int] | None = None
    ) -> None:
        if not last_seen and not connected_until:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        await self._run(
            partial(
                sql.touch_daemons,
                last_seen=dict(last_seen),
                connected_until=dict(connected_until or {}),
            )
        )

    async def list_daemons(self) -> list[DaemonRecord]:
        return await self._run(sql.list_daemons)

    async def daemon_presence(self) -> list[DaemonPresence]:
        return await self._run(sql.daemon_presence)

    # -- daemon keys ---------------------------------------------------------

    async def create_key(self, key: DaemonKey) -> None:
        await self._run(partial(keys_sql.create_key, key=key))

    async def get_key(self, key_id: str) -> DaemonKey | None:
        return await self._run(partial(keys_sql.get_key, key_id=key_id))

    async def list_keys(self) -> list[DaemonKey]:
        return await self._run(keys_sql.list_keys)

    async def delete_key(self, name: str) -> DaemonKey | None:
        return await self._run(partial(keys_sql.delete_key, name=name))

    async def touch_keys(self, last_used: Mapping[str, int]) -> None:
        if not last_used:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        await self._run(partial(keys_sql.touch_keys, last_used=dict(last_used)))

    # -- quota ---------------------------------------------------------------

    async def set_allowance(self, allowance: Allowance) -> None:
        await self._run(partial(sql.set_allowance, allowance=allowance))

    async def delete_allowance(self, organization: str, kind: str, subject: str) -> bool:
        return await self._run(
            partial(sql.delete_allowance, organization=organization, kind=kind, subject=subject)
        )

    async def list_allowances(self, organization: str) -> list[Allowance]:
        return await self._run(partial(sql.list_allowances, organization=organization))

    async def quota_usage(
        self, organization: str, user_id: str, groups: Sequence[str]
    ) -> tuple[int, int]:
        return await self._run(
            partial(
                sql.quota_usage, organization=organization, user_id=user_id, groups=list(groups)
            )
        )

    async def commit_quota(self, job_id: str, daemon_id: str, daily_cost: int) -> QuotaDecision:
        return await self._run(
            partial(sql.commit_quota, job_id=job_id, daemon_id=daemon_id, daily_cost=daily_cost)
        )


# -- opening ----------------------------------------------------------------------


def _prepare(dsn: str, now: int) -> None:
    """Connect once and bring the schema up to date; `StoreUnusable` if that fails."""
    where = describe(dsn)
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS) as conn:
            applied = migrate(conn, now, where)
    except psycopg.Error as error:
        raise StoreUnusable(
            f"cannot use the PostgreSQL database at {where}: {_diagnostic(error, dsn)};"
            " check the connection string (--db), the server and the role's rights"
        ) from None
    if applied:
        logger.info("migrated the PostgreSQL database at %s: %s", where, ", ".join(applied))


def _open_pool(dsn: str, size: int) -> ConnectionPool[Conn]:
    pool: ConnectionPool[Conn] = ConnectionPool(
        dsn,
        connection_class=psycopg.Connection[DictRow],
        kwargs={"autocommit": True, "row_factory": dict_row},
        min_size=size,
        max_size=size,
        open=False,
        check=ConnectionPool.check_connection,
        name="provd",
    )
    try:
        pool.open(wait=True, timeout=CONNECT_TIMEOUT_SECONDS)
    except PoolTimeout:
        pool.close()
        raise StoreUnusable(
            f"cannot open {size} connections to the PostgreSQL database at {describe(dsn)}"
            f" within {CONNECT_TIMEOUT_SECONDS} s: check the server's max_connections"
        ) from None
    return pool


@asynccontextmanager
async def open_postgres_store(
    dsn: str,
    *,
    now: Callable[[], int] = now_ms,
    pool_size: int = POOL_SIZE,
) -> AsyncIterator[PostgresStore]:
    """Open a store on the PostgreSQL database `dsn` (a libpq connection string or
    URL), applying provd's migrations first. Leaving the context lets running calls
    finish, then closes the pool; later calls raise `StoreClosed`.

    Raises `StoreUnusable` (its message free of the password) if the database cannot
    be reached or used as it is.
    """
    await trio.to_thread.run_sync(_prepare, dsn, now())
    pool = await trio.to_thread.run_sync(_open_pool, dsn, pool_size)
    store = PostgresStore(pool, dsn, now=now, pool_size=pool_size)
    try:
        yield store
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()


if TYPE_CHECKING:  # mypy checks that PostgresStore implements the whole protocol
    _conforms: type[Store] = PostgresStore
    _relays: type[RelayProvider] = PostgresStore

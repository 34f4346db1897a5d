"""Copy a SQLite database into PostgreSQL (`provd db copy`): a team that started with
a file on a laptop moves to a server without losing its history.

Both schemas are provd's own: the source is opened once with `open_sqlite_store`
(which migrates an older file to the current schema), the destination with
`open_postgres_store` (which creates or migrates its schema). Then the rows are read
from the source on a read-only connection in one read transaction (a consistent
snapshot) and written with COPY in one PostgreSQL transaction, table by table in
batches: files, jobs (every column, `seq` included), log_chunks (ids kept, so their
order is), queues, the queue-position counters (queue_levels, queue_marks), daemons,
keys (their hashes: every key keeps working), quota_allowances. The sequences of
`jobs.seq` and of the log chunks' ids are then set past the copied rows, so new rows
get higher ids. Before committing, each table's rows are counted on both sides; any
difference rolls the whole copy back. A destination that already holds rows is
refused: nothing is merged.

Values are copied as they are stored (job inputs and results byte for byte), except
SQLite's 0/1 booleans, which become PostgreSQL booleans.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import trio
from psycopg import sql

from provd.errors import ProvdError
from provd.store.postgres import describe, open_postgres_store, redact
from provd.store.sqlite import open_sqlite_store

# In copy order: a table comes after the ones it references.
TABLES = (
    "files",
    "jobs",
    "log_chunks",
    "queues",
    "queue_levels",
    "queue_marks",
    "daemons",
    "keys",
    "quota_allowances",
)
# The key each table is read in, so ids keep their order.
ORDER_BY = {
    "files": "hash",
    "jobs": "seq",
    "log_chunks": "first_id",
    "queues": "organization, provisioner, tags",
    "queue_levels": "organization, provisioner, tags, priority",
    "queue_marks": "organization, provisioner, tags, priority, ordinal",
    "daemons": "id",
    "keys": "id",
    "quota_allowances": "organization, subject_kind, subject",
}
# Sequences that must continue after the copied rows: (table, the column its values
# must pass, the sequence; None for the column's own identity sequence).
SEQUENCES = (("jobs", "seq", None), ("log_chunks", "last_id", "log_chunk_ids"))
BATCH_ROWS = 500


class CopyRefused(ProvdError):
    """The copy was not attempted: the destination holds data, or the source is not
    a provd database this provd can read. Nothing was written to the destination."""


class CountMismatch(ProvdError):
    """The rows counted in the destination differ from the source's; the copy was
    rolled back."""

    def __init__(self, message: str, counts: list[TableCount]) -> None:
        super().__init__(message)
        self.counts = counts


@dataclass(frozen=True, slots=True)
class TableCount:
    table: str
    source: int
    destination: int

    @property
    def ok(self) -> bool:
        return self.source == self.destination


async def copy_sqlite_to_postgres(
    source: Path,
    dsn: str,
    *,
    progress: Callable[[str, int], None] | None = None,
) -> list[TableCount]:
    """Copy every row of the SQLite database `source` into the PostgreSQL database
    `dsn` (its current schema), which must hold no provd rows yet; return each
    table's counts (all equal). `progress(table, rows)` is called after each table.

    Raises `CopyRefused` before writing anything, `CountMismatch` (rolled back) if
    the counts differ, and `StoreUnusable` / `ProvdError` with messages free of the
    DSN's password.
    """
    if not await trio.Path(source).is_file():
        raise CopyRefused(f"{source} is not a file: name an existing SQLite database")
    # provd's own code brings both schemas up to date (and refuses a newer or
    # foreign one), so the copy below sees the same tables and columns on both sides.
    await _open_and_close(open_sqlite_store(source))
    await _open_and_close(open_postgres_store(dsn, pool_size=1))
    return await trio.to_thread.run_sync(_copy, source, dsn, progress)


def _copy(source: Path, dsn: str, progress: Callable[[str, int], None] | None) -> list[TableCount]:
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    try:
        src.execute("BEGIN")  # one snapshot of every table
        try:
            with psycopg.connect(dsn, autocommit=True) as dst, dst.transaction():
                return _copy_tables(src, dst, progress)
        except psycopg.Error as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ProvdError(
                f"copying into the PostgreSQL database at {describe(dsn)} failed, nothing"
                f" was committed: {redact(first, dsn)}"
            ) from None
    finally:
        src.close()


def _copy_tables(
    src: sqlite3.Connection,
    dst: psycopg.Connection[Any],
    progress: Callable[[str, int], None] | None,
) -> list[TableCount]:
    # Others may not add rows while this copy runs (and checks that there are none).
    for table in TABLES:
        dst.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.Identifier(table)))
    busy = [table for table in TABLES if _pg_count(dst, table)]
    if busy:
        raise CopyRefused(
            f"the destination already holds provd data (rows in {', '.join(busy)}):"
            " copy into an empty database (or schema)"
        )
    counts: list[TableCount] = []
    for table in TABLES:
        columns, booleans = _columns(src, dst, table)
        copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        cursor = src.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {ORDER_BY[table]}")
        copied = 0
        with dst.cursor() as pg_cursor, pg_cursor.copy(copy_sql) as copy:
            while rows := cursor.fetchmany(BATCH_ROWS):
                for row in rows:
                    if booleans:
                        row = tuple(
                            bool(v) if i in booleans and v is not None else v
                            for i, v in enumerate(row)
                        )
                    copy.write_row(row)
                copied += len(rows)
        counts.append(TableCount(table, _sqlite_count(src, table), _pg_count(dst, table)))
        if progress is not None:
            progress(table, copied)
    for table, column, sequence in SEQUENCES:
        dst.execute(
            sql.SQL(
                "SELECT setval({sequence}, coalesce((SELECT max({col}) FROM {table}), 0) + 1,"
                " false)"
            ).format(
                sequence=(
                    sql.SQL("pg_get_serial_sequence({}, {})").format(
                        sql.Literal(table), sql.Literal(column)
                    )
                    if sequence is None
                    else sql.Literal(sequence)
                ),
                col=sql.Identifier(column),
                table=sql.Identifier(table),
            )
        )
    if not all(count.ok for count in counts):
        differ = ", ".join(f"{c.table} {c.source} -> {c.destination}" for c in counts if not c.ok)
        raise CountMismatch(f"row counts differ ({differ}): the copy was rolled back", counts)
    return counts


def _columns(
    src: sqlite3.Connection, dst: psycopg.Connection[Any], table: str
) -> tuple[list[str], set[int]]:
    """The destination table's columns (which the source must have, and no others) and
    the positions of its boolean ones."""
    rows = dst.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    columns = [str(row[0]) for row in rows]
    booleans = {i for i, row in enumerate(rows) if row[1] == "boolean"}
    in_source = {str(row[1]) for row in src.execute(f"PRAGMA table_info({table})")}
    if set(columns) != in_source:
        raise CopyRefused(
            f"table {table} has columns {sorted(in_source)} in the SQLite database but"
            f" {sorted(columns)} in PostgreSQL: this provd cannot copy between them"
        )
    return columns, booleans


def _sqlite_count(src: sqlite3.Connection, table: str) -> int:
    return int(src.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def _pg_count(dst: psycopg.Connection[Any], table: str) -> int:
    row = dst.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
    return int(row[0]) if row else 0


__all__ = ["TABLES", "CopyRefused", "CountMismatch", "TableCount", "copy_sqlite_to_postgres"]


async def _open_and_close(store: AbstractAsyncContextManager[object]) -> None:
    """Open a store and close it again: opening is what migrates its schema."""
    async with store:
        return

"""The PostgreSQL SQL for daemon keys: plain functions of a connection, each run in a
transaction `PostgresStore` opened (see `_pg_sql`). Orderings of text use the "C"
collation, as SQLite and Python sort."""

from __future__ import annotations

import json
from collections.abc import Mapping

from psycopg import Connection
from psycopg.rows import DictRow

from provd.errors import AlreadyExists
from provd.model import DaemonKey

Conn = Connection[DictRow]

_COLUMNS = (
    "id, name, organization, owner, provisioners, tags, secret_sha256, created_at, last_used_at"
)


def create_key(conn: Conn, key: DaemonKey) -> None:
    """Insert `key`; two replicas creating the same name at once: one wins, the other
    gets `AlreadyExists` (the unique index decides, no error aborts the transaction)."""
    cursor = conn.execute(
        f"INSERT INTO keys ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT DO NOTHING",
        (
            key.id,
            key.name,
            key.organization,
            key.owner,
            json.dumps(list(key.provisioners)),
            json.dumps(dict(sorted(key.tags.items()))),
            key.secret_sha256,
            key.created_at,
            key.last_used_at,
        ),
    )
    if cursor.rowcount != 1:
        raise AlreadyExists(f"name: a daemon key named {key.name!r} exists already")


def get_key(conn: Conn, key_id: str) -> DaemonKey | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM keys WHERE id = %s", (key_id,)).fetchone()
    return None if row is None else _key(row)


def list_keys(conn: Conn) -> list[DaemonKey]:
    rows = conn.execute(
        f'SELECT {_COLUMNS} FROM keys ORDER BY organization COLLATE "C", name COLLATE "C"'
    )
    return [_key(row) for row in rows]


def delete_key(conn: Conn, name: str) -> DaemonKey | None:
    row = conn.execute(f"DELETE FROM keys WHERE name = %s RETURNING {_COLUMNS}", (name,)).fetchone()
    return None if row is None else _key(row)


def touch_keys(conn: Conn, last_used: Mapping[str, int]) -> None:
    """Move last-used times forward, never back, in one statement (ids in one order,
    so that replicas flushing at once lock rows alike)."""
    ids = sorted(last_used)
    conn.execute(
        "UPDATE keys SET last_used_at = GREATEST(last_used_at, t.used)"
        " FROM unnest(%s::text[], %s::bigint[]) AS t(id, used) WHERE keys.id = t.id",
        (ids, [last_used[i] for i in ids]),
    )


def _key(row: DictRow) -> DaemonKey:
    return DaemonKey(
        id=row["id"],
        name=row["name"],
        organization=row["organization"],
        owner=row["owner"],
        provisioners=tuple(json.loads(row["provisioners"])),
        tags=json.loads(row["tags"]),
        secret_sha256=row["secret_sha256"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
    )

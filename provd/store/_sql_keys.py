"""The SQL for daemon keys on SQLite: plain functions of a connection."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping

from provd.errors import AlreadyExists
from provd.model import DaemonKey

_COLUMNS = (
    "id, name, organization, owner, provisioners, tags, secret_sha256, created_at, last_used_at"
)


def create_key(conn: sqlite3.Connection, key: DaemonKey) -> None:
    cursor = conn.execute(
        f"INSERT INTO keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
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


def get_key(conn: sqlite3.Connection, key_id: str) -> DaemonKey | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM keys WHERE id = ?", (key_id,)).fetchone()
    return None if row is None else _key(row)


def list_keys(conn: sqlite3.Connection) -> list[DaemonKey]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM keys ORDER BY organization, name")
    return [_key(row) for row in rows]


def delete_key(conn: sqlite3.Connection, name: str) -> DaemonKey | None:
    rows = conn.execute(f"DELETE FROM keys WHERE name = ? RETURNING {_COLUMNS}", (name,))
    deleted = [_key(row) for row in rows.fetchall()]  # stepped to its end: names are unique
    return deleted[0] if deleted else None


def touch_keys(conn: sqlite3.Connection, last_used: Mapping[str, int]) -> None:
    """Move last-used times forward, never back."""
    conn.executemany(
        "UPDATE keys SET last_used_at = MAX(last_used_at, ?) WHERE id = ?",
        [(used, key_id) for key_id, used in last_used.items()],
    )


def _key(row: sqlite3.Row) -> DaemonKey:
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

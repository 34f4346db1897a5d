"""`provd backup FILE`: a consistent copy of a running server's SQLite database, taken
through the server (`provd.v1.BackupService`) while jobs keep running.

The copy is written to a temporary file beside FILE, checked (its size and SHA-256
against what the server announced, then SQLite's `PRAGMA integrity_check`), flushed to
disk, and only then renamed over FILE: FILE is either the previous one or a whole,
checked copy, never half of one. A client command: it imports nothing of the server.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, cast

import click

from provd.client.cli.context import Connection, Failure, server_options
from provd.client.cli.output import json_option, print_fields, print_json, size

if TYPE_CHECKING:
    # The generated connectrpc client's type: the light client has its methods.
    from provd.gen.provd.v1.backup_connect_client import BackupServiceClientSync


@click.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, writable=True, path_type=Path))
@json_option
@server_options
def backup(connection: Connection, file: Path, as_json: bool) -> None:
    """Copy the server's SQLite database to FILE while it serves.

    The server takes the copy with SQLite's online backup API and streams it; FILE is
    replaced only once the copy is complete and passes an integrity check. To restore,
    stop provd, put the copy in place of the database, remove its -wal and -shm files,
    and start provd (docs/operations.md). On PostgreSQL, use pg_dump.

    \b
    Example:
      provd backup provd-$(date +%F).db
    """
    from provd.client.connect_lite import service_client
    from provd.gen.provd.v1 import backup_pb2 as bpb

    target = file.resolve()
    descriptor = bpb.DESCRIPTOR.services_by_name["BackupService"]
    client = cast(
        "BackupServiceClientSync",
        service_client(connection.url, descriptor, {"Authorization": f"Bearer {connection.token}"}),
    )
    try:
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as error:
        raise Failure(f"cannot write in {target.parent}: {error.strerror}") from None
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            info = None
            digest = hashlib.sha256()
            written = 0
            for chunk in client.backup(bpb.BackupRequest()):
                if chunk.HasField("info"):
                    info = chunk.info
                digest.update(chunk.data)
                out.write(chunk.data)
                written += len(chunk.data)
            out.flush()
            os.fsync(out.fileno())
        if info is None:
            raise Failure("the server sent no backup")
        if written != info.size or digest.hexdigest() != info.sha256:
            raise Failure(
                f"the copy arrived damaged ({written} of {info.size} bytes, SHA-256"
                f" {'matches' if digest.hexdigest() == info.sha256 else 'differs'}); try again"
            )
        jobs = _check(temp)
        os.replace(temp, target)
        _fsync_directory(target.parent)
    except OSError as error:
        raise Failure(f"cannot write {target}: {error.strerror or error}") from None
    finally:
        temp.unlink(missing_ok=True)
    if as_json:
        print_json({"file": str(target), "bytes": written, "jobs": jobs, "sha256": info.sha256})
        return
    print_fields(
        [
            ("File", str(target)),
            ("Size", f"{size(written)} ({written} bytes)"),
            ("Jobs", jobs),
            ("SHA-256", info.sha256),
        ]
    )


def _check(path: Path) -> int:
    """Run SQLite's integrity check on the copy; return its number of jobs."""
    try:
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
            problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                raise Failure(f"the copy fails SQLite's integrity check: {'; '.join(problems[:5])}")
            (jobs,) = conn.execute("SELECT count(*) FROM jobs").fetchone()
    except sqlite3.Error as error:
        raise Failure(f"the copy is not a usable SQLite database: {error}") from None
    return int(jobs)


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable: flush the directory entry."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

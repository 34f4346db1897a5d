"""`provd.v1.BackupService`: a consistent copy of the SQLite database, streamed while
the server keeps serving (`provd backup FILE`).

The copy is made with SQLite's online backup API into a temporary file beside the
database (same file system, same private directory, mode 0600), streamed in chunks
after a first message that gives its size, SHA-256 and job count, and deleted when the
stream ends, however it ends. The database needs room for one more copy meanwhile.
A PostgreSQL server answers `failed_precondition`: pg_dump backs that database up.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable

import trio
from connectrpc.request import RequestContext

from provd.errors import FailedPrecondition
from provd.gen.provd.v1 import backup_pb2 as bpb
from provd.model import now_ms
from provd.store import Store

# Well under any message limit; large enough that a copy takes few messages.
CHUNK_BYTES = 1024 * 1024
ON_POSTGRES = (
    "this server's database is PostgreSQL, which provd does not copy: back it up with"
    " pg_dump (docs/operations.md, 'Backup and restore')"
)


@runtime_checkable
class BackupSource(Protocol):
    """A store that can copy its database into a file: `SQLiteStore`."""

    path: Path

    async def backup_to(self, target: Path) -> int: ...


class BackupServiceHandler:
    def __init__(
        self, store: Store, *, now: Callable[[], int] = now_ms, chunk_bytes: int = CHUNK_BYTES
    ) -> None:
        self._store = store
        self._now = now
        self._chunk_bytes = chunk_bytes

    async def backup(
        self, request: bpb.BackupRequest, ctx: RequestContext[Any, Any]
    ) -> AsyncIterator[bpb.BackupChunk]:
        store = self._store
        if not isinstance(store, BackupSource):
            raise FailedPrecondition(ON_POSTGRES)
        temp = await trio.to_thread.run_sync(_temp_file_beside, store.path)
        try:
            taken_at = self._now()
            jobs = await store.backup_to(temp)
            size, sha256 = await trio.to_thread.run_sync(_size_and_digest, temp)
            info = bpb.BackupInfo(size=size, sha256=sha256, jobs=jobs, taken_at_ms=taken_at)
            yield bpb.BackupChunk(info=info)
            with temp.open("rb") as copy:
                while chunk := await trio.to_thread.run_sync(_read, copy, self._chunk_bytes):
                    yield bpb.BackupChunk(data=chunk)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(_remove, temp)


def _temp_file_beside(db_path: Path) -> Path:
    """A new, empty file (mode 0600) in the database's directory for the copy."""
    fd, name = tempfile.mkstemp(dir=db_path.parent, prefix=f"{db_path.name}.backup-", suffix=".tmp")
    os.close(fd)
    return Path(name)


def _size_and_digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as file:
        while block := file.read(CHUNK_BYTES):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def _read(file: BinaryIO, size: int) -> bytes:
    return file.read(size)


def _remove(path: Path) -> None:
    """Delete the copy and any side file SQLite may have left beside it."""
    for leftover in (path, *(path.with_name(path.name + s) for s in ("-journal", "-wal", "-shm"))):
        leftover.unlink(missing_ok=True)

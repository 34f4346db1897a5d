"""One writer at a time among the processes that share a SQLite file, woken promptly.

SQLite lets one connection write at a time; a connection that finds the lock taken
sleeps in its busy handler, in steps of up to 100 ms, and tries again. Within one
provd process that never happens (one writer thread owns the only write connection),
but several processes on one file (`provd serve --workers`, several serves) made their
writers take turns by polling: the measured cost was a quarter of each writer's time
asleep, and under load one process's writer could lose every race for five seconds
and fail its batch with "database is locked" (docs/performance.md, "Beyond one
process").

`WriteLock` puts an `flock` on a file beside the database around each write
transaction: a writer waiting for it is woken by the kernel the moment the holder
releases, so the processes hand the database over without sleeping and none starves.
Uncontended it costs two system calls per transaction (one per batch of writes).
flock locks are independent of the POSIX locks SQLite itself uses, so nothing else
changes: a program that writes without it (the sqlite3 shell, `provd db copy`) is
still serialized by SQLite's own lock, as before.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType


def write_lock_path(db_path: Path) -> Path:
    """The lock file of the database at `db_path`, beside it."""
    return db_path.with_name(db_path.name + "-writer.lock")


class WriteLock:
    """An exclusive flock held while a write transaction runs (`with lock: …`), for
    the writer thread only: acquiring blocks."""

    def __init__(self, db_path: Path) -> None:
        self.path = write_lock_path(db_path)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def __enter__(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)

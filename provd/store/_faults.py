"""What a SQLite or file-system error means for the operator and for clients.

Three kinds of failure get a message of their own instead of SQLite's terse text:

- at run time, a write that found no room on the disk (`StoreFull`, which clients see
  as `resource_exhausted`): nothing is broken, and writes succeed again once space
  is freed;
- at run time, a write that waited out SQLite's busy timeout because another program
  held the write lock (`StoreBusy`, `unavailable`): it may be retried;
- at start-up, a database that cannot be used as it is (`StoreUnusable`): one line
  that says what is wrong and what to do, which `provd serve` prints as is.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from provd.errors import StoreBusy, StoreFull, StoreUnusable

# I/O errors of writing or growing a file. Out of space surfaces as SQLITE_FULL on most
# file systems, but a file-size limit (EFBIG), a quota, or ENOSPC from fsync (NFS,
# delayed allocation) come back as one of these.
_WRITE_ERRORS = frozenset(
    {
        sqlite3.SQLITE_IOERR_WRITE,
        sqlite3.SQLITE_IOERR_TRUNCATE,
        sqlite3.SQLITE_IOERR_FSYNC,
        sqlite3.SQLITE_IOERR_SHMSIZE,
    }
)
_NO_ROOM_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def _code(error: sqlite3.Error) -> int | None:
    """SQLite's extended result code, if the error came from SQLite itself."""
    code = getattr(error, "sqlite_errorcode", None)
    return code if isinstance(code, int) else None


def _name(error: sqlite3.Error) -> str:
    return str(getattr(error, "sqlite_errorname", "") or type(error).__name__)


def disk_full(error: BaseException, path: Path) -> StoreFull | None:
    """The `StoreFull` that `error`, raised by a write to the database at `path`, means;
    None if it is not a disk that refused a write."""
    if not isinstance(error, sqlite3.Error) or (code := _code(error)) is None:
        return None
    directory = path.parent
    if code & 0xFF == sqlite3.SQLITE_FULL:
        message = (
            f"the database's disk is full: free space on {directory};"
            " provd takes writes again as soon as there is room"
        )
    elif code in _WRITE_ERRORS:
        message = (
            f"the database's disk refused a write ({_name(error)}): free space on"
            f" {directory}, or raise its file-size limit or quota, or check the disk;"
            " provd takes writes again as soon as it can write"
        )
    else:
        return None
    full = StoreFull(message)
    full.__cause__ = error
    return full


def busy(error: BaseException, path: Path) -> StoreBusy | None:
    """The `StoreBusy` that `error` means if SQLite gave up waiting for its lock."""
    if not isinstance(error, sqlite3.Error) or (code := _code(error)) is None:
        return None
    if code & 0xFF != sqlite3.SQLITE_BUSY:
        return None
    stuck = StoreBusy(
        f"another program kept {path} locked for writing too long, so this write was not"
        " stored; retry it (provd's own processes take turns without this: look for"
        " another program writing to the database)"
    )
    stuck.__cause__ = error
    return stuck


def translate(error: BaseException, path: Path) -> BaseException:
    """`error` as a caller of the store should see it: `StoreFull` for a full disk,
    `StoreBusy` for a lock held too long elsewhere, anything else unchanged."""
    return disk_full(error, path) or busy(error, path) or error


def unusable(error: sqlite3.Error, path: Path) -> StoreUnusable:
    """The `StoreUnusable` for an error SQLite raised while provd opened `path`."""
    code = _code(error)
    primary = None if code is None else code & 0xFF
    if primary == sqlite3.SQLITE_NOTADB:
        return StoreUnusable(
            f"{path} is not a SQLite database (or it is encrypted): point --db at provd's"
            " database, or move the file away to start with an empty one"
        )
    if primary == sqlite3.SQLITE_CORRUPT:
        return StoreUnusable(
            f"the database {path} is corrupt ({error}): restore it from a backup, or move it"
            " away with its -wal and -shm files (`sqlite3 provd.db .recover` may save its data)"
        )
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StoreUnusable(
            f"the database {path} is locked by another process that does not let go"
            " (a sqlite3 shell or a backup tool holding a transaction?): stop it, then"
            " start provd again"
        )
    if primary in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH):
        return _read_only(path, str(error))
    if disk_full(error, path) is not None:
        return StoreUnusable(
            f"the disk of the database {path} is full or refused a write ({_name(error)}):"
            f" free space on {path.parent}, then start provd again"
        )
    if primary == sqlite3.SQLITE_CANTOPEN:
        if path.is_dir():
            return _is_a_directory(path)
        if (why := _why_not_writable(path)) is not None:
            return _read_only(path, why)
        return StoreUnusable(
            f"cannot open the database {path} ({error}): provd must be able to read and"
            f" write it and to create files in {path.parent}; fix the permissions or the"
            " mount, or choose another database path (--db)"
        )
    return StoreUnusable(
        f"cannot open the database {path}: {error} ({_name(error)}); fix the cause, or"
        " choose another database path (--db)"
    )


def _read_only(path: Path, why: str) -> StoreUnusable:
    return StoreUnusable(
        f"the database {path} is read-only ({why}): provd must be able to write it and"
        f" to create {path.name}-wal and {path.name}-shm beside it; fix the permissions"
        " or the mount, or choose another database path (--db)"
    )


def _why_not_writable(path: Path) -> str | None:
    """Why provd cannot write the database or create its side files, if it cannot."""
    try:
        if os.statvfs(path.parent).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except OSError:
        return None
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return "permission denied"
    return None


def _is_a_directory(path: Path) -> StoreUnusable:
    return StoreUnusable(f"{path} is a directory, not a database file: choose a file path (--db)")


def unusable_file(error: OSError, path: Path) -> StoreUnusable:
    """The `StoreUnusable` for an error of the file system about the database file."""
    if error.errno == errno.EISDIR or path.is_dir():
        return _is_a_directory(path)
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return _read_only(path, error.strerror or str(error))
    if error.errno in _NO_ROOM_ERRNOS:
        return StoreUnusable(
            f"cannot create the database {path}: the disk is full; free space on"
            f" {path.parent} and start provd again"
        )
    return StoreUnusable(
        f"cannot create the database {path}: {error.strerror or error}; fix the cause,"
        " or choose another database path (--db)"
    )


def unusable_directory(error: OSError, directory: Path) -> StoreUnusable:
    """The `StoreUnusable` for a data directory that could not be created."""
    prefix = f"cannot create the data directory {directory}"
    if (blocker := _file_in_the_way(directory)) is not None:
        return StoreUnusable(
            f"{prefix}: {blocker} is a file, not a directory; move it away, or choose"
            " another database path (--db)"
        )
    if error.errno in (errno.EACCES, errno.EPERM):
        return StoreUnusable(
            f"{prefix}: permission denied; create it (mode 0700) for the user provd runs"
            " as, or choose another database path (--db)"
        )
    if error.errno == errno.EROFS:
        return StoreUnusable(
            f"{prefix}: the file system is read-only; choose a database path (--db) on a"
            " writable file system"
        )
    if error.errno in _NO_ROOM_ERRNOS:
        return StoreUnusable(f"{prefix}: the disk is full; free space there and start again")
    return StoreUnusable(
        f"{prefix}: {error.strerror or error}; fix the cause, or choose another database"
        " path (--db)"
    )


def _file_in_the_way(directory: Path) -> Path | None:
    """The nearest of `directory` and its parents that exists but is not a directory."""
    for candidate in (directory, *directory.parents):
        try:
            if candidate.exists() or candidate.is_symlink():
                return None if candidate.is_dir() else candidate
        except OSError:  # cannot even look: not a file in the way that we can name
            return None
    return None


def newer_schema(path: Path, unknown: list[str], version: str) -> StoreUnusable:
    """A database that a newer provd migrated: this one cannot know what changed."""
    return StoreUnusable(
        f"the database {path} was written by a newer provd: it has schema migration(s)"
        f" {', '.join(unknown)}, which provd {version} does not know; run a provd at least"
        " as new as the one that wrote it, or choose another database path (--db)"
    )


def not_provds(path: Path) -> StoreUnusable:
    """A SQLite database with tables of its own and no provd schema."""
    return StoreUnusable(
        f"{path} is a SQLite database, but not provd's (it has tables and no provd"
        " schema): point --db at provd's database, or at a new file"
    )

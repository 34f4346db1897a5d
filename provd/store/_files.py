"""The database's directory and files: created private, kept private.

`provd.db` holds session and OIDC tokens from job metadata and sensitive variable
values, so nobody but provd's user may read it, whatever the umask:

- A data directory provd creates is 0700. One that already exists is the user's
  choice and is left as it is (its files are 0600, so a readable directory shows only
  their names and sizes); provd warns only if others may write it, since they could
  then replace the files.
- The database file is created 0600 before SQLite opens it. SQLite creates
  `-wal`, `-shm` and `-journal` with the database file's own mode (it `fchmod`s them,
  ignoring the umask), so they are 0600 too.
- Files from before this rule that are open to others are tightened to owner-only on
  every open (bits are only removed, never added), if provd's user owns them, once
  the file is known to be provd's database: a file named by mistake keeps its mode.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from provd.store._faults import unusable_directory, unusable_file

logger = logging.getLogger(__name__)

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
SIDE_FILES = ("-wal", "-shm", "-journal")


def prepare_data_dir(db_path: Path) -> None:
    """Create the directory of `db_path` (mode 0700) if it does not exist.

    Raises `StoreUnusable` if it cannot be created (permission denied, a file in the
    way, a read-only file system). Call it before writing anything beside the database.
    """
    directory = db_path.parent
    try:
        directory.mkdir(mode=DIRECTORY_MODE, parents=True)
    except FileExistsError:
        if not directory.is_dir():
            raise unusable_directory(FileExistsError(), directory) from None
        _warn_if_others_may_write(directory)
        return
    except OSError as error:
        raise unusable_directory(error, directory) from None
    os.chmod(directory, DIRECTORY_MODE)  # exactly 0700, whatever the umask took away


def _warn_if_others_may_write(directory: Path) -> None:
    mode = directory.stat().st_mode
    # In a sticky directory (/tmp), others may create files but not replace ours.
    if mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
        logger.warning(
            "the data directory %s is writable by others (mode %o): they could replace"
            " the database; make it 0700",
            directory,
            stat.S_IMODE(mode),
        )


def create_database_file(db_path: Path) -> None:
    """Create `db_path` empty with mode 0600 if it does not exist, before SQLite does
    (SQLite would create it 0644).

    Raises `StoreUnusable` if the file cannot be created.
    """
    try:
        fd = os.open(db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        return
    except OSError as error:
        raise unusable_file(error, db_path) from None
    try:
        os.fchmod(fd, FILE_MODE)  # exactly 0600, whatever the umask
    finally:
        os.close(fd)


def tighten_database_files(db_path: Path) -> None:
    """Take group and other permissions off the database and its side files (`-wal`,
    `-shm`, `-journal`). Called once the file is known to be provd's database: a file
    that --db named by mistake is left as it was."""
    for path in (db_path, *(db_path.with_name(db_path.name + s) for s in SIDE_FILES)):
        _tighten(path)


def _tighten(path: Path) -> None:
    """Take group and other permissions off `path`, a regular file provd's user owns."""
    try:
        info = os.stat(path)
    except OSError:  # absent (the usual case for side files), or a dangling link
        return
    mode = stat.S_IMODE(info.st_mode)
    if not stat.S_ISREG(info.st_mode) or not mode & 0o077:
        return
    if info.st_uid != os.geteuid():
        logger.warning(
            "%s is readable by others (mode %o) and owned by another user; make it 0600",
            path,
            mode,
        )
        return
    try:
        os.chmod(path, mode & ~0o077)
    except OSError as error:  # a read-only mount: SQLite will say it cannot write
        logger.warning("could not make %s private (mode %o): %s", path, mode, error)

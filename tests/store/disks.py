"""Small disks for the SQLite fault tests (tests/test_disk_full.py, test_store_startup.py).

Not part of the backend-agnostic suite: these make a real file system misbehave.

- `tmpfs`: a size-limited tmpfs mounted on a directory (needs root and the right to
  mount; CI runs as root). Filling it makes every write that needs a new page fail
  with ENOSPC, which SQLite reports as SQLITE_FULL.
- `file_size_limit`: RLIMIT_FSIZE on this process, the fallback where mounting is not
  allowed. With SIGXFSZ ignored, a write past the limit fails with EFBIG, which SQLite
  reports as SQLITE_IOERR_WRITE. It limits every file this process writes, so it is
  set only between `fill` and `free`, and to no less than the largest file there.

`small_disk` gives whichever works and skips the test, saying why, only if neither does
(PROVD_TEST_SMALL_DISK=fsize makes it use the limit even where it could mount).
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SIZE = "8m"


def mount_tmpfs(directory: Path, size: str = SIZE) -> str | None:
    """Mount a tmpfs of `size` on `directory`; None if done, else why not."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    directory.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return f"mount -t tmpfs failed: {done.stderr.strip() or done.returncode}"
    return None


def unmount(directory: Path) -> None:
    """Unmount `directory`, lazily if something still holds it: never leave a mount."""
    if subprocess.run(["umount", str(directory)], capture_output=True, check=False).returncode:
        subprocess.run(["umount", "-l", str(directory)], capture_output=True, check=False)


def remount_read_only(directory: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(directory)], check=True)


@contextlib.contextmanager
def tmpfs(directory: Path, size: str = SIZE) -> Iterator[Path]:
    """A tmpfs on `directory` for the block; skips the test if it cannot be mounted."""
    why_not = mount_tmpfs(directory, size)
    if why_not is not None:
        pytest.skip(why_not)
    try:
        yield directory
    finally:
        unmount(directory)


@dataclass
class Disk:
    """A directory whose file system can be made full and freed again."""

    directory: Path
    kind: str

    def fill(self) -> None:
        raise NotImplementedError

    def free(self) -> None:
        raise NotImplementedError


@dataclass
class TmpfsDisk(Disk):
    """Full: a filler file takes every free byte. Freed: it is deleted."""

    filler: Path = field(init=False)

    def __post_init__(self) -> None:
        self.filler = self.directory / "filler"

    def fill(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (1 << 16, 1 << 12, 1 << 9, 1):
                with contextlib.suppress(OSError):
                    while os.write(fd, b"\0" * chunk) == chunk:
                        pass
        finally:
            os.close(fd)
        probe = self.directory / "probe"
        try:
            probe.write_bytes(b"x" * 4096)
        except OSError as error:
            assert error.errno == errno.ENOSPC
        else:
            raise AssertionError(f"{self.directory} still has room after filling it")
        finally:
            probe.unlink(missing_ok=True)

    def free(self) -> None:
        self.filler.unlink()


@dataclass
class FileSizeLimit(Disk):
    """Full: no file of this process may grow past the largest one in the directory.
    Freed: the limit is lifted."""

    saved: tuple[int, int] = field(init=False)

    def __post_init__(self) -> None:
        self.saved = resource.getrlimit(resource.RLIMIT_FSIZE)

    def fill(self) -> None:
        sizes = (p.stat().st_size for p in self.directory.iterdir() if p.is_file())
        largest = max(sizes, default=0)
        resource.setrlimit(resource.RLIMIT_FSIZE, (largest, self.saved[1]))

    def free(self) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, self.saved)


@contextlib.contextmanager
def small_disk(base: Path) -> Iterator[Disk]:
    """A tmpfs under `base` if one can be mounted, else a file-size limit on this
    process; skips the test, saying why, if neither is possible."""
    directory = base / "disk"
    if os.environ.get("PROVD_TEST_SMALL_DISK") == "fsize":  # to try the fallback here
        why_not: str | None = "PROVD_TEST_SMALL_DISK=fsize"
    else:
        why_not = mount_tmpfs(directory)
    if why_not is None:
        try:
            yield TmpfsDisk(directory, "tmpfs")
        finally:
            unmount(directory)
        return
    if not hasattr(signal, "SIGXFSZ") or not hasattr(resource, "RLIMIT_FSIZE"):
        pytest.skip(f"{why_not}; and this platform has no RLIMIT_FSIZE/SIGXFSZ")
    directory.mkdir(parents=True, exist_ok=True)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, not death
    disk = FileSizeLimit(directory, "file-size limit")
    try:
        yield disk
    finally:
        disk.free()
        signal.signal(signal.SIGXFSZ, previous)

"""What the frozen `provd` runs: the same click group as the `provd` console script.

PyInstaller freezes this file as `__main__` (packaging/provd.spec). It is not named
`provd.py` on purpose: a script of that name would shadow the `provd` package.

The one-file executable unpacks every shared library into `$TMPDIR/_MEIxxxxxx` on every
start, before Python runs, needed or not: 10-15 ms per MB here. The largest ones serve
some commands only (pyqwest, connectrpc's HTTP client: `provd daemon` and `provd
backup`, and `serve` once asked for gRPC reflection; psycopg: `--db postgresql://`;
OpenSSL: https:// and `hashlib`; SQLite and `unicodedata`: `serve`), so provd.spec keeps
their files out of the unpacked set and stores them, zlib-compressed, in the module
archive instead (`LAZY_GROUPS`); the first import of a module that needs them writes
them where the bootloader would have put them, then the import goes on as usual. `provd
--help` and `provd jobs list` unpack none of them. The one-dir bundle has them on disk
and never uses this.
"""

from __future__ import annotations

import _thread
import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec
from types import ModuleType

# Files the one-file executable unpacks on first use, not on every start, by group:
# (the top-level modules whose import needs them, the unpack paths they are: a path
# ending in "/" is a directory). Every shared library a trigger loads must be in its
# group (`readelf -d`: _ssl needs libssl and libcrypto, _hashlib libcrypto, _sqlite3
# libsqlite3); provd.spec fails the build if a group matches no file.
# A stdlib extension's path is that of the Python building (and, frozen, running) this:
# `python3.11/lib-dynload/unicodedata.cpython-311-x86_64-linux-gnu.so` here. Debian's
# python3.11 (the portable build, packaging/portable.sh) has `unicodedata` built into
# libpython instead: a group whose triggers are all built-in modules has no files, and
# provd.spec accepts that.
_LIB_DYNLOAD = f"python{sys.version_info[0]}.{sys.version_info[1]}/lib-dynload/"
_EXT_SUFFIX = EXTENSION_SUFFIXES[0]  # ".cpython-311-x86_64-linux-gnu.so"
LAZY_GROUPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "pyqwest": (("pyqwest",), ("pyqwest/", "pyqwest.libs/")),
    "psycopg_binary": (("psycopg_binary",), ("psycopg_binary/", "psycopg_binary.libs/")),
    "openssl": (("_ssl", "_hashlib"), ("libssl.so.3", "libcrypto.so.3")),
    "sqlite": (("_sqlite3",), ("libsqlite3.so.0",)),
    "unicodedata": (("unicodedata",), (f"{_LIB_DYNLOAD}unicodedata{_EXT_SUFFIX}",)),
}


def lazy_group(dest: str) -> str | None:
    """The LAZY_GROUPS group of the unpack path `dest`, or None."""
    for group, (_triggers, paths) in LAZY_GROUPS.items():
        if any(dest == p or (p.endswith("/") and dest.startswith(p)) for p in paths):
            return group
    return None


# Written in pieces of this size, as the bootloader writes: one 12 MB write() makes
# the page cache hold the file in large folios, and a library mapped from them counts
# more resident pages (pyqwest's: 2.4 MB RSS against 1.0 MB in 8 KiB writes).
WRITE_CHUNK = 8192


def blob_module(group: str) -> str:
    """The archive module that holds `group`'s files (written by provd.spec): its
    `FILES` are (path under the unpack directory, bytes) pairs, its `SYMLINKS` the links
    PyInstaller would make at the top of that directory (link -> target)."""
    return f"_provd_lazy_{group}"


class LazyUnpacker:
    """A meta-path finder that, on the first import of a module that triggers a
    `LAZY_GROUPS` group (or of a module in that package), writes the group's files into
    `root` and then lets the import system find the module as usual (it returns no
    spec)."""

    def __init__(self, root: str, groups: Mapping[str, tuple[Sequence[str], Sequence[str]]]):
        self.root = root
        self.lock = _thread.RLock()  # re-entered: unpacking imports the archive module
        self.pending = {
            trigger: group for group, (triggers, _paths) in groups.items() for trigger in triggers
        }

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        # Under the lock: a second thread that needs the same group waits for its files.
        with self.lock:
            group = self.pending.get(fullname.partition(".")[0])
            if group is not None:
                for trigger in [t for t, g in self.pending.items() if g == group]:
                    del self.pending[trigger]
                self.unpack(group)
        return None

    def unpack(self, group: str) -> None:
        try:
            importlib.import_module(blob_module(group))
        except ImportError:  # a build without it (the one-dir bundle): nothing to do
            return
        try:
            _write_files(self.root, sys.modules[blob_module(group)])
        finally:
            # The bytes are on disk now; do not keep megabytes of them in memory.
            del sys.modules[blob_module(group)]
            _return_freed_memory()
        importlib.invalidate_caches()  # directory listings cached before the files came


def _write_files(root: str, blob: ModuleType) -> None:
    """Write a group's FILES and SYMLINKS under `root`, skipping what exists."""
    for relative, data in blob.FILES:
        target = os.path.join(root, relative)
        if os.path.exists(target):
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        # Whole or not at all: written beside, then renamed into place.
        partial = f"{target}.{os.getpid()}.part"
        with open(partial, "wb") as file:
            view = memoryview(data)
            for start in range(0, len(view), WRITE_CHUNK):
                file.write(view[start : start + WRITE_CHUNK])
        os.chmod(partial, 0o755)
        os.replace(partial, target)
    for link, link_target in blob.SYMLINKS.items():
        if not os.path.lexists(path := os.path.join(root, link)):
            os.symlink(link_target, path)


def _return_freed_memory() -> None:
    """Give the heap's free pages back to the system. The archive's megabytes were read,
    inflated and copied through malloc; without this, glibc keeps about 4 MB of them in
    an idle `provd serve` (measured: 63.2 MB RSS against 58.7 MB; 58.0 MB with it)."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (ImportError, OSError, AttributeError):  # not glibc: nothing to do
        pass


def install_lazy_unpacker() -> None:
    """In the one-file executable (frozen, unpacked into `sys._MEIPASS`), unpack the
    `LAZY_GROUPS` when first needed."""
    root = getattr(sys, "_MEIPASS", None)
    if getattr(sys, "frozen", False) and root:
        sys.meta_path.insert(0, LazyUnpacker(root, LAZY_GROUPS))


if __name__ == "__main__":
    install_lazy_unpacker()
    from provd.cli import main

    main(prog_name="provd")

"""staticx's command line, with reproducible archive members and no second copy of
the libraries provd's bundle carries.

    VENV/bin/python packaging/staticx_reproducible.py [--bundled FILE] [staticx options]
                                                      PROG OUTPUT

- Reproducible: staticx appends a tar(.xz) of the libraries to its bootloader. Its
  members carry the mtime and owner of the files it archives, and some of those are
  temporary copies made at build time (the program itself, libraries whose RPATH it
  strips), so two builds of the same tree would differ. Here every member is dated
  SOURCE_DATE_EPOCH (the last commit's time, as for the PyInstaller build) and owned by
  0:0. The rest of staticx is deterministic for the same inputs (sorted PyInstaller
  TOC, ldd order, xz).
- `--bundled FILE` (one library name a line): staticx adds the libraries that the
  binaries PyInstaller unpacks at start need, unless the bootloader unpacks them too.
  packaging/entry.py keeps OpenSSL and SQLite in the module archive and writes them
  into the unpack directory on first use, so staticx would add a second copy of each
  (7 MB), unpacked on every start. Libraries named in FILE are left to the bundle.
  (The program's own libraries, which its bootloader needs before anything is
  unpacked, are always added.)
"""

from __future__ import annotations

import logging
import os
import sys
import tarfile
from pathlib import Path

from staticx.__main__ import main
from staticx.elf import LddError, get_shobj_deps
from staticx.hooks import pyinstaller

EPOCH = int(os.environ["SOURCE_DATE_EPOCH"])
_addfile = tarfile.TarFile.addfile


def addfile(self: tarfile.TarFile, tarinfo: tarfile.TarInfo, fileobj=None):  # type: ignore[no-untyped-def]
    tarinfo.mtime = EPOCH
    tarinfo.uid = tarinfo.gid = 0
    tarinfo.uname = tarinfo.gname = "root"
    return _addfile(self, tarinfo, fileobj)


tarfile.TarFile.addfile = addfile  # type: ignore[method-assign]

BUNDLED: set[str] = set()


def add_required_deps(self, lib):  # type: ignore[no-untyped-def]
    """staticx's PyInstallHook._add_required_deps, also skipping BUNDLED."""
    try:
        deps = get_shobj_deps(lib, libpath=[self.tmpdir.name])
    except LddError as error:
        logging.warning(error)
        return
    for deppath in deps:
        dep = os.path.basename(deppath)
        if dep in self.pyi_ar.toc or dep in BUNDLED:
            logging.debug(f"{dep} is in the PyInstaller bundle")
            continue
        self.sx.add_library(deppath, exist_ok=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--bundled":
        BUNDLED.update(Path(sys.argv[2]).read_text().split())
        del sys.argv[1:3]
        pyinstaller.PyInstallHook._add_required_deps = add_required_deps  # type: ignore[method-assign]
    sys.argv[0] = "staticx"
    sys.exit(main())

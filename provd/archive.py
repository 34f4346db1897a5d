"""Template source archives: check that an upload is a tar, or turn a zip into one.

Daemons receive the archive as a tar (`AcquiredJob.template_source_archive`), so
that is the only form stored. The conversion is deterministic: the same zip
always gives the same tar, hence the same content hash. `read_archive` and
`pack_directory` are the client's side: what `provd files upload` sends.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import zipfile
from pathlib import Path

from provd.errors import InvalidArgument

TAR = "application/x-tar"
ZIP = "application/zip"
_ZIP_MAGIC = b"PK\x03\x04"
_ACCEPTED = {
    "": None,
    TAR: TAR,
    "application/tar": TAR,
    ZIP: ZIP,
    "application/x-zip-compressed": ZIP,
}


def normalize_archive(data: bytes, mimetype: str) -> bytes:
    """The tar to store for an upload of `data` declared as `mimetype`.

    An empty mimetype means: sniff (zip by its magic number, tar otherwise).
    Raises `InvalidArgument` naming the field for anything else or a bad archive.
    """
    if mimetype not in _ACCEPTED:
        raise InvalidArgument(f"mimetype: {mimetype!r} is not accepted; use {TAR!r} or {ZIP!r}")
    if not data:
        raise InvalidArgument("data: the archive is empty")
    kind = _ACCEPTED[mimetype] or (ZIP if data.startswith(_ZIP_MAGIC) else TAR)
    if kind == ZIP:
        return _zip_to_tar(data)
    _check_tar(data)
    return data


def _check_tar(data: bytes) -> None:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            archive.getmembers()
    except (tarfile.TarError, EOFError) as exc:
        raise InvalidArgument(f"data: not a valid tar archive ({exc})") from None


def _zip_to_tar(data: bytes) -> bytes:
    out = io.BytesIO()
    try:
        with (
            zipfile.ZipFile(io.BytesIO(data)) as source,
            tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT) as target,
        ):
            for info in sorted(source.infolist(), key=lambda i: i.filename):
                member = tarfile.TarInfo(
                    info.filename.rstrip("/") if info.is_dir() else info.filename
                )
                member.mtime = 0
                if info.is_dir():
                    member.type = tarfile.DIRTYPE
                    member.mode = 0o755
                    target.addfile(member)
                    continue
                content = source.read(info)
                member.size = len(content)
                member.mode = (info.external_attr >> 16) & 0o777 or 0o644
                target.addfile(member, io.BytesIO(content))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError) as exc:
        raise InvalidArgument(f"data: not a valid zip archive ({exc})") from None
    return out.getvalue()


def pack_directory(root: Path) -> bytes:
    """`root`'s contents as a tar that depends on nothing but the names, contents,
    executable bits and symlink targets: sorted names relative to `root`, mtime 0,
    no owners. Packing the same tree twice gives the same bytes, hence the same hash.
    Sockets, FIFOs and devices are left out."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT) as archive:
        for path in _walk(root):
            member = tarfile.TarInfo(path.relative_to(root).as_posix())
            member.mtime = 0
            if path.is_symlink():
                member.type = tarfile.SYMTYPE
                member.linkname = os.readlink(path)
                member.mode = 0o777
                archive.addfile(member)
            elif path.is_dir():
                member.type = tarfile.DIRTYPE
                member.mode = 0o755
                archive.addfile(member)
            elif path.is_file():
                content = path.read_bytes()
                member.size = len(content)
                member.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
                archive.addfile(member, io.BytesIO(content))
    return out.getvalue()


def _walk(root: Path) -> list[Path]:
    """Every path under `root` (not following symlinks), sorted by name."""
    found: list[Path] = []
    for directory, dirnames, filenames in os.walk(root):
        found.extend(Path(directory) / name for name in (*dirnames, *filenames))
    return sorted(found, key=lambda path: path.relative_to(root).as_posix())


def read_archive(path: Path) -> tuple[bytes, str]:
    """What to upload for `path`: (data, mimetype). A directory is packed into a tar
    (`pack_directory`); a .zip is sent as a zip, a .tar.gz or .tgz is decompressed, and
    anything else is sent as it is for the server to recognise (tar or zip).
    Raises OSError if it cannot be read, ValueError if a .gz file is not gzip."""
    if path.is_dir():
        return pack_directory(path), TAR
    data = path.read_bytes()
    name = path.name.lower()
    if name.endswith(".zip"):
        return data, ZIP
    if name.endswith((".tar.gz", ".tgz")):
        try:
            return gzip.decompress(data), TAR
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path}: not a gzip file ({exc})") from None
    if name.endswith(".tar"):
        return data, TAR
    return data, ""

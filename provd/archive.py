"""Template source archives: check that an upload is a tar, or turn a zip into one.

Daemons receive the archive as a tar (`AcquiredJob.template_source_archive`), so
that is the only form stored. The conversion is deterministic: the same zip
always gives the same tar, hence the same content hash.
"""

from __future__ import annotations

import io
import tarfile
import zipfile

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

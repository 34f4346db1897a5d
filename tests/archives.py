"""Template archives built in memory for tests: small honest ones, hostile ones, and
zip bombs made without compressing the gigabyte they claim."""

from __future__ import annotations

import io
import stat
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass


def make_tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT) as archive:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 0
            archive.addfile(info, io.BytesIO(content))
    return out.getvalue()


def make_zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in sorted(files.items()):
            archive.writestr(name, content)
    return out.getvalue()


MAIN_TF = {"main.tf": b'resource "null_resource" "example" {}\n'}


# -- tars member by member ----------------------------------------------------------------


@dataclass(frozen=True)
class T:
    """One tar member: a regular file unless `type` says otherwise; `link` is a
    symbolic or hard link's target."""

    name: str
    data: bytes = b""
    type: bytes = tarfile.REGTYPE
    link: str = ""
    mode: int = 0o644


def tar_of(*members: T, format: int = tarfile.PAX_FORMAT) -> bytes:
    """A tar of `members` in this order, names exactly as given."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:", format=format, encoding="utf-8") as archive:
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.type = member.type
            info.linkname = member.link
            info.mode = member.mode
            info.mtime = 0
            if member.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
                info.size = len(member.data)
                archive.addfile(info, io.BytesIO(member.data))
            else:
                archive.addfile(info)
    return out.getvalue()


def symlink(name: str, target: str) -> T:
    return T(name, type=tarfile.SYMTYPE, link=target, mode=0o777)


def hardlink(name: str, target: str) -> T:
    return T(name, type=tarfile.LNKTYPE, link=target)


def directory(name: str) -> T:
    return T(name, type=tarfile.DIRTYPE, mode=0o755)


# -- zips written by hand -----------------------------------------------------------------


@dataclass(frozen=True)
class Z:
    """One zip entry, written as given: `compressed` is a raw deflate stream to use
    instead of compressing `data`; `size` and `crc` are what the headers declare
    (by default, the truth about `data`)."""

    name: bytes | str
    data: bytes = b""
    mode: int = stat.S_IFREG | 0o644
    compressed: bytes | None = None
    size: int | None = None
    crc: int | None = None
    method: int = zipfile.ZIP_DEFLATED
    flags: int = 0


def zip_of(*entries: Z) -> bytes:
    """A zip holding `entries`, with the names, sizes and modes they declare, however
    wrong (zipfile's writer would normalize names and compute sizes)."""
    out = bytearray()
    central = bytearray()
    for entry in entries:
        name = entry.name.encode() if isinstance(entry.name, str) else entry.name
        flags = entry.flags | (0x800 if isinstance(entry.name, str) else 0)
        if entry.compressed is not None:
            body = entry.compressed
        elif entry.method == zipfile.ZIP_STORED:
            body = entry.data
        else:
            compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
            body = compressor.compress(entry.data) + compressor.flush()
        size = len(entry.data) if entry.size is None else entry.size
        crc = zlib.crc32(entry.data) if entry.crc is None else entry.crc
        offset = len(out)
        fields = (20, flags, entry.method, 0, 0x21, crc, len(body), size, len(name), 0)
        out += b"PK\x03\x04" + struct.pack("<HHHHHIIIHH", *fields) + name + body
        central += (
            b"PK\x01\x02"
            + struct.pack(
                "<HHHHHHIIIHHHHHII",
                (3 << 8) | 20,
                20,
                flags,
                entry.method,
                0,
                0x21,
                crc,
                len(body),
                size,
                len(name),
                0,
                0,
                0,
                0,
                (entry.mode & 0xFFFF) << 16,
                offset,
            )
            + name
        )
    start = len(out)
    out += central
    count = min(len(entries), 0xFFFF)  # past that, the count lies (zipfile ignores it)
    out += b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, count, count, len(central), start, 0)
    return bytes(out)


def zeros_deflated(mebibytes: int) -> bytes:
    """A raw deflate stream of `mebibytes` MiB of zeros (about 1 KiB per MiB), made
    without compressing them: after the first MiB, each MiB compresses to the same
    bytes, so they are repeated."""
    chunk = bytes(1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(chunk) + compressor.flush(zlib.Z_SYNC_FLUSH)
    repeat = compressor.compress(chunk) + compressor.flush(zlib.Z_SYNC_FLUSH)
    end = compressor.flush()
    return first + repeat * (mebibytes - 1) + end


def crc_of_zeros(mebibytes: int) -> int:
    crc = 0
    chunk = bytes(1 << 20)
    for _ in range(mebibytes):
        crc = zlib.crc32(chunk, crc)
    return crc


def zip_bomb(mebibytes: int, *, declared: int | None = None, members: int = 1) -> bytes:
    """A zip of `members` entries, each `mebibytes` MiB of zeros. By default the
    headers tell the truth; with `declared`, each claims that many bytes instead."""
    stream = zeros_deflated(mebibytes)
    crc = crc_of_zeros(mebibytes)
    return zip_of(
        *(
            Z(
                f"zeros-{index}",
                compressed=stream,
                size=(mebibytes << 20) if declared is None else declared,
                crc=crc,
            )
            for index in range(members)
        )
    )

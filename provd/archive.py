"""Template source archives: check an upload member by member and store one canonical tar.

Daemons receive the archive as a tar (`AcquiredJob.template_source_archive`), so that
is the only form stored. Whatever arrives (a tar, or a zip converted here) is read
member by member, checked against the rules of docs/archives.md, and written out again
as a fresh tar that holds only directories, regular files, symbolic links and hard
links, with no owners and mtime 0. A daemon therefore receives exactly what was
checked: no header that another tar reader might understand differently, nothing after
the end. The same archive always gives the same tar, hence the same content hash.

Unpacking is bounded: the sizes an archive declares are checked against the limit
before anything is decompressed, members are copied in chunks, and the tar being
written stops at `max_bytes`, whatever the archive declares.

`read_archive` and `pack_directory` are the client's side (what `provd files upload`
sends); `pack_directory` refuses to pack what the server would refuse.

This module is shared by the server and the client CLI: it imports nothing of the
server, only `provd.errors` and the standard library.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import stat
import struct
import tarfile
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from provd.errors import InvalidArgument, ResourceExhausted

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
# Compressed streams that are not archives themselves (a .tar.gz sent as it is).
_COMPRESSED_MAGIC = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
}

# The client's bound when nothing else is said: the server's default upload limit
# (provd.protocol.UPLOAD_MAX_BYTES; not imported, this module imports no server code).
DEFAULT_MAX_BYTES = 100 * 1024 * 1024

MAX_PATH_BYTES = 4096
MAX_COMPONENT_BYTES = 255
MAX_DEPTH = 256
MAX_SYMLINK_HOPS = 40
# Path components walked to resolve all of an archive's symbolic links together.
MAX_RESOLVE_STEPS = 4_000_000
_BLOCK = tarfile.BLOCKSIZE
_COPY_CHUNK = 64 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FILE_MODE_BITS = 0o777

Kind = Literal["dir", "file", "symlink", "hardlink"]
_KIND_NAMES = {
    "dir": "directory",
    "file": "regular file",
    "symlink": "symbolic link",
    "hardlink": "hard link",
}


class ArchiveError(Exception):
    """The archive, or one member of it, breaks a rule. `member` is the member's name
    as the archive spells it (None for the archive as a whole)."""

    def __init__(self, member: str | None, reason: str) -> None:
        super().__init__(reason)
        self.member = member
        self.reason = reason

    def describe(self) -> str:
        if self.member is None:
            return self.reason
        return f"member {_shown(self.member)}: {self.reason}"


class ArchiveTooLarge(Exception):
    """Unpacking would pass the limit: at least `at_least` bytes of tar, over `limit`."""

    def __init__(self, at_least: int, limit: int) -> None:
        super().__init__(f"the archive unpacks to at least {at_least} bytes; the limit is {limit}")
        self.at_least = at_least
        self.limit = limit


# -- the server's side ------------------------------------------------------------------


def normalize_archive(data: bytes, mimetype: str, max_bytes: int | None = None) -> bytes:
    """The canonical tar to store for an upload of `data` declared as `mimetype`.

    An empty mimetype means: sniff (zip by its magic number, tar otherwise). Raises
    `InvalidArgument` naming the field (and the member) for anything not accepted,
    and `ResourceExhausted` as soon as the tar would pass `max_bytes`.
    """
    if mimetype not in _ACCEPTED:
        raise InvalidArgument(f"mimetype: {mimetype!r} is not accepted; use {TAR!r} or {ZIP!r}")
    if not data:
        raise InvalidArgument("data: the archive is empty")
    kind = _ACCEPTED[mimetype] or (ZIP if data.startswith(_ZIP_MAGIC) else TAR)
    try:
        return canonical_tar(data, kind, max_bytes)
    except ArchiveError as error:
        raise InvalidArgument(f"data: {error.describe()}") from None
    except ArchiveTooLarge as error:
        raise ResourceExhausted(f"data: {error}") from None


def canonical_tar(data: bytes, kind: str, max_bytes: int | None = None) -> bytes:
    """`data` (a tar or a zip, as `kind` says) checked and rewritten as the canonical
    tar. Raises `ArchiveError` or `ArchiveTooLarge`."""
    if kind == ZIP:
        with _open_zip(data, max_bytes) as source:
            members = sorted(_zip_members(source), key=lambda m: m.name)
            return _write(members, max_bytes)
    _refuse_compressed(data)
    with _open_tar(data) as source:
        return _write(list(_tar_members(source, data)), max_bytes)


# -- what every member becomes ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Member:
    raw: str  # the name as the archive spells it, for messages
    name: str  # normalized: relative, '/'-separated, no '.', '..' or empty components
    kind: Kind
    mode: int
    size: int = 0  # regular files: the declared size of the content
    link: str = ""  # symbolic links: the target as given; hard links: a member's name
    content: Callable[[], IO[bytes]] | None = None


def _shown(name: str) -> str:
    return repr(name if len(name) <= 200 else name[:200] + "…")


def member_name(raw: str) -> str | None:
    """`raw` as a relative, normalized path; None for the archive's root (`.`, `./`).
    Raises `ArchiveError` for names a daemon could not unpack safely everywhere."""
    _check_path_text(raw, raw, "its name")
    if raw.startswith("/"):
        raise ArchiveError(raw, "its path is absolute")
    parts = [part for part in raw.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(raw, "its path climbs out of the archive ('..')")
    if not parts:
        return None
    name = "/".join(parts)
    encoded = name.encode()
    if len(encoded) > MAX_PATH_BYTES:
        raise ArchiveError(raw, f"its path is longer than {MAX_PATH_BYTES} bytes")
    if len(parts) > MAX_DEPTH:
        raise ArchiveError(raw, f"its path is more than {MAX_DEPTH} levels deep")
    if max(map(len, encoded.split(b"/"))) > MAX_COMPONENT_BYTES:
        raise ArchiveError(raw, f"a name in its path is longer than {MAX_COMPONENT_BYTES} bytes")
    return name


def _check_path_text(text: str, member: str, what: str) -> None:
    """Rules shared by member names and symbolic link targets."""
    if not text:
        raise ArchiveError(member, f"{what} is empty")
    if "\x00" in text:
        raise ArchiveError(member, f"{what} contains a NUL byte")
    if _CONTROL.search(text):
        raise ArchiveError(member, f"{what} contains a control character")
    if "\\" in text:
        raise ArchiveError(member, f"{what} contains a backslash; use '/' between directories")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ArchiveError(member, f"{what} is not valid UTF-8") from None
    if _DRIVE.match(text):
        raise ArchiveError(member, f"{what} starts with a drive letter")


def _symlink_target(target: str, member: str) -> str:
    _check_path_text(target, member, "its link target")
    if target.startswith("/"):
        raise ArchiveError(member, f"symbolic link to the absolute path {_shown(target)}")
    if len(target.encode()) > MAX_PATH_BYTES:
        raise ArchiveError(member, f"its link target is longer than {MAX_PATH_BYTES} bytes")
    return target


class _Node:
    """One path of the archive: the member there (None for a directory that is only
    implied by deeper names) and the paths below it."""

    __slots__ = ("children", "member")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.member: _Member | None = None


class _Namespace:
    """The rules that involve more than one member: duplicates, what lies inside what,
    hard links to earlier files, where symbolic links lead. Members are kept in a tree
    of their path components, so that every check costs about the length of the names
    involved, however deep or many they are."""

    def __init__(self) -> None:
        self._root = _Node()
        self._symlinks: list[_Member] = []
        self._steps_left = MAX_RESOLVE_STEPS

    def add(self, member: _Member) -> bool:
        """Record `member`; False for a repeated directory (harmless, left out)."""
        node = self._root
        for part in member.name.split("/"):
            child = node.children.get(part)
            if child is None:
                child = node.children[part] = _Node()
            node = child
        previous = node.member
        if previous is not None:
            if previous.kind == "dir" and member.kind == "dir":
                return False
            raise ArchiveError(member.raw, "its path appears more than once in the archive")
        if member.kind == "hardlink":
            target = self._find(member.link)
            if target is None or target.kind != "file":
                raise ArchiveError(
                    member.raw,
                    f"hard link to {_shown(member.link)}, which is not a regular file"
                    " earlier in the archive",
                )
        node.member = member
        if member.kind == "symlink":
            self._symlinks.append(member)
        return True

    def _find(self, name: str) -> _Member | None:
        node: _Node | None = self._root
        for part in name.split("/"):
            node = node.children.get(part) if node is not None else None
        return node.member if node is not None else None

    def finish(self) -> None:
        """Check what needs every member: parents are directories, links stay inside."""
        pending = [self._root]
        while pending:
            node = pending.pop()
            if node.children and node.member is not None and node.member.kind != "dir":
                inside = _first_member(node)
                raise ArchiveError(
                    inside.raw,
                    f"it lies inside {_shown(node.member.name)}, which is a"
                    f" {_KIND_NAMES[node.member.kind]} in the archive, not a directory",
                )
            pending.extend(node.children.values())
        for link in self._symlinks:
            self._resolve(link)

    def _resolve(self, link: _Member) -> None:
        """Follow `link`'s target from its directory through the archive's own symbolic
        links, as a daemon's file system would; it must never climb above the root.
        Paths the archive does not hold are followed as plain directories."""
        outside = f"symbolic link to {_shown(link.link)} leads outside the archive"
        stack: list[_Node | None] = [self._root]
        for part in link.name.split("/")[:-1]:
            top = stack[-1]
            stack.append(top.children.get(part) if top is not None else None)
        pending = deque(link.link.split("/"))
        hops = 0
        while pending:
            self._steps_left -= 1
            if self._steps_left < 0:
                raise ArchiveError(
                    link.raw, "the archive's symbolic links take too many steps to follow"
                )
            part = pending.popleft()
            if part in ("", "."):
                continue
            if part == "..":
                if len(stack) == 1:
                    raise ArchiveError(link.raw, outside)
                stack.pop()
                continue
            top = stack[-1]
            child = top.children.get(part) if top is not None else None
            if child is not None and child.member is not None and child.member.kind == "symlink":
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise ArchiveError(
                        link.raw, f"symbolic link to {_shown(link.link)} never resolves (a loop)"
                    )
                pending.extendleft(reversed(child.member.link.split("/")))
                continue
            stack.append(child)


def _first_member(node: _Node) -> _Member:
    """A member somewhere below `node` (there is one: only members create nodes)."""
    while True:
        child = next(iter(node.children.values()))
        if child.member is not None:
            return child.member
        node = child


# -- writing the canonical tar ----------------------------------------------------------


def _tar_size(size: int) -> int:
    """What a member of `size` content bytes takes at least in a tar."""
    return _BLOCK + -(-size // _BLOCK) * _BLOCK


def _write(members: Iterable[_Member], max_bytes: int | None) -> bytes:
    """Check `members` together, then write them as the canonical tar."""
    namespace = _Namespace()
    kept = [member for member in members if namespace.add(member)]
    namespace.finish()
    if max_bytes is not None:
        declared = 2 * _BLOCK + sum(_tar_size(member.size) for member in kept)
        if declared > max_bytes:
            raise ArchiveTooLarge(declared, max_bytes)
    out = io.BytesIO()
    with tarfile.open(
        fileobj=out, mode="w:", format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict"
    ) as target:
        for member in kept:
            info = tarfile.TarInfo(member.name)
            info.mtime = 0
            info.mode = member.mode
            if max_bytes is not None and out.tell() + _tar_size(member.size) > max_bytes:
                raise ArchiveTooLarge(out.tell() + _tar_size(member.size), max_bytes)
            if member.kind == "file":
                assert member.content is not None
                info.size = member.size
                with member.content() as content:
                    target.addfile(info, _ExactReader(content, member))
                continue
            info.type = {
                "dir": tarfile.DIRTYPE,
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
            }[member.kind]
            info.linkname = member.link
            target.addfile(info)
    tar = out.getvalue()
    if max_bytes is not None and len(tar) > max_bytes:
        raise ArchiveTooLarge(len(tar), max_bytes)
    return tar


class _ExactReader:
    """A member's content as `tarfile.addfile` reads it (exactly the declared size, in
    chunks): any shortfall or read error becomes an `ArchiveError` naming the member."""

    def __init__(self, source: IO[bytes], member: _Member) -> None:
        self._source = source
        self._member = member

    def read(self, size: int = _COPY_CHUNK) -> bytes:
        try:
            chunk = self._source.read(size)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as error:
            raise ArchiveError(self._member.raw, f"its data cannot be read ({error})") from None
        if len(chunk) < size:
            raise ArchiveError(self._member.raw, "its data is shorter than its declared size")
        return chunk


# -- reading a tar ----------------------------------------------------------------------

_TAR_PARSE_ERRORS = (
    tarfile.TarError,
    EOFError,
    ValueError,
    OverflowError,
    UnicodeError,
    OSError,
)


def _refuse_compressed(data: bytes) -> None:
    for magic, name in _COMPRESSED_MAGIC.items():
        if data.startswith(magic):
            raise ArchiveError(
                None, f"this is {name}-compressed data; upload the tar inside it, or a zip"
            )


def _open_tar(data: bytes) -> tarfile.TarFile:
    """`tarfile.open` on `data` (for a `with`), its failures as `ArchiveError`s."""
    try:
        return tarfile.open(
            fileobj=io.BytesIO(data), mode="r:", encoding="utf-8", errors="surrogateescape"
        )
    except _TAR_PARSE_ERRORS as error:
        raise ArchiveError(None, f"not a valid tar archive ({error})") from None


def _tar_members(source: tarfile.TarFile, data: bytes) -> Iterator[_Member]:
    """Each member of `source` (opened on `data`) as a `_Member`."""
    while True:
        try:
            info = source.next()
        except _TAR_PARSE_ERRORS as error:
            raise ArchiveError(None, f"not a valid tar archive ({error})") from None
        if info is None:
            break
        member = _tar_member(source, info, len(data))
        if member is not None:
            yield member
    # tarfile ends quietly at a damaged header after the first; refuse instead of
    # storing part of an archive. Only zero blocks may follow the last member.
    if data.count(0, source.offset) != len(data) - source.offset:
        raise ArchiveError(
            None, f"not a valid tar archive (unreadable data at byte {source.offset})"
        )


def _tar_member(source: tarfile.TarFile, info: tarfile.TarInfo, length: int) -> _Member | None:
    raw = info.name
    kind: Kind
    if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE) and not info.sparse:
        kind = "file"
        if info.offset_data + info.size > length:
            raise ArchiveError(raw, "its data runs past the end of the archive")
    elif info.type == tarfile.DIRTYPE:
        kind = "dir"
    elif info.type == tarfile.SYMTYPE:
        kind = "symlink"
    elif info.type == tarfile.LNKTYPE:
        kind = "hardlink"
    elif info.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        raise ArchiveError(raw, "device files are not accepted")
    elif info.type == tarfile.FIFOTYPE:
        raise ArchiveError(raw, "FIFOs are not accepted")
    elif info.type == tarfile.GNUTYPE_SPARSE or info.sparse:
        raise ArchiveError(raw, "sparse files are not accepted")
    else:
        raise ArchiveError(raw, f"member type {info.type!r} is not accepted")
    name = member_name(raw)
    if name is None:
        if kind != "dir":
            raise ArchiveError(raw, f"the archive's root is a {_KIND_NAMES[kind]}")
        return None
    mode = info.mode & _FILE_MODE_BITS
    if kind == "file":

        def content(info: tarfile.TarInfo = info) -> IO[bytes]:
            opened = source.extractfile(info)
            assert opened is not None  # a regular file always opens
            return opened

        return _Member(raw, name, kind, mode, size=info.size, content=content)
    if kind == "symlink":
        return _Member(raw, name, kind, mode, link=_symlink_target(info.linkname, raw))
    if kind == "hardlink":
        try:
            target = member_name(info.linkname)
        except ArchiveError as error:
            reason = error.reason.replace("its ", "the target's ", 1)
            raise ArchiveError(raw, f"hard link: {reason}") from None
        if target is None:
            raise ArchiveError(raw, "hard link to the archive's root")
        return _Member(raw, name, kind, mode, link=target)
    return _Member(raw, name, kind, mode)


# -- reading a zip ----------------------------------------------------------------------

_ZIP_PARSE_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    ValueError,
    EOFError,
    OSError,
    struct.error,
    NotImplementedError,
    RuntimeError,
    zlib.error,
)
_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_EOCD64 = b"PK\x06\x06"
_CENTRAL = b"PK\x01\x02"


def _open_zip(data: bytes, max_bytes: int | None) -> zipfile.ZipFile:
    """`zipfile.ZipFile` on `data` (for a `with`), its failures as `ArchiveError`s. With
    a limit, the central directory is counted first, so that a directory of a million
    empty entries is refused before a million entries are parsed."""
    if max_bytes is not None:
        entries = _count_zip_entries(data, (max_bytes - 2 * _BLOCK) // _BLOCK + 1)
        if 2 * _BLOCK + entries * _BLOCK > max_bytes:
            raise ArchiveTooLarge(2 * _BLOCK + entries * _BLOCK, max_bytes)
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except _ZIP_PARSE_ERRORS as error:
        raise ArchiveError(None, f"not a valid zip archive ({error})") from None


def _count_zip_entries(data: bytes, stop_at: int) -> int:
    """How many central directory records `data` holds, counting no further than
    `stop_at`; 0 when the directory cannot be found (zipfile then says why). The
    directory ends where the zip64 end record begins, if there is one, else at the
    end record; data prepended to the zip (a self-extractor) moves both alike."""
    end = data.rfind(_EOCD, max(0, len(data) - 22 - 0xFFFF))
    if end < 0 or end + 22 > len(data):
        return 0
    (size,) = struct.unpack_from("<I", data, end + 12)
    directory_end = end
    record = end - 20 - 56
    if (
        record >= 0
        and data[end - 20 : end - 16] == _EOCD64_LOCATOR
        and data[record : record + 4] == _EOCD64
    ):
        (size,) = struct.unpack_from("<Q", data, record + 40)
        directory_end = record
    count, position = 0, max(directory_end - size, 0)
    while count < stop_at and data[position : position + 4] == _CENTRAL:
        if position + 46 > len(data):
            break
        name, extra, comment = struct.unpack_from("<HHH", data, position + 28)
        position += 46 + name + extra + comment
        count += 1
    return count


def _zip_members(source: zipfile.ZipFile) -> Iterator[_Member]:
    for info in source.infolist():
        member = _zip_member(source, info)
        if member is not None:
            yield member


def _zip_member(source: zipfile.ZipFile, info: zipfile.ZipInfo) -> _Member | None:
    raw = info.orig_filename  # before zipfile cut it at a NUL byte
    mode = info.external_attr >> 16
    file_type = stat.S_IFMT(mode)
    if info.flag_bits & 0x1:
        raise ArchiveError(raw, "encrypted members are not accepted")
    if info.compress_type not in _ZIP_METHODS:
        raise ArchiveError(
            raw, f"compression method {info.compress_type} is not accepted; use store or deflate"
        )
    kind: Kind
    if file_type == stat.S_IFLNK:
        kind = "symlink"
    elif file_type == stat.S_IFDIR or raw.endswith("/"):
        kind = "dir"
    elif file_type in (0, stat.S_IFREG):
        kind = "file"
    elif file_type in (stat.S_IFCHR, stat.S_IFBLK):
        raise ArchiveError(raw, "device files are not accepted")
    elif file_type == stat.S_IFIFO:
        raise ArchiveError(raw, "FIFOs are not accepted")
    elif file_type == stat.S_IFSOCK:
        raise ArchiveError(raw, "sockets are not accepted")
    else:
        raise ArchiveError(raw, f"file type {file_type:#o} is not accepted")
    name = member_name(raw)
    if name is None:
        if kind != "dir":
            raise ArchiveError(raw, f"the archive's root is a {_KIND_NAMES[kind]}")
        return None  # the root itself: nothing to create
    if kind == "dir":
        if info.file_size:
            raise ArchiveError(raw, "a directory entry with content")
        return _Member(raw, name, kind, 0o755)
    if kind == "symlink":
        if info.file_size > MAX_PATH_BYTES:
            raise ArchiveError(raw, f"its link target is longer than {MAX_PATH_BYTES} bytes")
        try:
            with source.open(info) as opened:
                target = opened.read(MAX_PATH_BYTES + 1).decode("utf-8")
        except UnicodeDecodeError:
            raise ArchiveError(raw, "its link target is not valid UTF-8") from None
        except _ZIP_PARSE_ERRORS as error:
            raise ArchiveError(raw, f"its data cannot be read ({error})") from None
        return _Member(raw, name, kind, 0o777, link=_symlink_target(target, raw))

    def content() -> IO[bytes]:
        try:
            return source.open(info)
        except _ZIP_PARSE_ERRORS as error:
            raise ArchiveError(raw, f"its data cannot be read ({error})") from None

    return _Member(
        raw, name, kind, mode & _FILE_MODE_BITS or 0o644, size=info.file_size, content=content
    )


# -- the client's side ------------------------------------------------------------------


def pack_directory(root: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """`root`'s contents as a tar that depends on nothing but the names, contents,
    executable bits and symlink targets: sorted names relative to `root`, mtime 0,
    no owners. Packing the same tree twice gives the same bytes, hence the same hash.
    Sockets, FIFOs and devices are left out. Raises ValueError, naming the path, for
    what the server would refuse (a symbolic link that leads outside `root`, a name
    that is not portable) and when the contents pass `max_bytes`."""
    out = io.BytesIO()
    total = 0
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
                total += _tar_size(path.stat().st_size)
                if total > max_bytes:
                    raise ValueError(f"{root}: the files add up to more than {max_bytes} bytes")
                content = path.read_bytes()
                member.size = len(content)
                member.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
                archive.addfile(member, io.BytesIO(content))
    packed = out.getvalue()
    try:
        canonical_tar(packed, TAR)
    except ArchiveError as error:
        shown = error.member if error.member is not None else "."
        raise ValueError(f"{root / shown}: {error.reason}") from None
    return packed


def _walk(root: Path) -> list[Path]:
    """Every path under `root` (not following symlinks), sorted by name."""
    found: list[Path] = []
    for directory, dirnames, filenames in os.walk(root):
        found.extend(Path(directory) / name for name in (*dirnames, *filenames))
    return sorted(found, key=lambda path: path.relative_to(root).as_posix())


def read_archive(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[bytes, str]:
    """What to upload for `path`: (data, mimetype). A directory is packed into a tar
    (`pack_directory`); a .zip is sent as a zip, a .tar.gz or .tgz is decompressed, and
    anything else is sent as it is for the server to recognise (tar or zip) and check.
    Raises OSError if it cannot be read, ValueError if a .gz file is not gzip or
    anything passes `max_bytes`."""
    if path.is_dir():
        return pack_directory(path, max_bytes), TAR
    if not path.is_file():  # a FIFO or a device would never end
        raise ValueError(f"{path}: not a file or a directory")
    with path.open("rb") as file:
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"{path}: the file is larger than {max_bytes} bytes")
    name = path.name.lower()
    if name.endswith(".zip"):
        return data, ZIP
    if name.endswith((".tar.gz", ".tgz")):
        return _gunzip(data, path, max_bytes), TAR
    if name.endswith(".tar"):
        return data, TAR
    return data, ""


def _gunzip(data: bytes, path: Path, max_bytes: int) -> bytes:
    """`data` decompressed in chunks, stopping as soon as it passes `max_bytes`."""
    out = io.BytesIO()
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            while chunk := stream.read(_COPY_CHUNK):
                out.write(chunk)
                if out.tell() > max_bytes:
                    raise ValueError(f"{path}: unpacks to more than {max_bytes} bytes")
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: not a gzip file ({exc})") from None
    return out.getvalue()

"""Archives from untrusted clients: hostile members are refused at upload, naming the
member, and unpacking stays within the size limit whatever the archive claims.

The rules are docs/archives.md's; `normalize_archive` is checked directly for each
of them (fast), and the server end to end for the refusals and the memory bound.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import stat
import tarfile
import tracemalloc
import zipfile
from pathlib import Path

import pytest
import trio
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from provd.archive import ZIP, normalize_archive, pack_directory, read_archive
from provd.client.connect import call, job_client
from provd.errors import InvalidArgument, ResourceExhausted
from provd.gen.provd.v1 import jobs_pb2 as pb
from tests.archives import (
    MAIN_TF,
    T,
    Z,
    directory,
    hardlink,
    make_tar,
    make_zip,
    symlink,
    tar_of,
    zip_bomb,
    zip_of,
)
from tests.conftest import ADMIN_TOKEN, Server
from tests.processes import start_server

MiB = 1 << 20
FILE = T("main.tf", b"# ok\n")

# (archive, the member the error must name, words the reason must contain)
HOSTILE_TARS = {
    "parent": (tar_of(T("../x", b"x")), "../x", "climbs out"),
    "parent deeper": (tar_of(T("a/../../x", b"x")), "a/../../x", "climbs out"),
    "parent harmless": (tar_of(T("a/../x", b"x")), "a/../x", "climbs out"),
    "absolute": (tar_of(T("/etc/cron.d/x", b"x")), "/etc/cron.d/x", "absolute"),
    "drive letter": (tar_of(T("C:/x", b"x")), "C:/x", "drive letter"),
    "backslash": (tar_of(T("..\\..\\x", b"x")), "..\\..\\x", "backslash"),
    "control character": (tar_of(T("a\nb", b"x")), "a\nb", "control character"),
    "NUL in a long name": (tar_of(T("a" * 120 + "\0b", b"x")), "a" * 120 + "\0b", "NUL"),
    "empty name": (tar_of(FILE, T("", b"x")), "", "empty"),
    "too deep": (tar_of(T("d/" * 300 + "x", b"x")), "d/" * 300 + "x", "levels deep"),
    "a long name": (tar_of(T("x" * 256, b"x")), "x" * 256, "longer than 255 bytes"),
    "symlink up": (tar_of(FILE, symlink("up", "../outside")), "up", "leads outside"),
    "symlink absolute": (tar_of(symlink("passwd", "/etc/passwd")), "passwd", "absolute"),
    "symlink deep": (tar_of(symlink("a/b", "../../x")), "a/b", "leads outside"),
    "symlink via a symlink": (
        tar_of(symlink("here", "."), symlink("escape", "here/..")),
        "escape",
        "leads outside",
    ),
    "symlink via a chain": (
        tar_of(directory("d"), symlink("d/parent", ".."), symlink("x", "d/parent/..")),
        "x",
        "leads outside",
    ),
    "symlink loop": (tar_of(symlink("a", "b"), symlink("b", "a/x")), "a", "loop"),
    "symlink empty": (tar_of(symlink("a", "")), "a", "empty"),
    "hard link up": (tar_of(hardlink("h", "../etc/passwd")), "h", "climbs out"),
    "hard link absolute": (tar_of(hardlink("h", "/etc/passwd")), "h", "absolute"),
    "hard link to no member": (tar_of(FILE, hardlink("h", "missing")), "h", "not a regular"),
    "hard link to a later member": (tar_of(hardlink("h", "main.tf"), FILE), "h", "earlier"),
    "hard link to a symlink": (
        tar_of(symlink("s", "main.tf"), hardlink("h", "s")),
        "h",
        "not a regular",
    ),
    "character device": (tar_of(T("tty", type=tarfile.CHRTYPE)), "tty", "device"),
    "block device": (tar_of(T("sda", type=tarfile.BLKTYPE)), "sda", "device"),
    "FIFO": (tar_of(T("pipe", type=tarfile.FIFOTYPE)), "pipe", "FIFO"),
    "sparse": (
        tar_of(T("holes", type=tarfile.GNUTYPE_SPARSE), format=tarfile.GNU_FORMAT),
        "holes",
        "sparse",
    ),
    "duplicate": (tar_of(FILE, T("main.tf", b"again")), "main.tf", "more than once"),
    "duplicate spelled otherwise": (tar_of(FILE, T("./main.tf", b"x")), "./main.tf", "more than"),
    "inside a symlink": (
        tar_of(directory("real"), symlink("link", "real"), T("link/x", b"x")),
        "link/x",
        "symbolic link",
    ),
    "inside a file": (tar_of(T("a", b"x"), T("a/b", b"y")), "a/b", "regular file"),
    "symlink to outside, then through it": (
        tar_of(symlink("out", "/tmp"), T("out/x", b"x")),
        "out",
        "absolute",
    ),
}

HOSTILE_ZIPS = {
    "parent": (zip_of(Z("../x", b"x")), "../x", "climbs out"),
    "absolute": (zip_of(Z("/etc/x", b"x")), "/etc/x", "absolute"),
    "drive letter": (zip_of(Z("C:\\Windows\\x", b"x")), "C:\\Windows\\x", "backslash"),
    "drive letter, slashes": (zip_of(Z("c:/x", b"x")), "c:/x", "drive letter"),
    "backslash parent": (zip_of(Z("..\\x", b"x")), "..\\x", "backslash"),
    "NUL byte": (zip_of(Z("evil\0.txt", b"x")), "evil\0.txt", "NUL"),
    "empty name": (zip_of(Z("", b"x")), "", "empty"),
    "duplicate": (zip_of(Z("a", b"1"), Z("a", b"2")), "a", "more than once"),
    "symlink up": (
        zip_of(Z("up", b"../../etc", mode=stat.S_IFLNK | 0o777)),
        "up",
        "leads outside",
    ),
    "symlink absolute": (
        zip_of(Z("passwd", b"/etc/passwd", mode=stat.S_IFLNK | 0o777)),
        "passwd",
        "absolute",
    ),
    "FIFO": (zip_of(Z("pipe", mode=stat.S_IFIFO | 0o644)), "pipe", "FIFO"),
    "device": (zip_of(Z("tty", mode=stat.S_IFCHR | 0o644)), "tty", "device"),
    "socket": (zip_of(Z("sock", mode=stat.S_IFSOCK | 0o644)), "sock", "socket"),
    "encrypted": (zip_of(Z("secret", b"x", flags=0x1)), "secret", "encrypted"),
    "lzma": (zip_of(Z("big", b"x", method=zipfile.ZIP_LZMA)), "big", "compression method"),
    "inside a symlink": (
        zip_of(Z("link", b"d", mode=stat.S_IFLNK | 0o777), Z("link/x", b"x")),
        "link/x",
        "symbolic link",
    ),
}


def named(member: str) -> str:
    """How an error names `member`: quoted, and cut after 200 characters."""
    return repr(member if len(member) <= 200 else member[:200] + "…")


def refusal(data: bytes, mimetype: str = "") -> str:
    with pytest.raises(InvalidArgument) as caught:
        normalize_archive(data, mimetype, 1 * MiB)
    return str(caught.value)


@pytest.mark.parametrize("case", HOSTILE_TARS)
def test_hostile_tar_members_are_refused_by_name(case: str) -> None:
    data, member, reason = HOSTILE_TARS[case]
    message = refusal(data)
    assert message.startswith(f"data: member {named(member)}: "), message
    assert reason in message


@pytest.mark.parametrize("case", HOSTILE_ZIPS)
def test_hostile_zip_members_are_refused_by_name(case: str) -> None:
    data, member, reason = HOSTILE_ZIPS[case]
    message = refusal(data, ZIP)
    assert message.startswith(f"data: member {named(member)}: "), message
    assert reason in message


def members(tar: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        return {info.name: info for info in archive.getmembers()}


def test_safe_archives_are_kept_and_written_canonically() -> None:
    # `tar -C dir -cf - .` names everything under "./", the root included.
    upload = tar_of(
        directory("./"),
        T("./main.tf", b"# main\n", mode=0o4755),
        directory("./modules"),
        directory("./modules"),  # a repeated directory is harmless
        T("./modules/net.tf", b"# net\n"),
        symlink("./modules/main.tf", "../main.tf"),
        symlink("./dangling", "not/yet/there"),
        symlink("./here", "."),
        symlink("./again", "here/modules/../main.tf"),
        hardlink("./copy.tf", "./main.tf"),
    )
    stored = members(normalize_archive(upload, "", 1 * MiB))
    assert list(stored) == [
        "main.tf",
        "modules",
        "modules/net.tf",
        "modules/main.tf",
        "dangling",
        "here",
        "again",
        "copy.tf",
    ]
    assert stored["main.tf"].mode == 0o755  # no setuid bit
    assert stored["modules/main.tf"].linkname == "../main.tf"
    assert stored["copy.tf"].islnk() and stored["copy.tf"].linkname == "main.tf"
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in stored.values()} == {
        (0, 0, "", "", 0)
    }


def test_canonical_tars_are_stored_as_they_are(tmp_path: Path) -> None:
    tar = make_tar(MAIN_TF)
    assert normalize_archive(tar, "") == tar
    (tmp_path / "main.tf").write_text("# main\n")
    (tmp_path / "link.tf").symlink_to("main.tf")
    packed = pack_directory(tmp_path)
    assert normalize_archive(packed, "") == packed


def test_zip_symlinks_become_tar_symlinks() -> None:
    data = zip_of(Z("main.tf", b"# main\n"), Z("link.tf", b"main.tf", mode=stat.S_IFLNK | 0o777))
    stored = members(normalize_archive(data, ZIP, 1 * MiB))
    assert stored["link.tf"].issym() and stored["link.tf"].linkname == "main.tf"


def test_archive_level_damage_is_refused() -> None:
    tar = make_tar(MAIN_TF)
    assert "unreadable data" in refusal(tar + b"more data after the end")
    damaged = bytearray(make_tar({"a": b"1", "b": b"2"}))
    damaged[1024 + 148 : 1024 + 156] = b"0000000\0"  # the second header's checksum
    assert "not a valid tar archive" in refusal(bytes(damaged))
    assert "gzip-compressed" in refusal(gzip.compress(tar))
    truncated = make_tar({"big": b"x" * 4096})[:1024]
    assert "past the end" in refusal(truncated)
    assert "not a valid zip" in refusal(make_zip(MAIN_TF)[:-30], ZIP)


def test_a_zip_whose_data_is_shorter_or_wrong_is_refused() -> None:
    assert "cannot be read" in refusal(zip_of(Z("a", b"hello", crc=1234)), ZIP)
    lying = zip_of(Z("a", b"hello", size=1000))
    assert "member 'a'" in refusal(lying, ZIP)


# -- the size limit holds while unpacking ----------------------------------------------------

LIMIT = 1 * MiB
# What unpacking may allocate beyond the archive it was given: the tar being written
# (up to the limit), zlib's buffers and chunks. The old code read members whole:
# the 64 MiB bombs below cost it more than 128 MiB.
MEMORY_BOUND = 4 * LIMIT


def peak_allocated(run: object) -> int:
    assert callable(run)
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


BOMBS = {
    "one member that declares its size": lambda: zip_bomb(64),
    "one member that declares 1 KiB": lambda: zip_bomb(64, declared=1024),
    "one member that declares nothing": lambda: zip_bomb(64, declared=0),
    "many members, each under the limit": lambda: zip_bomb(1, members=64),
    "many members that declare 1 KiB": lambda: zip_bomb(1, declared=1024, members=64),
    "a hundred thousand empty members": lambda: zip_of(*(Z(f"{i}") for i in range(100_000))),
    "seventy thousand members, zip64": lambda: zip64_of_empty_members(70_000),
}


def zip64_of_empty_members(count: int) -> bytes:
    """zipfile's own zip64 layout (its end record points to a zip64 one)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for index in range(count):
            archive.writestr(f"{index}", b"")
    return out.getvalue()


@pytest.mark.parametrize("case", BOMBS)
def test_unpacking_stays_within_the_limit(case: str) -> None:
    bomb = BOMBS[case]()

    def unpack() -> None:
        try:
            stored = normalize_archive(bomb, ZIP, LIMIT)
        except (ResourceExhausted, InvalidArgument):
            return
        assert len(stored) <= LIMIT

    assert peak_allocated(unpack) < MEMORY_BOUND


def test_a_declared_gigabyte_is_refused_before_any_unpacking() -> None:
    bomb = zip_bomb(1024)
    with pytest.raises(ResourceExhausted, match="unpacks to at least 1073"):
        normalize_archive(bomb, ZIP, LIMIT)


def test_a_tar_bomb_is_refused_too() -> None:
    # Tars are not compressed: what they declare must lie inside the upload.
    header = tarfile.TarInfo("huge")
    header.size = 1 << 40
    forged = header.tobuf(tarfile.PAX_FORMAT) + bytes(1024)
    assert "past the end" in refusal(forged)


async def test_the_server_refuses_hostile_archives_naming_the_member(server: Server) -> None:
    client = job_client(server.url, ADMIN_TOKEN)
    cases = [*HOSTILE_TARS.values(), *HOSTILE_ZIPS.values()]
    for data, member, reason in cases:
        with pytest.raises(ConnectError) as caught:
            await call(client.upload_file, pb.UploadFileRequest(data=data))
        assert caught.value.code == Code.INVALID_ARGUMENT, (member, caught.value.message)
        assert caught.value.message.startswith(f"data: member {named(member)}: ")
        assert reason in caught.value.message


async def test_the_server_unpacks_a_bomb_within_the_limit(server: Server) -> None:
    client = job_client(server.url, ADMIN_TOKEN)
    limit = server.settings.limits.upload_max_bytes
    for bomb in (zip_bomb(64), zip_bomb(64, declared=1024), zip_bomb(1, members=64)):
        tracemalloc.start()
        try:
            with pytest.raises(ConnectError) as caught:
                await call(client.upload_file, pb.UploadFileRequest(data=bomb))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert caught.value.code in (Code.RESOURCE_EXHAUSTED, Code.INVALID_ARGUMENT)
        assert peak < 4 * limit + 8 * MiB, peak


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
async def test_a_gigabyte_bomb_leaves_the_server_process_small(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """The issue's own case, in a real `provd serve` with its default limit (100 MiB):
    a 1 MiB zip of 1 GiB of zeros, honest or lying about its size."""
    process = await start_server(nursery, tmp_path / "provd.db")
    pid = process.process.pid
    client = job_client(process.url, ADMIN_TOKEN)
    try:
        await call(client.upload_file, pb.UploadFileRequest(data=make_tar(MAIN_TF)))
        before = rss_kib(pid, "VmHWM")
        for bomb in (zip_bomb(1024), zip_bomb(1024, declared=4096)):
            with pytest.raises(ConnectError) as caught:
                await call(client.upload_file, pb.UploadFileRequest(data=bomb))
            assert caught.value.code in (Code.RESOURCE_EXHAUSTED, Code.INVALID_ARGUMENT)
        grown = rss_kib(pid, "VmHWM") - before
        assert grown < 64 * 1024, f"peak RSS grew by {grown} KiB"
    finally:
        process.signal(2)
        await process.wait()


# -- the client's side ------------------------------------------------------------------------


def test_pack_directory_refuses_links_that_leave_the_directory(tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text("# main\n")
    (tmp_path / "inside.tf").symlink_to("main.tf")
    pack_directory(tmp_path)
    (tmp_path / "outside").symlink_to("/etc/passwd")
    with pytest.raises(ValueError, match=r"outside: symbolic link to the absolute path"):
        pack_directory(tmp_path)
    os.unlink(tmp_path / "outside")
    (tmp_path / "up").symlink_to("../elsewhere")
    leads_out = re.escape("up: symbolic link to '../elsewhere' leads outside")
    with pytest.raises(ValueError, match=leads_out):
        pack_directory(tmp_path)


def test_pack_directory_leaves_out_fifos(tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text("# main\n")
    os.mkfifo(tmp_path / "pipe")
    assert list(members(pack_directory(tmp_path))) == ["main.tf"]


def test_read_archive_unpacks_a_tgz_within_its_limit(tmp_path: Path) -> None:
    path = tmp_path / "bomb.tar.gz"
    with gzip.open(path, "wb", compresslevel=1) as out:
        for _ in range(8):
            out.write(bytes(MiB))
    with pytest.raises(ValueError, match="unpacks to more than"):
        read_archive(path, max_bytes=MiB)
    (tmp_path / "ok.tgz").write_bytes(gzip.compress(make_tar(MAIN_TF)))
    assert read_archive(tmp_path / "ok.tgz") == (make_tar(MAIN_TF), "application/x-tar")


def test_read_archive_refuses_what_never_ends(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.tar")
    with pytest.raises(ValueError, match="not a file or a directory"):
        read_archive(tmp_path / "pipe.tar")
    (tmp_path / "big.tar").write_bytes(bytes(2 * MiB))
    with pytest.raises(ValueError, match="larger than"):
        read_archive(tmp_path / "big.tar", max_bytes=MiB)

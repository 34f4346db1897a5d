"""put_file, get_file_info and get_file_data: content-addressed template archives."""

from __future__ import annotations

import hashlib

from provd.model import StoredFile
from provd.store import Store

from .conftest import Clock
from .support import ARCHIVE, TAR

MISSING = hashlib.sha256(b"never stored").hexdigest()


class TestPutFile:
    async def test_returns_hash_size_mimetype_and_time(self, store: Store, clock: Clock) -> None:
        """put_file answers the data's SHA-256 in hex, its size, mimetype and when."""
        stored = await store.put_file(ARCHIVE, TAR)
        assert stored == StoredFile(hashlib.sha256(ARCHIVE).hexdigest(), len(ARCHIVE), TAR, clock())

    async def test_same_bytes_again_is_a_noop(self, store: Store, clock: Clock) -> None:
        """Storing identical bytes again returns the first record, mimetype and time
        included, and keeps the data."""
        first = await store.put_file(ARCHIVE, TAR)
        clock.advance()
        second = await store.put_file(ARCHIVE, "application/zip")
        assert second == first
        assert await store.get_file_info(first.hash) == first
        assert await store.get_file_data(first.hash) == ARCHIVE

    async def test_empty_file(self, store: Store) -> None:
        """Zero bytes are a file like any other."""
        stored = await store.put_file(b"", TAR)
        assert (stored.hash, stored.size) == (hashlib.sha256(b"").hexdigest(), 0)
        assert await store.get_file_data(stored.hash) == b""


class TestGetFileInfo:
    async def test_returns_what_put_file_stored(self, store: Store) -> None:
        stored = await store.put_file(ARCHIVE, TAR)
        other = await store.put_file(b"another archive", "application/zip")
        assert await store.get_file_info(stored.hash) == stored
        assert await store.get_file_info(other.hash) == other

    async def test_unknown_hash_is_none(self, store: Store) -> None:
        await store.put_file(ARCHIVE, TAR)
        assert await store.get_file_info(MISSING) is None


class TestGetFileData:
    async def test_round_trips_the_bytes(self, store: Store) -> None:
        """get_file_data returns exactly the bytes put_file stored, as bytes."""
        data = bytes(range(256)) * 1000
        stored = await store.put_file(data, "application/octet-stream")
        got = await store.get_file_data(stored.hash)
        assert type(got) is bytes
        assert got == data

    async def test_unknown_hash_is_none(self, store: Store) -> None:
        await store.put_file(ARCHIVE, TAR)
        assert await store.get_file_data(MISSING) is None

"""Stored files kept in memory for the jobs that use them next.

A file is stored under the SHA-256 of its bytes and never changes, so what was read
once stays true: CreateJob checks a file's size without a trip to the store, and a
job handed to a daemon gets its archive without one, when the same template was used
recently (or just uploaded). Entries may outlive the stored file (retention deletes
files no job references); the store still refuses a job whose file is gone, and a
job's own file is never deleted while the job exists.
"""

from __future__ import annotations

from collections import OrderedDict

from provd.model import StoredFile
from provd.store import Store

# Archives kept, in bytes: a few dozen templates of typical size.
DATA_BUDGET_BYTES = 32 * 1024 * 1024
# No single archive takes more than this share of the budget.
LARGEST_SHARE = 4
# File descriptions kept (a few hundred bytes each).
INFO_ENTRIES = 4096


class FileCache:
    """Read-through, least-recently-used caches of file descriptions and archives."""

    def __init__(self, store: Store, data_budget_bytes: int = DATA_BUDGET_BYTES) -> None:
        self._store = store
        self._data_budget = data_budget_bytes
        self._data_bytes = 0
        self._infos: OrderedDict[str, StoredFile] = OrderedDict()
        self._data: OrderedDict[str, bytes] = OrderedDict()

    async def info(self, file_hash: str) -> StoredFile | None:
        """The file's description, or None if it is not stored."""
        if (cached := self._infos.get(file_hash)) is not None:
            self._infos.move_to_end(file_hash)
            return cached
        info = await self._store.get_file_info(file_hash)
        if info is not None:
            self._keep_info(info)
        return info

    async def data(self, file_hash: str) -> bytes | None:
        """The file's bytes, or None if it is not stored."""
        if (cached := self._data.get(file_hash)) is not None:
            self._data.move_to_end(file_hash)
            return cached
        data = await self._store.get_file_data(file_hash)
        if data is not None:
            self._keep_data(file_hash, data)
        return data

    def stored(self, info: StoredFile, data: bytes) -> None:
        """`data` was just stored as `info`: the next job that uses it finds it here."""
        self._keep_info(info)
        self._keep_data(info.hash, data)

    def _keep_info(self, info: StoredFile) -> None:
        self._infos[info.hash] = info
        self._infos.move_to_end(info.hash)
        while len(self._infos) > INFO_ENTRIES:
            self._infos.popitem(last=False)

    def _keep_data(self, file_hash: str, data: bytes) -> None:
        if len(data) * LARGEST_SHARE > self._data_budget or file_hash in self._data:
            return
        self._data[file_hash] = data
        self._data_bytes += len(data)
        while self._data_bytes > self._data_budget:
            _, dropped = self._data.popitem(last=False)
            self._data_bytes -= len(dropped)

"""A small pool of read-only SQLite connections used from trio worker threads."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import TypeVar

import trio

from provd.errors import StoreClosed

T = TypeVar("T")


class ReaderPool:
    """Read-only connections, each used by one worker thread at a time.

    Each read runs in its own transaction, so every statement of one read sees the
    same snapshot; WAL lets reads proceed while the writer commits.
    """

    def __init__(self, connections: list[sqlite3.Connection]) -> None:
        self._idle = connections
        for conn in self._idle:
            conn.execute("PRAGMA query_only = ON")
        self._lock = threading.Lock()
        self._limiter = trio.CapacityLimiter(len(connections))
        self._closed = False

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await trio.to_thread.run_sync(self._run, fn, limiter=self._limiter)

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            if self._closed:
                raise StoreClosed("the store is shutting down")
            conn = self._idle.pop()
        try:
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("ROLLBACK")
        finally:
            with self._lock:
                if self._closed:
                    conn.close()
                else:
                    self._idle.append(conn)

    def close(self) -> None:
        """Close idle connections now; one still in use closes when its read ends."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

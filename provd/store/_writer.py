"""One thread owns SQLite's single write connection; trio tasks hand it work.

Writes queue up while a transaction commits, and the next transaction runs all of
them (group commit): with `synchronous=FULL` the fsync per commit is the cost
that matters, and it is shared by every write in the batch. In a batch of several,
each write runs in a savepoint, so one that raises is rolled back alone and reports
its own error; a write alone in its batch is its own transaction. The batch's
results go back to trio in one wake-up of the loop.

A failure of the transaction itself (BEGIN, COMMIT, or SQLite rolling everything back
on a full disk or an I/O error) fails every write of the batch, since none of them
was stored; `translate` turns such errors into what callers should see (`StoreFull`).
The thread never dies of a failed batch and never leaves a transaction open, so the
next batch starts clean: when the disk has room again, writes simply succeed.

Every statement run here holds the GIL while Python works on it, and the GIL is
shared with the trio loop that serves the requests: fewer statements per write
(see `_sql_jobs`) are worth more than they seem.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import outcome
import trio

from provd.errors import StoreClosed

T = TypeVar("T")

logger = logging.getLogger(__name__)

# Enough to amortize an fsync, small enough to keep a transaction short.
MAX_BATCH = 64


@dataclass(eq=False, slots=True)
class _Write(Generic[T]):
    fn: Callable[[sqlite3.Connection], T]
    token: trio.lowlevel.TrioToken
    done: trio.Event = field(default_factory=trio.Event)
    result: outcome.Outcome[T] | None = None

    def deliver(self, result: outcome.Outcome[T]) -> None:
        """Called on the writer thread: hand the result to the waiting task."""
        self.result = result
        self.token.run_sync_soon(self.done.set)


class Writer:
    """Serializes writes on one connection; `run` is the thread's body."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        translate: Callable[[BaseException], BaseException] = lambda error: error,
        *,
        process_lock: AbstractContextManager[None] | None = None,
    ) -> None:
        """`translate` maps an error of a write to the one its caller gets;
        `process_lock` is held around each transaction, to take turns with the other
        processes writing to the same file (`_write_lock.WriteLock`)."""
        self._conn = conn
        self._translate = translate
        self._process_lock = process_lock or contextlib.nullcontext()
        self._queue: queue.SimpleQueue[_Write[Any] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        # Told of each batch, on this thread: (seconds the transaction took, writes).
        self.on_commit: Callable[[float, int], None] | None = None

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in a write transaction and return what it returned.

        Once queued, a write runs to its end even if the caller is cancelled: the
        caller then learns its outcome, so a claimed job can never be lost between
        the database and the task that claimed it.
        """
        item = _Write(fn, trio.lowlevel.current_trio_token())
        with self._lock:
            if self._closed:
                raise StoreClosed("the store is shutting down")
            self._queue.put(item)
        with trio.CancelScope(shield=True):
            await item.done.wait()
        assert item.result is not None
        return item.result.unwrap()

    def stop(self) -> None:
        """Ask the thread to finish the queued writes and exit. Non-blocking."""
        self._queue.put(None)

    def run(self) -> None:
        """The writer thread: take batches until `stop`, then refuse the rest."""
        stopping = False
        while not stopping:
            batch: list[_Write[Any]] = []
            item = self._queue.get()
            while item is not None:
                batch.append(item)
                if len(batch) >= MAX_BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            else:
                stopping = True
            if batch:
                self._commit(batch)
        with self._lock:
            self._closed = True
        while True:
            try:
                leftover = self._queue.get_nowait()
            except queue.Empty:
                break
            if leftover is not None:
                leftover.deliver(outcome.Error(StoreClosed("the store is shutting down")))

    def _commit(self, batch: list[_Write[Any]]) -> None:
        """Run `batch` in one transaction and deliver every write's outcome, whatever
        fails: an exception escaping here would kill the thread and leave its callers
        waiting forever."""
        started = time.perf_counter()
        try:
            self._rollback()  # a transaction a failed batch could not end
            with self._process_lock:
                results = self._transaction(batch)
        except Exception as error:
            # The transaction failed as a whole: none of the batch was stored.
            self._rollback()
            results = [outcome.Error(error) for _ in batch]
        elapsed = time.perf_counter() - started
        _deliver(batch, [self._translated(result) for result in results])
        if self.on_commit is not None:
            try:
                self.on_commit(elapsed, len(batch))
            except Exception:
                logger.exception("the commit observer failed")

    def _transaction(self, batch: list[_Write[Any]]) -> list[outcome.Outcome[Any]]:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        if len(batch) == 1:
            # Alone in its transaction, a write needs no savepoint: if it fails,
            # rolling the transaction back undoes exactly that write.
            result = outcome.capture(batch[0].fn, conn)
            if isinstance(result, outcome.Error):
                self._rollback()
            else:
                conn.execute("COMMIT")
            return [result]
        results: list[outcome.Outcome[Any]] = []
        for item in batch:
            conn.execute("SAVEPOINT write")
            result = outcome.capture(item.fn, conn)
            if isinstance(result, outcome.Error):
                if not conn.in_transaction:
                    # SQLite rolled the whole transaction back (a full disk, an I/O
                    # error): the batch's earlier writes are undone too.
                    return [outcome.Error(result.error) for _ in batch]
                conn.execute("ROLLBACK TO write")
            conn.execute("RELEASE write")
            results.append(result)
        conn.execute("COMMIT")
        return results

    def _rollback(self) -> None:
        """End the open transaction, if any; never raises (the next batch tries again)."""
        if not self._conn.in_transaction:
            return
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            logger.exception("rolling back a failed write transaction failed")

    def _translated(self, result: outcome.Outcome[Any]) -> outcome.Outcome[Any]:
        if isinstance(result, outcome.Error):
            error = self._translate(result.error)
            if error is not result.error:
                return outcome.Error(error)
        return result


def _deliver(batch: list[_Write[Any]], results: list[outcome.Outcome[Any]]) -> None:
    """Hand a batch's results to their tasks: one wake-up of each trio loop per batch,
    not one per write."""
    done: dict[trio.lowlevel.TrioToken, list[trio.Event]] = {}
    for item, result in zip(batch, results, strict=True):
        item.result = result
        done.setdefault(item.token, []).append(item.done)
    for token, events in done.items():
        token.run_sync_soon(_set_all, events)


def _set_all(events: list[trio.Event]) -> None:
    for event in events:
        event.set()

"""Which provisioner daemons exist, which are connected and which are stale.

Identities are upserted into the store the first time a process sees them (or
when their capabilities change); last-seen times are kept in memory and flushed
every few seconds, so a heartbeat never costs a write of its own.

What ListDaemons reports (docs/daemon-protocol.md), with `quiet` meaning "not seen
(no call of any kind) for three heartbeat intervals":

- connected: holding a stream open to provd, or running a job and not quiet. A daemon
  leaves its acquire stream when it gets a job and reports on it with UpdateJob; it is
  still connected while it does.
- stale: no stream open and quiet, whether or not it still holds a job.
- neither ("idle"): no stream and no job, but not quiet (say, between two streams).

Never both: connected needs an open stream (then the daemon is seen now) or not
being quiet. A daemon holding a job that stops reporting is stale, not connected.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import trio

from provd.errors import StoreClosed, StoreFull, tolerate_full_disk
from provd.model import Daemon, now_ms
from provd.store import Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DaemonView:
    daemon: Daemon
    created_at: int
    last_seen_at: int
    current_job_id: str
    # In contact: a stream open, or a job and calls within the stale interval.
    connected: bool
    # No stream open and not seen for three heartbeat intervals.
    stale: bool


class DaemonRegistry:
    """Tracks daemons as they call in. Run `run` in a nursery to flush last-seen times."""

    def __init__(
        self,
        store: Store,
        *,
        heartbeat_interval: float = 10.0,
        flush_interval: float = 5.0,
        now: Callable[[], int] = now_ms,
    ) -> None:
        """`now` is the clock of last-seen times, in Unix milliseconds (a test passes
        one that follows trio's virtual clock)."""
        self._store = store
        self._now = now
        self._known: dict[str, Daemon] = {}
        self._last_seen: dict[str, int] = {}
        self._dirty: dict[str, int] = {}
        self._connected: Counter[str] = Counter()
        # A daemon not seen for three heartbeat intervals is stale.
        self.stale_after_ms = int(3 * heartbeat_interval * 1000)
        self._flush_interval = flush_interval

    async def seen(self, daemon: Daemon) -> None:
        """Record a call from `daemon`; store its identity if it is new or changed."""
        now = self._now()
        self._last_seen[daemon.id] = now
        self._dirty[daemon.id] = now
        if self._known.get(daemon.id) != daemon:
            await self._store.upsert_daemon(daemon)
            self._known[daemon.id] = daemon

    @contextmanager
    def connected(self, daemon: Daemon) -> Iterator[None]:
        """While the block runs, `daemon` holds a stream open and counts as seen."""
        self._connected[daemon.id] += 1
        try:
            yield
        finally:
            self._connected[daemon.id] -= 1
            if not self._connected[daemon.id]:
                del self._connected[daemon.id]
            self._last_seen[daemon.id] = self._dirty[daemon.id] = self._now()

    def live_daemons(self) -> list[Daemon]:
        """Daemons this process knows that are not stale: holding a stream open now or
        seen within the stale interval (what routing and the pending reason go by)."""
        cutoff = self._now() - self.stale_after_ms
        return [
            daemon
            for daemon_id, daemon in self._known.items()
            if daemon_id in self._connected or self._last_seen.get(daemon_id, 0) >= cutoff
        ]

    async def list(self) -> list[DaemonView]:
        records = await self._store.list_daemons()
        running = await self._store.running_jobs_by_daemon()
        now = self._now()
        views = []
        for record in records:
            daemon_id = record.daemon.id
            streaming = daemon_id in self._connected
            last_seen = (
                now if streaming else max(record.last_seen_at, self._last_seen.get(daemon_id, 0))
            )
            current_job_id = running.get(daemon_id, "")
            quiet = now - last_seen > self.stale_after_ms
            views.append(
                DaemonView(
                    daemon=record.daemon,
                    created_at=record.created_at,
                    last_seen_at=last_seen,
                    current_job_id=current_job_id,
                    connected=streaming or (bool(current_job_id) and not quiet),
                    stale=not streaming and quiet,
                )
            )
        return views

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Flush last-seen times to the store every few seconds, and once more on exit."""
        task_status.started()
        try:
            while True:
                await trio.sleep(self._flush_interval)
                with tolerate_full_disk(logger, "the daemon registry"):
                    await self._flush()
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await self._flush()
                except (StoreClosed, StoreFull) as error:
                    logger.warning("last-seen times were not saved at exit: %s", error)

    async def _flush(self) -> None:
        for daemon_id in self._connected:
            self._dirty[daemon_id] = self._now()
        dirty, self._dirty = self._dirty, {}
        try:
            await self._store.touch_daemons(dirty)
        except BaseException:
            # Not written: keep them for the next flush (newer sightings win).
            self._dirty = {**dirty, **self._dirty}
            raise

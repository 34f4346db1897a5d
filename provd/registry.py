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

Several processes may serve one database (workers, several `provd serve`, replicas),
and a daemon's streams may be open to any of them. At every flush a process also
renews, in the store, a *stream lease* for each daemon it holds a stream for:
`connected_until`, `LEASE_FLUSH_INTERVALS` flush intervals ahead, only ever extended,
so it ends by itself once no process renews it (the streams closed, or the process
died). A daemon "holds a stream open" if it does here, or if its stored lease is
current and is not one this process wrote (this process knows its own streams
exactly). So across processes:

- ListDaemons, which reads the store on each call, sees a stream opened on another
  process within one flush interval (5 s), and a closed one end when its lease does,
  at most `LEASE_FLUSH_INTERVALS` flush intervals after it closed. On the process it
  was open to, it ends at once.
- `live_daemons` (what routing, the pending reason and the pending reaper go by) is
  synchronous, so it reads a snapshot of the store's daemons that `run` refreshes after
  each flush: one read per flush interval, never one per request. A daemon seen by
  another process counts there within about two flush intervals.

One column holds one lease per daemon, the latest. A daemon streaming to two processes
whose stream to A closes may show as not connected on A until B next renews (at most
one flush interval): until then A's own, later, lease hides B's.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import trio

from provd.errors import ProvdError, tolerate_store_outage
from provd.model import Daemon, now_ms
from provd.store import DaemonPresence, Store

logger = logging.getLogger(__name__)

# How far ahead a stream lease runs, in flush intervals: a flush that fails or comes
# late (a busy database) does not end the leases it would have renewed.
LEASE_FLUSH_INTERVALS = 3


@dataclass(frozen=True, slots=True)
class DaemonView:
    daemon: Daemon
    created_at: int
    last_seen_at: int
    current_job_id: str
    # In contact: a stream open (to any process), or a job and calls within the stale
    # interval.
    connected: bool
    # No stream open (to any process) and not seen for three heartbeat intervals.
    stale: bool


class DaemonRegistry:
    """Tracks daemons as they call in. Run `run` in a nursery to flush last-seen times
    and stream leases, and to learn of the daemons that other processes see."""

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
        self.lease_ms = int(LEASE_FLUSH_INTERVALS * flush_interval * 1000)
        # The store's daemons as `run` last read them, for `live_daemons`.
        self._stored: list[DaemonPresence] = []
        # The stream leases this process wrote and that have not expired, by daemon id.
        self._leased: dict[str, int] = {}

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
        """Daemons that are not stale, on this process or any other: holding a stream
        open now (here, or a current lease) or seen within the stale interval (here,
        or by the stored last-seen time). What routing and the pending reason go by."""
        now = self._now()
        cutoff = now - self.stale_after_ms
        live = {
            daemon_id: daemon
            for daemon_id, daemon in self._known.items()
            if daemon_id in self._connected or self._last_seen.get(daemon_id, 0) >= cutoff
        }
        for stored in self._stored:
            daemon = stored.record.daemon
            if daemon.id not in live and (
                self._streaming_elsewhere(stored, now) or stored.record.last_seen_at >= cutoff
            ):
                live[daemon.id] = daemon
        return list(live.values())

    async def list(self) -> list[DaemonView]:
        """Every stored daemon as ListDaemons reports it (read from the store now)."""
        stored = await self._store.daemon_presence()
        running = await self._store.running_jobs_by_daemon()
        now = self._now()
        return [self._view(each, running.get(each.record.daemon.id, ""), now) for each in stored]

    def _view(self, stored: DaemonPresence, current_job_id: str, now: int) -> DaemonView:
        """One daemon as ListDaemons reports it (the module docstring's definitions);
        a daemon streaming here was seen now, one streaming elsewhere at its last flush."""
        record = stored.record
        daemon_id = record.daemon.id
        streaming_here = daemon_id in self._connected
        streaming = streaming_here or self._streaming_elsewhere(stored, now)
        last_seen = (
            now if streaming_here else max(record.last_seen_at, self._last_seen.get(daemon_id, 0))
        )
        quiet = now - last_seen > self.stale_after_ms
        return DaemonView(
            daemon=record.daemon,
            created_at=record.created_at,
            last_seen_at=last_seen,
            current_job_id=current_job_id,
            connected=streaming or (bool(current_job_id) and not quiet),
            stale=not streaming and quiet,
        )

    def _streaming_elsewhere(self, stored: DaemonPresence, now: int) -> bool:
        """Whether another process holds a stream open for the daemon: its lease is
        current and later than any this process wrote (its own streams it knows)."""
        until = stored.connected_until
        return now < until and until > self._leased.get(stored.record.daemon.id, 0)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Every flush interval, write last-seen times and renew the stream leases of
        the daemons streaming here, then re-read the store's daemons; flush once more
        (without leases) on exit."""
        task_status.started()
        try:
            await self._refresh()
            while True:
                await trio.sleep(self._flush_interval)
                with tolerate_store_outage(logger, "the daemon registry"):
                    await self._flush(renew_leases=True)
                await self._refresh()
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await self._flush(renew_leases=False)
                except ProvdError as error:  # closed, full, unreachable, or gone
                    logger.warning("last-seen times were not saved at exit: %s", error)

    async def _flush(self, *, renew_leases: bool) -> None:
        """Write the last-seen times gathered since the last flush, and (if asked) the
        leases of the daemons streaming here; what fails to be written is kept."""
        now = self._now()
        for daemon_id in self._connected:
            self._dirty[daemon_id] = now
        leases = (
            {daemon_id: now + self.lease_ms for daemon_id in self._connected}
            if renew_leases
            else {}
        )
        dirty, self._dirty = self._dirty, {}
        try:
            await self._store.touch_daemons(dirty, connected_until=leases)
        except BaseException:
            # Not written: keep them for the next flush (newer sightings win).
            self._dirty = {**dirty, **self._dirty}
            raise
        self._leased = {
            daemon_id: until
            for daemon_id, until in {**self._leased, **leases}.items()
            if until > now
        }

    async def _refresh(self) -> None:
        """Re-read the store's daemons and their leases for `live_daemons`. If the read
        fails, the last snapshot stays; its times age out by themselves."""
        try:
            self._stored = await self._store.daemon_presence()
        except ProvdError as error:  # StoreClosed, PostgreSQL's StoreUnreachable
            logger.warning("the daemon registry could not read the stored daemons: %s", error)
        except Exception:
            logger.exception("the daemon registry could not read the stored daemons")

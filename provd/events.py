"""Wake-ups for tasks waiting on jobs to change: a job's log followers, and the
watchers of every job (`JobService.watch_jobs`, behind `WatchJobs`).

A waiter takes a `watch` (or a `subscribe` feed) *before* it reads the store, so a
change that lands between the read and the wait is never missed; callers still re-read
on a slow timeout, a safety net for a wake-up that was lost.

`notify` is for a change this process made: it wakes the local watchers and hands
the job id to `relay`, which carries it to the other processes sharing the store
(`provd.wakeups`). `wake`, `wake_all` and `some_job_changed` are local only: they
deliver what another process relayed, and must not be relayed again. `created` is
local only too: a new job reaches the other processes as "a job is available in its
queue" (or, handed straight to a daemon, as its claim's `notify`), never through here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import trio

# A feed names at most this many changed jobs; past it, it says "many" instead.
FEED_MAX_IDS = 32


def _relay_nowhere(job_id: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed since a feed was last taken: `job_ids` (sorted), unless `many`
    (more than the feed names, or some change of a job it cannot name): then
    re-read everything."""

    job_ids: tuple[str, ...]
    many: bool


@dataclass(frozen=True, slots=True)
class JobEventsStatistics:
    # Jobs with at least one task waiting for their next change (log followers).
    watched_jobs: int
    # Open `subscribe` feeds (WatchJobs streams).
    feeds: int


class ChangeFeed:
    """The changes of every job since the feed was last taken, for one watcher.

    Cheap to fill: a change adds an id to a set (up to `max_ids`, then the feed just
    says "many") and sets an event; nothing is read until the watcher takes it.
    """

    def __init__(self, max_ids: int = FEED_MAX_IDS) -> None:
        self._max_ids = max_ids
        self._ids: set[str] = set()
        self._many = False
        self._changed = trio.Event()

    @property
    def pending(self) -> bool:
        """Whether something changed since the feed was last taken."""
        return self._changed.is_set()

    async def wait_changed(self) -> None:
        """Return once something changed since the feed was last taken."""
        await self._changed.wait()

    def take(self) -> Changes:
        """What changed since the last `take`, and start afresh."""
        changes = Changes(tuple(sorted(self._ids)), self._many)
        self._ids, self._many = set(), False
        self._changed = trio.Event()
        return changes

    def add(self, job_id: str | None) -> None:
        """Job `job_id` changed; None: some job did, which one is not known."""
        self._changed.set()
        if self._many:
            return  # already "re-read everything": no id to keep
        if job_id is None or (job_id not in self._ids and len(self._ids) >= self._max_ids):
            self._ids.clear()
            self._many = True
        else:
            self._ids.add(job_id)


class JobEvents:
    """One `trio.Event` per watched job, replaced each time it fires, and the feeds
    of the tasks that watch every job."""

    def __init__(self, relay: Callable[[str], None] = _relay_nowhere) -> None:
        self._events: dict[str, trio.Event] = {}
        self._feeds: set[ChangeFeed] = set()
        self._relay = relay

    def watch(self, job_id: str) -> trio.Event:
        """The event that the next `notify(job_id)` or `wake(job_id)` sets."""
        event = self._events.get(job_id)
        if event is None:
            event = self._events[job_id] = trio.Event()
        return event

    @contextmanager
    def subscribe(self, max_ids: int = FEED_MAX_IDS) -> Iterator[ChangeFeed]:
        """A feed of every job's changes, from now until the block ends (it is
        forgotten then, however the block ends: a departed watcher costs nothing)."""
        feed = ChangeFeed(max_ids)
        self._feeds.add(feed)
        try:
            yield feed
        finally:
            self._feeds.discard(feed)

    def notify(self, job_id: str) -> None:
        """This process changed `job_id`: wake its watchers here and everywhere."""
        self.wake(job_id)
        self._relay(job_id)

    def wake(self, job_id: str) -> None:
        """Wake every task in this process watching `job_id`, or every job."""
        event = self._events.pop(job_id, None)
        if event is not None:
            event.set()
        self._tell_feeds(job_id)

    def wake_all(self) -> None:
        """Wake every watcher in this process (something changed; re-read)."""
        events, self._events = self._events, {}
        for event in events.values():
            event.set()
        self._tell_feeds(None)

    def created(self, job_id: str) -> None:
        """Job `job_id` was created in this process: tell the feeds here. Not relayed:
        its announcement to the schedulers reaches the other processes."""
        self._tell_feeds(job_id)

    def some_job_changed(self) -> None:
        """Some job changed, which one is not known (another process created one): the
        feeds here re-read everything. Log followers are left alone: theirs is known."""
        self._tell_feeds(None)

    def statistics(self) -> JobEventsStatistics:
        return JobEventsStatistics(watched_jobs=len(self._events), feeds=len(self._feeds))

    def _tell_feeds(self, job_id: str | None) -> None:
        for feed in self._feeds:
            feed.add(job_id)

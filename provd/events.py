"""Wake-ups for tasks waiting on a job to change (log followers).

A waiter takes a `watch` *before* it reads the store, so a change that lands
between the read and the wait is never missed; callers still re-read on a slow
timeout, a safety net for a wake-up that was lost.

`notify` is for a change this process made: it wakes the local watchers and hands
the job id to `relay`, which carries it to the other processes sharing the store
(`provd.wakeups`). `wake` and `wake_all` are local only: they deliver what another
process relayed, and must not be relayed again.
"""

from __future__ import annotations

from collections.abc import Callable

import trio


def _relay_nowhere(job_id: str) -> None:
    return None


class JobEvents:
    """One `trio.Event` per watched job, replaced each time it fires."""

    def __init__(self, relay: Callable[[str], None] = _relay_nowhere) -> None:
        self._events: dict[str, trio.Event] = {}
        self._relay = relay

    def watch(self, job_id: str) -> trio.Event:
        """The event that the next `notify(job_id)` or `wake(job_id)` sets."""
        event = self._events.get(job_id)
        if event is None:
            event = self._events[job_id] = trio.Event()
        return event

    def notify(self, job_id: str) -> None:
        """This process changed `job_id`: wake its watchers here and everywhere."""
        self.wake(job_id)
        self._relay(job_id)

    def wake(self, job_id: str) -> None:
        """Wake every task in this process watching `job_id`."""
        event = self._events.pop(job_id, None)
        if event is not None:
            event.set()

    def wake_all(self) -> None:
        """Wake every watcher in this process (something changed; re-read)."""
        events, self._events = self._events, {}
        for event in events.values():
            event.set()

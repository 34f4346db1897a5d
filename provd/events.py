"""In-process wake-ups for tasks waiting on a job to change (log followers).

A waiter takes a `watch` *before* it reads the store, so a change that lands
between the read and the wait is never missed; callers still re-read on a slow
timeout, which covers changes made by another process on the same database.
"""

from __future__ import annotations

import trio


class JobEvents:
    """One `trio.Event` per watched job, replaced each time it fires."""

    def __init__(self) -> None:
        self._events: dict[str, trio.Event] = {}

    def watch(self, job_id: str) -> trio.Event:
        """The event that the next `notify(job_id)` sets."""
        event = self._events.get(job_id)
        if event is None:
            event = self._events[job_id] = trio.Event()
        return event

    def notify(self, job_id: str) -> None:
        """Wake every task watching `job_id`."""
        event = self._events.pop(job_id, None)
        if event is not None:
            event.set()

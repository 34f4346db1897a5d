"""Timers that keep anything from hanging forever: tasks in the root nursery.

- Hung jobs: a running job with no update for `hang_timeout_seconds` fails, saying so.
- Unroutable jobs: a pending job that no connected daemon could take for
  `pending_timeout_seconds` fails with an error that names what is missing. The
  daemons counted are those of every process serving the database
  (`DaemonRegistry.live_daemons`), not only this one's.

They sleep on trio's clock and compare stored timestamps with `now` (Unix
milliseconds, `model.now_ms` by default), so a test can run both on a virtual clock.

Every process serving the database runs both. Each pass is one conditional `UPDATE …
RETURNING` per call (`Store.fail_hung_jobs`, `Store.fail_pending_jobs`), so processes
that reap at once fail each job once, and each failed job is returned to one of them,
which alone logs it and wakes its followers. A pass that meets a full disk or a
database that cannot be reached is logged; the next one tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from provd.errors import tolerate_store_outage
from provd.events import JobEvents
from provd.explain import explain_unroutable
from provd.model import LogLevel, now_ms, server_line
from provd.protocol import JobErrorCode
from provd.registry import DaemonRegistry
from provd.store import Store

if TYPE_CHECKING:
    from provd.metrics import Metrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReaperSettings:
    hang_timeout_seconds: float = 300.0
    # None: a pending job waits for a capable daemon forever.
    pending_timeout_seconds: float | None = 1800.0
    # How often each reaper looks; also bounded by its timeout.
    interval_seconds: float = 30.0


def _format_duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:g}s"


async def reap_hung_jobs(
    store: Store,
    events: JobEvents,
    settings: ReaperSettings,
    *,
    now: Callable[[], int] = now_ms,
    metrics: Metrics | None = None,
) -> None:
    """Every interval, fail the running jobs not updated for the hang timeout."""
    timeout = settings.hang_timeout_seconds
    error = (
        f"Job hung: its provisioner daemon sent no update for {_format_duration(timeout)}"
        " (the daemon crashed, lost its connection, or is stuck)."
    )
    lines = [
        server_line("Cleaning up", error, LogLevel.ERROR),
        server_line(
            "Cleaning up",
            "provd failed the job so that it does not stay running forever.",
            LogLevel.ERROR,
        ),
    ]
    while True:
        await trio.sleep(min(settings.interval_seconds, timeout / 2))
        with tolerate_store_outage(logger, "the hang reaper"):
            failed = await store.fail_hung_jobs(
                now() - int(timeout * 1000), error, JobErrorCode.JOB_HUNG, lines
            )
            for job in failed:
                logger.warning("job %s hung on daemon %s; failed it", job.id, job.daemon_id)
                events.notify(job.id)
            if metrics is not None:
                metrics.reaped("hung", failed)


async def reap_unroutable_jobs(
    store: Store,
    registry: DaemonRegistry,
    events: JobEvents,
    settings: ReaperSettings,
    *,
    now: Callable[[], int] = now_ms,
    metrics: Metrics | None = None,
) -> None:
    """Every interval, fail the jobs pending for the pending timeout in a queue that no
    live daemon, on any process, can take; never during the first stale interval after
    a start, while daemons are still reconnecting."""
    timeout = settings.pending_timeout_seconds
    if timeout is None:
        return
    judging_from = trio.current_time() + registry.stale_after_ms / 1000
    while True:
        await trio.sleep(min(settings.interval_seconds, timeout / 2))
        if trio.current_time() < judging_from:
            continue
        with tolerate_store_outage(logger, "the pending reaper"):
            await _fail_unroutable(
                store, registry, events, pending_for_seconds=timeout, now=now(), metrics=metrics
            )


async def _fail_unroutable(
    store: Store,
    registry: DaemonRegistry,
    events: JobEvents,
    *,
    pending_for_seconds: float,
    now: int,
    metrics: Metrics | None = None,
) -> None:
    """One pass of the pending reaper: fail what waited `pending_for_seconds` in a
    queue that no live daemon can take."""
    timeout = pending_for_seconds
    daemons = registry.live_daemons()
    cutoff = now - int(timeout * 1000)
    for summary in await store.pending_summary():
        if summary.oldest_created_at >= cutoff:
            continue
        missing = explain_unroutable(summary.queue, daemons)
        if missing is None:
            continue  # a capable daemon is connected; the job is only waiting its turn
        error = f"No daemon could take this job for {_format_duration(timeout)}: {missing}."
        failed = await store.fail_pending_jobs(
            summary.queue,
            cutoff,
            error,
            JobErrorCode.NO_CAPABLE_DAEMON,
            [server_line("Queued", error, LogLevel.ERROR)],
        )
        for job in failed:
            logger.warning("job %s was unroutable; failed it", job.id)
            events.notify(job.id)
        if metrics is not None:
            metrics.reaped("unroutable", failed)

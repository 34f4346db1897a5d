"""Retention: a task in the root nursery that deletes completed jobs older than
`--retain`, with their logs, and then the archives no remaining job uses.

It works in small batches (`Store.purge_expired`): each is one short write
transaction (on SQLite, one item in the writer's queue, so requests' writes wait for
at most one batch), with a pause between batches. The batch size adapts: it halves
when a batch took longer than `BATCH_TARGET_SECONDS` (jobs with long logs) and grows
back, up to `BATCH_MAX_JOBS`, when batches are quick.

The latest build of each workspace is kept whatever its age (quota counts its cost).
An uploaded archive that no job uses yet is kept for a grace period, the retention
or an hour, whichever is longer, so a client that uploads and then creates its job
never finds the archive gone; a client that does come later gets `not_found` on
CreateJob and uploads again.

Every process serving the database runs this task (`--workers N`, PostgreSQL
replicas): each delete is idempotent and replicas take disjoint batches, so running
it everywhere costs a little repeated searching and nothing else. What the disk gets
back is in docs/operations.md ("Retention").
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from provd.errors import ProvdError, tolerate_store_outage
from provd.model import now_ms
from provd.store import Purged, Store

logger = logging.getLogger(__name__)

DEFAULT_RETAIN_SECONDS = 30 * 86_400.0
# How long an upload that no job uses yet is kept at least.
FILE_GRACE_SECONDS = 3_600.0
BATCH_MAX_JOBS = 500
BATCH_MIN_JOBS = 10
# A batch should hold the database's write lock for no longer than this.
BATCH_TARGET_SECONDS = 0.05
PAUSE_SECONDS = 0.05
# How often a round starts; with a short retention, four times per retention period.
INTERVAL_MAX_SECONDS = 60.0
INTERVAL_MIN_SECONDS = 0.05


def parse_duration(text: str) -> float:
    """`30d`, `12h`, `90m`, `45s` or plain seconds (`3600`, `0.5`) into seconds;
    `0` keeps everything. Raises ValueError for anything else."""
    units = {"d": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0}
    value = text.strip().lower()
    scale = 1.0
    if value and value[-1] in units:
        scale = units[value[-1]]
        value = value[:-1]
    try:
        seconds = float(value) * scale
    except ValueError:
        raise ValueError(
            f"expected a duration such as 30d, 12h, 90m or 3600 (seconds), got {text!r}"
        ) from None
    if not 0 <= seconds < float("inf"):
        raise ValueError(f"expected a duration of zero or more, got {text!r}")
    return seconds


def interval_for(retain_seconds: float) -> float:
    """How long a round waits for the next: at most a minute, and four rounds per
    retention period when that is shorter (tests run with sub-second retention)."""
    return max(INTERVAL_MIN_SECONDS, min(INTERVAL_MAX_SECONDS, retain_seconds / 4))


async def run_retention(
    store: Store,
    retain_seconds: float,
    *,
    now: Callable[[], int] = now_ms,
) -> None:
    """Forever: every `interval_for(retain_seconds)`, purge what expired. With
    `retain_seconds` 0 nothing is ever deleted and the task returns at once."""
    if retain_seconds <= 0:
        return
    retain_ms = int(retain_seconds * 1000)
    grace_ms = int(max(retain_seconds, FILE_GRACE_SECONDS) * 1000)
    batch = BATCH_MAX_JOBS
    while True:
        await trio.sleep(interval_for(retain_seconds))
        with tolerate_store_outage(logger, "retention"):
            try:
                batch = await purge_round(store, now() - retain_ms, now() - grace_ms, batch)
            except ProvdError as error:  # a database error: try again next round
                logger.warning("retention failed, will retry: %s", error)


async def purge_round(store: Store, completed_before: int, files_before: int, batch: int) -> int:
    """Purge batches until one finds less than a full batch; return the batch size to
    start the next round with."""
    total = Purged()
    while True:
        started = trio.current_time()
        purged = await store.purge_expired(completed_before, files_before, batch)
        took = trio.current_time() - started
        total = Purged(
            total.jobs + purged.jobs, total.logs + purged.logs, total.files + purged.files
        )
        full = purged.jobs >= batch
        if took > BATCH_TARGET_SECONDS:
            batch = max(BATCH_MIN_JOBS, batch // 2)
        elif took < BATCH_TARGET_SECONDS / 4:
            batch = min(BATCH_MAX_JOBS, batch * 2)
        if not full:
            break
        await trio.sleep(PAUSE_SECONDS)
    if total.jobs or total.files:
        logger.info(
            "retention deleted %d job(s), %d log line(s), %d file(s)",
            total.jobs,
            total.logs,
            total.files,
        )
    return batch

"""Retention under load: a real server with a sub-second `--retain` while jobs keep
flowing through a real `provd daemon`. The jobs and log lines stored stay bounded and
the SQLite file stops growing: the pages retention frees are reused."""

from __future__ import annotations

import json
import signal
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import trio

from provd.client.connect import call
from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.model import Job, JobType, NewJob
from provd.retention import BATCH_MAX_JOBS, parse_duration, purge_round, run_retention
from provd.store import Purged, Store
from provd.store.memory import MemoryStore
from tests.archives import make_tar
from tests.daemon_clients import Jobs
from tests.processes import start_daemon, start_server

RETAIN = "0.5"  # seconds
LOAD_SECONDS = 12.0
SAMPLE_SECONDS = 1.0
CREATORS = 8
# Each job logs a few lines of a few hundred bytes: the log rows dominate the file.
ECHO = {
    "stages": [
        {
            "name": "Working",
            "line_delay": 0,
            "lines": [f"line {n}: " + "x" * 300 for n in range(8)],
        },
    ]
}


@dataclass(frozen=True)
class Sample:
    at: float
    jobs: int
    logs: int
    page_count: int
    freelist: int
    size: int  # bytes: the database file
    wal: int  # bytes: its -wal file


def _sample(db: Path, at: float) -> Sample:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        (jobs,) = conn.execute("SELECT count(*) FROM jobs").fetchone()
        (logs,) = conn.execute(
            "SELECT coalesce(sum(last_id - first_id + 1), 0) FROM log_chunks"
        ).fetchone()
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        (free,) = conn.execute("PRAGMA freelist_count").fetchone()
    finally:
        conn.close()
    wal = db.with_name(db.name + "-wal")
    return Sample(
        at,
        jobs,
        logs,
        pages,
        free,
        db.stat().st_size,
        wal.stat().st_size if wal.exists() else 0,
    )


@pytest.mark.slow
async def test_jobs_logs_and_file_size_stay_bounded_under_load(tmp_path: Path) -> None:
    db = tmp_path / "provd.db"
    samples: list[Sample] = []
    finished = 0
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, db, "--retain", RETAIN)
        daemon = await start_daemon(nursery, server.url, "--jobs", str(CREATORS))
        jobs = Jobs(SimpleNamespace(url=server.url))  # type: ignore[arg-type]
        uploaded = await call(
            jobs.client.upload_file,
            pb.UploadFileRequest(data=make_tar({"provd-echo.json": json.dumps(ECHO).encode()})),
        )

        async def create_and_follow() -> None:
            """Create a job, follow its log to the end, again: the daemon sets the pace."""
            nonlocal finished
            while True:
                job = await jobs.create(file_hash=uploaded.hash)
                request = pb.StreamJobLogsRequest(id=job.id, follow=True)
                await call(lambda r=request: list(jobs.client.stream_job_logs(r)))
                finished += 1

        start = trio.current_time()
        with trio.move_on_after(LOAD_SECONDS):
            async with trio.open_nursery() as load:
                for _ in range(CREATORS):
                    load.start_soon(create_and_follow)
                while True:
                    await trio.sleep(SAMPLE_SECONDS)
                    at = trio.current_time() - start
                    samples.append(await trio.to_thread.run_sync(_sample, db, at))
        # The daemon first: it finishes its running jobs, which needs the server up
        # (with the server gone it would retry their completion until it came back).
        daemon.signal(signal.SIGINT)
        assert await daemon.wait() == 0, daemon.output.decode()
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0

    report = "\n".join(
        f"{s.at:5.1f}s jobs={s.jobs:4d} logs={s.logs:5d} pages={s.page_count:5d}"
        f" free={s.freelist:4d} db={s.size / 1024:7.0f} KiB wal={s.wal / 1024:7.0f} KiB"
        for s in samples
    )
    print(f"\n{finished} jobs ran in {LOAD_SECONDS:g} s\n{report}")
    assert finished >= 60, f"too little load to judge ({finished} jobs)\n{report}"
    half = len(samples) // 2
    first, second = samples[:half], samples[half:]
    # Bounded: what is stored is a small part of what ran, and no larger late than early.
    most_jobs = max(s.jobs for s in samples)
    assert most_jobs < finished / 3, report
    assert max(s.jobs for s in second) <= max(s.jobs for s in first) * 1.5 + 20, report
    assert max(s.logs for s in second) <= max(s.logs for s in first) * 1.5 + 200, report
    # The file stops growing: freed pages are reused, so the second half of the run adds
    # little to the largest size of the first.
    grown = max(s.page_count for s in second) - max(s.page_count for s in first)
    assert grown <= max(s.page_count for s in first) * 0.25 + 16, report


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30d", 2_592_000.0),
        ("12h", 43_200.0),
        ("90m", 5_400.0),
        ("45s", 45.0),
        ("3600", 3600.0),
        ("0.5", 0.5),
        ("0", 0.0),
        (" 2H ", 7_200.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-1", "1w", "inf", "nan", "d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


async def test_retain_zero_keeps_everything() -> None:
    """With --retain 0 the task returns at once and never touches the store."""
    store = MemoryStore()
    with trio.fail_after(1):
        await run_retention(store, 0)


class _Counting(MemoryStore):
    """A memory store that records each purge's batch size."""

    def __init__(self) -> None:
        super().__init__(now=lambda: 0)
        self.batches: list[int] = []

    async def purge_expired(self, completed_before: int, files_before: int, limit: int) -> Purged:
        self.batches.append(limit)
        return await super().purge_expired(completed_before, files_before, limit)


async def _completed(store: Store, count: int) -> list[Job]:
    stored = await store.put_file(b"archive", "application/x-tar")
    jobs = []
    for n in range(count):
        job = await store.create_job(new_job_for(stored.hash, n))
        jobs.append(await store.cancel_job(job.id))
    return jobs


def new_job_for(file_hash: str, n: int) -> NewJob:
    return NewJob(
        id=f"job-{n}",
        type=JobType.TEMPLATE_IMPORT,
        provisioner="echo",
        organization="default",
        tags={"scope": "organization", "owner": ""},
        file_hash=file_hash,
        initiator_id="u",
        initiator_name="u",
        priority=0,
        input=b"",
    )


async def test_a_round_purges_batch_after_batch_until_one_is_not_full() -> None:
    store = _Counting()
    await _completed(store, 75)
    batch = await purge_round(store, completed_before=1, files_before=1, batch=10)
    assert store.batches == [10, 20, 40, 80]  # quick batches grow; 5 jobs were left for 80
    assert sum(1 for _ in store.database.jobs) == 0
    assert store.database.files == {}  # the last, partial batch also removed the file
    assert batch == 160
    assert await purge_round(store, 1, 1, BATCH_MAX_JOBS) == BATCH_MAX_JOBS

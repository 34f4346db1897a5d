"""create_job, get_job, list_jobs, cancel_job and read_logs."""

from __future__ import annotations

import hashlib
import uuid

import pytest
import trio

from provd.errors import FailedPrecondition, NotFound
from provd.model import (
    Job,
    JobQuery,
    JobStatus,
    JobType,
    JobUpdate,
    LogBatch,
    LogLevel,
    LogLine,
    LogSource,
    NewJob,
    WorkspaceRef,
)
from provd.store import Store
from provd.store._log_chunks import CHUNK_LINES

from .conftest import Clock
from .support import (
    ARCHIVE,
    DEFAULT_QUEUE,
    TAGS,
    TAR,
    all_jobs,
    claim,
    fetch,
    ids,
    log,
    make_job,
    make_running,
    new_job,
    outputs,
    update_logs,
)

MISSING = hashlib.sha256(b"never stored").hexdigest()


class TestCreateJob:
    async def test_round_trips_every_field(self, store: Store) -> None:
        """Every field of the new job comes back from create_job and get_job."""
        stored = await store.put_file(ARCHIVE, TAR)
        ws = WorkspaceRef("ws-9", "user-9", 1, ("devs", "ops"))
        new = new_job(
            stored.hash,
            type=JobType.WORKSPACE_BUILD,
            provisioner="terraform",
            organization="org-z",
            tags={"scope": "user", "owner": "user-9", "region": "eu"},
            initiator_id="user-9",
            initiator_name="zoe",
            priority=7,
            input=bytes(range(256)),
            trace_metadata={"traceparent": "00-abc-def-01"},
            workspace=ws,
        )
        created = await store.create_job(new)
        fetched = await store.get_job(new.id)
        assert fetched == created
        for job in (created, fetched):
            assert job.id == new.id
            assert job.type == JobType.WORKSPACE_BUILD
            assert job.provisioner == "terraform"
            assert job.organization == "org-z"
            assert dict(job.tags) == {"scope": "user", "owner": "user-9", "region": "eu"}
            assert job.file_hash == stored.hash
            assert job.initiator_id == "user-9"
            assert job.initiator_name == "zoe"
            assert job.priority == 7
            assert job.input == bytes(range(256))
            assert dict(job.trace_metadata) == {"traceparent": "00-abc-def-01"}
            assert job.workspace == ws
            assert job.daily_cost == 0

    async def test_is_pending_with_fresh_timestamps(self, store: Store, clock: Clock) -> None:
        """A new job is pending, created and updated now, and nothing else is set."""
        job = await make_job(store)
        assert job.status is JobStatus.PENDING
        assert job.created_at == job.updated_at == clock()
        assert job.started_at is None
        assert job.canceled_at is None
        assert job.completed_at is None
        assert job.daemon_id is None
        assert job.error == ""
        assert job.error_code == ""
        assert job.result is None
        assert job.readme is None
        assert job.template_variables is None
        assert job.logs_overflowed is False
        assert job.workspace is None

    async def test_assigns_increasing_seq(self, store: Store) -> None:
        """Each created job gets a larger seq than the one before."""
        jobs = [await make_job(store) for _ in range(3)]
        assert jobs[0].seq < jobs[1].seq < jobs[2].seq

    async def test_stores_initial_logs_in_order(self, store: Store, clock: Clock) -> None:
        """The log lines given to create_job are readable, in order, stamped now
        unless they carry their own time."""
        lines = [
            log("queued"),
            log("waiting", level=LogLevel.DEBUG, created_at=1234),
            log("third", stage="Other", source=LogSource.PROVISIONER),
        ]
        job = await make_job(store, logs=lines)
        read = await store.read_logs(job.id)
        assert [
            (line.output, line.level, line.stage, line.source, line.created_at) for line in read
        ] == [
            ("queued", LogLevel.INFO, "Setting up", LogSource.PROVISIONER_DAEMON, clock()),
            ("waiting", LogLevel.DEBUG, "Setting up", LogSource.PROVISIONER_DAEMON, 1234),
            ("third", LogLevel.INFO, "Other", LogSource.PROVISIONER, clock()),
        ]
        assert all(line.job_id == job.id for line in read)

    async def test_with_missing_file_raises_and_stores_nothing(self, store: Store) -> None:
        """A job whose file was never stored raises NotFound and leaves no job,
        no log line and no queue."""
        new = new_job(MISSING)
        with pytest.raises(NotFound):
            await store.create_job(new, [log("queued")])
        assert await store.get_job(new.id) is None
        assert await all_jobs(store) == []
        assert await store.read_logs(new.id) == []
        assert await store.pending_queues() == []

    async def test_failing_write_in_concurrent_burst_fails_alone(self, store: Store) -> None:
        """One bad create_job among 20 concurrent ones raises alone; the others persist."""
        stored = await store.put_file(ARCHIVE, TAR)
        good = [new_job(stored.hash, input=str(n).encode()) for n in range(19)]
        bad = new_job(MISSING)
        outcomes: dict[str, BaseException | Job] = {}

        async def create(new: NewJob) -> None:
            try:
                outcomes[new.id] = await store.create_job(new, [log(f"queued {new.id}")])
            except NotFound as exc:
                outcomes[new.id] = exc

        async with trio.open_nursery() as nursery:
            for new in [*good[:10], bad, *good[10:]]:
                nursery.start_soon(create, new)

        assert isinstance(outcomes[bad.id], NotFound)
        assert await store.get_job(bad.id) is None
        assert await store.read_logs(bad.id) == []
        for new in good:
            created = outcomes[new.id]
            assert isinstance(created, Job)
            assert await store.get_job(new.id) == created
            assert await outputs(store, new.id) == [f"queued {new.id}"]
        assert sorted(ids(await all_jobs(store))) == sorted(new.id for new in good)

    async def test_duplicate_job_id_fails_alone(self, store: Store) -> None:
        """A create_job reusing a job id fails alone: the original and the others stay.
        (The protocol names no error class for it: SQLite raises IntegrityError.)"""
        original = await make_job(store, logs=[log("original")])
        good = [new_job(original.file_hash) for _ in range(10)]
        duplicate = new_job(original.file_hash, id=original.id, input=b"impostor")
        outcomes: dict[int, Exception | Job] = {}

        async def create(index: int, new: NewJob) -> None:
            try:
                outcomes[index] = await store.create_job(new, [log("queued")])
            except Exception as exc:
                outcomes[index] = exc

        async with trio.open_nursery() as nursery:
            for index, new in enumerate([*good[:5], duplicate, *good[5:]]):
                nursery.start_soon(create, index, new)

        assert isinstance(outcomes.pop(5), Exception)
        assert all(isinstance(outcome, Job) for outcome in outcomes.values())
        assert await fetch(store, original.id) == original
        assert await outputs(store, original.id) == ["original"]
        assert sorted(ids(await all_jobs(store))) == sorted(
            [original.id, *(new.id for new in good)]
        )

    async def test_caller_cannot_change_the_stored_job(self, store: Store) -> None:
        """Mutating the mappings passed to or returned by create_job changes nothing stored."""
        stored = await store.put_file(ARCHIVE, TAR)
        tags = {**TAGS, "region": "eu"}
        trace = {"traceparent": "x"}
        new = new_job(stored.hash, tags=tags, trace_metadata=trace)
        created = await store.create_job(new)
        tags["region"] = "us"
        trace["traceparent"] = "y"
        assert isinstance(created.tags, dict) and isinstance(created.trace_metadata, dict)
        created.tags["region"] = "ap"
        created.trace_metadata["traceparent"] = "z"
        fetched = await fetch(store, new.id)
        assert dict(fetched.tags) == {**TAGS, "region": "eu"}
        assert dict(fetched.trace_metadata) == {"traceparent": "x"}


class TestGetJob:
    async def test_unknown_job_is_none(self, store: Store) -> None:
        """get_job of an id never created is None."""
        await make_job(store)
        assert await store.get_job(str(uuid.uuid4())) is None

    async def test_returns_the_current_state(self, store: Store) -> None:
        """get_job answers the job as the last write left it."""
        job = await make_job(store)
        claimed = await claim(store, [DEFAULT_QUEUE], "d1")
        assert await store.get_job(job.id) == claimed
        canceling = await store.cancel_job(job.id)
        assert await store.get_job(job.id) == canceling

    async def test_caller_cannot_change_the_stored_job(self, store: Store) -> None:
        """Mutating a job get_job returned changes nothing stored."""
        job = await make_job(store, trace_metadata={"k": "v"})
        got = await fetch(store, job.id)
        assert isinstance(got.tags, dict) and isinstance(got.trace_metadata, dict)
        got.tags["scope"] = "user"
        got.trace_metadata["k"] = "changed"
        assert await fetch(store, job.id) == job


class TestListJobs:
    async def test_newest_first(self, store: Store) -> None:
        """list_jobs returns jobs newest first."""
        jobs = [await make_job(store) for _ in range(4)]
        assert ids(await all_jobs(store)) == ids(reversed(jobs))

    async def test_empty_store_has_no_jobs(self, store: Store) -> None:
        page = await store.list_jobs(JobQuery())
        assert page.jobs == [] and page.next_before_seq is None

    async def test_filters_by_status(self, store: Store) -> None:
        """A status filter returns exactly the jobs in that status."""
        running = await make_job(store)
        canceling = await make_job(store)
        pending = await make_job(store)
        canceled = await make_job(store)
        succeeded = await make_running(store, "d3")
        failed = await make_running(store, "d4")
        await store.cancel_job(canceled.id)
        assert (await claim(store, [DEFAULT_QUEUE], "w1")).id == running.id
        assert (await claim(store, [DEFAULT_QUEUE], "w2")).id == canceling.id
        await store.cancel_job(canceling.id)
        await store.complete_job(succeeded.id, "d3", b"ok")
        await store.fail_job(failed.id, "d4", "boom")

        expected = {
            JobStatus.PENDING: [pending.id],
            JobStatus.RUNNING: [running.id],
            JobStatus.CANCELING: [canceling.id],
            JobStatus.CANCELED: [canceled.id],
            JobStatus.SUCCEEDED: [succeeded.id],
            JobStatus.FAILED: [failed.id],
        }
        for status, want in expected.items():
            got = await all_jobs(store, status=status)
            assert ids(got) == want, status
            assert all(job.status is status for job in got)

    async def test_filters_by_type(self, store: Store) -> None:
        """A type filter returns exactly the jobs of that type, in any status; None
        filters nothing."""
        made = {kind: [await make_job(store, type=kind) for _ in range(2)] for kind in JobType}
        await store.cancel_job(made[JobType.WORKSPACE_BUILD][0].id)
        for kind, jobs in made.items():
            got = await all_jobs(store, type=kind)
            assert ids(got) == ids(reversed(jobs)), kind
            assert all(job.type is kind for job in got)
        assert len(await all_jobs(store, type=None)) == 6
        pending_builds = await all_jobs(
            store, type=JobType.WORKSPACE_BUILD, status=JobStatus.PENDING
        )
        assert ids(pending_builds) == [made[JobType.WORKSPACE_BUILD][1].id]

    async def test_pages_with_a_type_filter(self, store: Store) -> None:
        """Paging under a type filter counts only the jobs of that type."""
        runs = [await make_job(store, type=JobType.TEMPLATE_DRY_RUN) for _ in range(3)]
        for _ in range(3):
            await make_job(store)
        first = await store.list_jobs(JobQuery(type=JobType.TEMPLATE_DRY_RUN, limit=2))
        assert ids(first.jobs) == [runs[2].id, runs[1].id]
        second = await store.list_jobs(
            JobQuery(type=JobType.TEMPLATE_DRY_RUN, limit=2, before_seq=first.next_before_seq)
        )
        assert ids(second.jobs) == [runs[0].id]
        assert second.next_before_seq is None

    async def test_filters_by_organization(self, store: Store) -> None:
        """An organization filter returns only that organization's jobs; an empty one
        filters nothing."""
        a1 = await make_job(store, organization="a")
        b1 = await make_job(store, organization="b")
        a2 = await make_job(store, organization="a")
        assert ids(await all_jobs(store, organization="a")) == [a2.id, a1.id]
        assert await all_jobs(store, organization="c") == []
        assert ids(await all_jobs(store, organization="")) == [a2.id, b1.id, a1.id]

    async def test_filters_by_provisioner(self, store: Store) -> None:
        """A provisioner filter returns only that provisioner's jobs; an empty one
        filters nothing."""
        echo = await make_job(store, provisioner="echo")
        tf = await make_job(store, provisioner="terraform")
        assert ids(await all_jobs(store, provisioner="terraform")) == [tf.id]
        assert ids(await all_jobs(store, provisioner="")) == [tf.id, echo.id]

    async def test_filters_by_tag_containment(self, store: Store) -> None:
        """A tag filter returns jobs whose tags contain every queried pair."""
        both = await make_job(store, tags={**TAGS, "region": "eu", "gpu": "yes"})
        eu = await make_job(store, tags={**TAGS, "region": "eu"})
        await make_job(store, tags={**TAGS, "region": "us", "gpu": "yes"})
        await make_job(store, tags=dict(TAGS))
        assert ids(await all_jobs(store, tags={"region": "eu"})) == [eu.id, both.id]
        assert ids(await all_jobs(store, tags={"region": "eu", "gpu": "yes"})) == [both.id]
        assert await all_jobs(store, tags={"region": "eu", "gpu": "no"}) == []
        assert await all_jobs(store, tags={"gpu": ""}) == []
        assert len(await all_jobs(store, tags={"owner": ""})) == 4

    async def test_filters_combine(self, store: Store) -> None:
        """Several filters at once return only jobs matching all of them."""
        await make_job(store, organization="a", provisioner="echo")
        want = await make_job(store, organization="a", provisioner="terraform")
        await make_job(store, organization="b", provisioner="terraform")
        got = await all_jobs(
            store, organization="a", provisioner="terraform", status=JobStatus.PENDING
        )
        assert ids(got) == [want.id]

    async def test_pages_walk_every_job_once(self, store: Store) -> None:
        """Feeding next_before_seq back as before_seq visits each job exactly once."""
        jobs = [await make_job(store) for _ in range(7)]
        seen: list[str] = []
        pages = 0
        before: int | None = None
        while True:
            page = await store.list_jobs(JobQuery(limit=3, before_seq=before))
            pages += 1
            assert len(page.jobs) <= 3
            seen += ids(page.jobs)
            if page.next_before_seq is None:
                break
            assert len(page.jobs) == 3
            assert page.next_before_seq == page.jobs[-1].seq
            before = page.next_before_seq
        assert seen == ids(reversed(jobs))
        assert pages == 3

    async def test_pages_with_a_filter(self, store: Store) -> None:
        """Paging counts only the jobs that pass the filters."""
        eu = [await make_job(store, tags={**TAGS, "region": "eu"}) for _ in range(3)]
        for _ in range(3):
            await make_job(store)
        first = await store.list_jobs(JobQuery(tags={"region": "eu"}, limit=2))
        assert ids(first.jobs) == [eu[2].id, eu[1].id]
        second = await store.list_jobs(
            JobQuery(tags={"region": "eu"}, limit=2, before_seq=first.next_before_seq)
        )
        assert ids(second.jobs) == [eu[0].id]
        assert second.next_before_seq is None

    async def test_exact_page_has_no_next(self, store: Store) -> None:
        """A page that holds the last job has next_before_seq None, even when full."""
        jobs = [await make_job(store) for _ in range(3)]
        page = await store.list_jobs(JobQuery(limit=3))
        assert ids(page.jobs) == ids(reversed(jobs))
        assert page.next_before_seq is None

    async def test_limit_below_one_is_refused(self, store: Store) -> None:
        with pytest.raises(ValueError):
            await store.list_jobs(JobQuery(limit=0))


class TestCancelJob:
    async def test_pending_job_completes_as_canceled(self, store: Store, clock: Clock) -> None:
        """Canceling a pending job makes it CANCELED at once."""
        job = await make_job(store)
        now = clock.advance()
        canceled = await store.cancel_job(job.id)
        assert canceled.status is JobStatus.CANCELED
        assert canceled.canceled_at == canceled.completed_at == canceled.updated_at == now
        assert canceled.started_at is None
        assert await store.get_job(job.id) == canceled

    async def test_canceled_pending_job_is_never_claimed(self, store: Store) -> None:
        """claim_job never returns a job canceled while pending."""
        job = await make_job(store)
        await store.cancel_job(job.id)
        assert await store.claim_job([DEFAULT_QUEUE], "w1") is None
        assert (await fetch(store, job.id)).status is JobStatus.CANCELED

    async def test_running_job_becomes_canceling(self, store: Store, clock: Clock) -> None:
        """Canceling a claimed job makes it CANCELING, not completed, still held."""
        job = await make_job(store)
        claimed = await claim(store, [DEFAULT_QUEUE], "w1")
        assert claimed.id == job.id
        now = clock.advance()
        canceling = await store.cancel_job(job.id)
        assert canceling.status is JobStatus.CANCELING
        assert canceling.canceled_at == canceling.updated_at == now
        assert canceling.completed_at is None
        assert canceling.started_at == claimed.started_at
        assert canceling.daemon_id == "w1"
        assert await store.get_job(job.id) == canceling

    async def test_canceling_job_is_returned_unchanged(self, store: Store, clock: Clock) -> None:
        """Canceling a CANCELING job again returns it as it is, updated_at included."""
        job = await make_job(store)
        await store.claim_job([DEFAULT_QUEUE], "w1")
        first = await store.cancel_job(job.id)
        clock.advance()
        again = await store.cancel_job(job.id)
        assert again == first
        assert await store.get_job(job.id) == first

    @pytest.mark.parametrize("end", ["canceled", "succeeded", "failed"])
    async def test_completed_job_fails_precondition(self, store: Store, end: str) -> None:
        """Canceling a job that completed, however it ended, raises FailedPrecondition
        and changes nothing."""
        job = await make_running(store, "d1")
        if end == "canceled":
            job = await store.cancel_job(job.id)
            job = await store.fail_job(job.id, "d1", "")
        elif end == "succeeded":
            job = await store.complete_job(job.id, "d1", b"ok")
        else:
            job = await store.fail_job(job.id, "d1", "boom")
        assert job.status.value == end
        with pytest.raises(FailedPrecondition):
            await store.cancel_job(job.id)
        assert await store.get_job(job.id) == job

    async def test_canceled_pending_job_fails_precondition(self, store: Store) -> None:
        job = await make_job(store)
        canceled = await store.cancel_job(job.id)
        with pytest.raises(FailedPrecondition):
            await store.cancel_job(job.id)
        assert await store.get_job(job.id) == canceled

    async def test_unknown_job_raises_not_found(self, store: Store) -> None:
        """Canceling an id never created raises NotFound."""
        with pytest.raises(NotFound):
            await store.cancel_job(str(uuid.uuid4()))

    async def test_appends_logs_only_when_job_changed(self, store: Store) -> None:
        """cancel_job's log lines are stored when it changed the job, never otherwise."""
        pending = await make_job(store)
        await store.cancel_job(pending.id, [log("canceled while pending")])
        with pytest.raises(FailedPrecondition):
            await store.cancel_job(pending.id, [log("too late")])
        assert await outputs(store, pending.id) == ["canceled while pending"]

        running = await make_job(store)
        await store.claim_job([DEFAULT_QUEUE], "w1")
        await store.cancel_job(running.id, [log("cancel requested")])
        await store.cancel_job(running.id, [log("cancel requested again")])
        assert await outputs(store, running.id) == ["cancel requested"]


class TestReadLogs:
    async def test_lines_of_every_write_in_order(self, store: Store, clock: Clock) -> None:
        """Lines from create_job, update_job, cancel_job and fail_job read back in the
        order written, with increasing ids and every field."""
        job = await make_running(store, "d1")
        await store.cancel_job(job.id)  # no lines: the job is only asked to cancel
        first = await update_logs(store, job, [log("one"), log("two")])
        assert first.id == job.id
        await update_logs(
            store,
            job,
            [log("three", source=LogSource.PROVISIONER, level=LogLevel.ERROR, created_at=1234)],
        )
        later = clock.advance()
        await store.fail_job(job.id, "d1", "", logs=[log("four", stage="Cleaning up")])
        read = await store.read_logs(job.id)
        assert [line.output for line in read] == ["one", "two", "three", "four"]
        line_ids = ids(read)
        assert line_ids == sorted(line_ids) and len(set(line_ids)) == 4
        assert all(line.job_id == job.id for line in read)
        assert (read[2].source, read[2].level, read[2].created_at) == (
            LogSource.PROVISIONER,
            LogLevel.ERROR,
            1234,
        )
        assert (read[3].stage, read[3].created_at) == ("Cleaning up", later)

    async def test_after_skips_older_lines(self, store: Store) -> None:
        """read_logs(after=id) returns only lines with a greater id."""
        job = await make_job(store, logs=[log(str(n)) for n in range(5)])
        lines = await store.read_logs(job.id)
        assert [line.output for line in await store.read_logs(job.id, after=lines[1].id)] == [
            "2",
            "3",
            "4",
        ]
        assert await store.read_logs(job.id, after=lines[-1].id) == []
        assert await store.read_logs(job.id, after=0) == lines

    async def test_limit_caps_the_answer(self, store: Store) -> None:
        """read_logs returns at most `limit` lines, oldest first."""
        job = await make_job(store, logs=[log(str(n)) for n in range(5)])
        assert [line.output for line in await store.read_logs(job.id, limit=2)] == ["0", "1"]
        lines = await store.read_logs(job.id)
        after_two = await store.read_logs(job.id, after=lines[1].id, limit=2)
        assert [line.output for line in after_two] == ["2", "3"]

    async def test_pages_through_batches_larger_than_a_chunk(self, store: Store) -> None:
        """A batch of more lines than one chunk holds (provd/store/_log_chunks.py) keeps
        its order and ids; pages that start and end inside chunks miss and repeat no
        line, interleaved with another job's lines."""
        job = await make_running(store, "d1")
        other = await make_running(store, "d2")
        sizes = [CHUNK_LINES * 2 + 7, 1, CHUNK_LINES - 1, 3]
        sent: list[str] = []
        for size in sizes:
            batch = [log(f"{len(sent) + n}") for n in range(size)]
            sent += [line.output for line in batch]
            await update_logs(store, job, batch)
            await update_logs(store, other, [log("other")])
        every = await store.read_logs(job.id, limit=-1)
        assert [line.output for line in every] == sent
        assert ids(every) == sorted(set(ids(every)))
        for page_size in (1, 999, 1000, 1001, 2500):
            paged: list[LogLine] = []
            after = 0
            while page := await store.read_logs(job.id, after=after, limit=page_size):
                assert len(page) <= page_size
                paged += page
                after = page[-1].id
            assert paged == every, page_size
        assert await outputs(store, other.id) == ["other"] * len(sizes)

    async def test_keeps_text_that_needs_escaping(self, store: Store) -> None:
        """Quotes, backslashes, control characters and characters outside the BMP come
        back exactly as stored."""
        texts = ['"quoted" \\ back\\slash', "tab\tnew\nline\r\x01\x7f", "日本語 🚀 \u2028", ""]
        job = await make_job(store, logs=[log(text, stage=text) for text in texts])
        read = await store.read_logs(job.id)
        assert [(line.stage, line.output) for line in read] == [(t, t) for t in texts]

    async def test_a_service_batch_is_stored_and_cut_to_the_budget(self, store: Store) -> None:
        """The service hands UpdateJob's lines over as one `LogBatch` of rows: stored
        like lines, and cut at the budget with the one marker."""
        job = await make_running(store, "d1")
        rows = [
            (1000 + n, int(LogSource.PROVISIONER), int(LogLevel.INFO), "Plan", "x" * 10)
            for n in range(5)
        ]
        batch = LogBatch(rows, sum(len(r[3]) + len(r[4]) for r in rows))
        assert job.daemon_id is not None
        update = JobUpdate(logs=batch, log_budget_bytes=14 * 3 + 5)
        updated = await store.update_job(job.id, job.daemon_id, update)
        assert updated.logs_overflowed
        read = await store.read_logs(job.id)
        assert [line.output for line in read[:3]] == ["x" * 10] * 3
        assert [(line.created_at, line.source, line.level) for line in read[:3]] == [
            (1000 + n, LogSource.PROVISIONER, LogLevel.INFO) for n in range(3)
        ]
        assert len(read) == 4 and read[3].level is LogLevel.WARN
        assert read[3].output.startswith("Logs truncated")

    async def test_is_per_job(self, store: Store) -> None:
        """read_logs returns only the lines of the job asked for."""
        a = await make_running(store, "da", logs=[log("a0")])
        b = await make_running(store, "db", logs=[log("b0")])
        await update_logs(store, a, [log("a1")])
        await update_logs(store, b, [log("b1")])
        await update_logs(store, a, [log("a2")])
        assert await outputs(store, a.id) == ["a0", "a1", "a2"]
        assert await outputs(store, b.id) == ["b0", "b1"]

    async def test_unknown_job_has_no_lines(self, store: Store) -> None:
        await make_job(store, logs=[log("somebody else's")])
        assert await store.read_logs(str(uuid.uuid4())) == []

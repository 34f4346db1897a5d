"""Conformance suite of the `Store` protocol: every backend must pass all of it.

Tests see a backend only through the `store` and `open_store` fixtures
(tests/store/conftest.py) and use nothing but the protocol's methods.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pytest
import trio

from provd.errors import FailedPrecondition, NotFound, StoreClosed
from provd.model import (
    Job,
    JobQuery,
    JobStatus,
    JobType,
    LogLevel,
    LogSource,
    NewJob,
    NewLogLine,
    Queue,
    QueuePosition,
)
from provd.store import Store

from .conftest import StoreFactory

ORG = "org-a"
PROVISIONER = "echo"
TAGS: Mapping[str, str] = {"scope": "organization", "owner": ""}
TAR = "application/x-tar"
ARCHIVE = b"a tar archive, as far as the store cares"


def new_job(file_hash: str, **overrides: Any) -> NewJob:
    """A pending job of the default queue; keyword arguments replace any field."""
    fields: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "type": JobType.TEMPLATE_IMPORT,
        "provisioner": PROVISIONER,
        "organization": ORG,
        "tags": dict(TAGS),
        "file_hash": file_hash,
        "initiator_id": "user-1",
        "initiator_name": "alice",
        "priority": 0,
        "input": b"\x00input\xff",
        "trace_metadata": {},
    }
    fields.update(overrides)
    return NewJob(**fields)


def log(output: str, stage: str = "Setting up", **overrides: Any) -> NewLogLine:
    fields: dict[str, Any] = {
        "source": LogSource.PROVISIONER_DAEMON,
        "level": LogLevel.INFO,
        "stage": stage,
        "output": output,
    }
    fields.update(overrides)
    return NewLogLine(**fields)


def queue_of(job: Job | NewJob) -> Queue:
    return Queue(job.organization, job.provisioner, dict(job.tags))


DEFAULT_QUEUE = Queue(ORG, PROVISIONER, dict(TAGS))


async def make_job(store: Store, logs: Sequence[NewLogLine] = (), **overrides: Any) -> Job:
    """Store the archive (idempotent) and create a job from it."""
    stored = await store.put_file(ARCHIVE, TAR)
    return await store.create_job(new_job(stored.hash, **overrides), logs)


async def fetch(store: Store, job_id: str) -> Job:
    """get_job for a job that must exist."""
    job = await store.get_job(job_id)
    assert job is not None, f"job {job_id} is missing"
    return job


async def claim(store: Store, queues: Sequence[Queue], daemon_id: str) -> Job:
    """claim_job where a job must be claimed."""
    job = await store.claim_job(queues, daemon_id)
    assert job is not None, "no job was claimed"
    return job


async def all_jobs(store: Store, **filters: Any) -> list[Job]:
    page = await store.list_jobs(JobQuery(limit=1000, **filters))
    assert page.next_before_seq is None
    return page.jobs


def ids(jobs: Iterable[Job]) -> list[str]:
    return [job.id for job in jobs]


# -- files -------------------------------------------------------------------


async def test_put_file_returns_hash_size_and_mimetype(store: Store) -> None:
    """put_file answers the data's SHA-256 in hex, its size and its mimetype."""
    stored = await store.put_file(ARCHIVE, TAR)
    assert stored.hash == hashlib.sha256(ARCHIVE).hexdigest()
    assert stored.size == len(ARCHIVE)
    assert stored.mimetype == TAR


async def test_put_same_bytes_twice_is_a_noop(store: Store) -> None:
    """Storing identical bytes again succeeds and returns the same hash."""
    first = await store.put_file(ARCHIVE, TAR)
    second = await store.put_file(ARCHIVE, TAR)
    assert second.hash == first.hash
    assert second.size == first.size
    assert await store.get_file_data(first.hash) == ARCHIVE


async def test_file_round_trips(store: Store) -> None:
    """get_file_info and get_file_data return what put_file stored."""
    data = bytes(range(256)) * 1000
    stored = await store.put_file(data, "application/octet-stream")
    assert await store.get_file_info(stored.hash) == stored
    assert await store.get_file_data(stored.hash) == data


async def test_unknown_file_is_none(store: Store) -> None:
    """An unknown hash has neither info nor data."""
    missing = hashlib.sha256(b"never stored").hexdigest()
    assert await store.get_file_info(missing) is None
    assert await store.get_file_data(missing) is None


# -- create_job and get_job --------------------------------------------------


async def test_create_job_round_trips_every_field(store: Store) -> None:
    """Every field of the new job comes back from create_job and get_job."""
    stored = await store.put_file(ARCHIVE, TAR)
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


async def test_create_job_is_pending_with_fresh_timestamps(store: Store) -> None:
    """A new job is pending: created_at == updated_at, nothing else set."""
    job = await make_job(store)
    assert job.status is JobStatus.PENDING
    assert job.created_at > 0
    assert job.created_at == job.updated_at
    assert job.started_at is None
    assert job.canceled_at is None
    assert job.completed_at is None
    assert job.daemon_id is None
    assert job.error == ""
    assert job.error_code == ""
    assert job.result is None


async def test_create_job_assigns_increasing_seq(store: Store) -> None:
    """Each created job gets a larger seq than the one before."""
    jobs = [await make_job(store) for _ in range(3)]
    assert jobs[0].seq < jobs[1].seq < jobs[2].seq


async def test_create_job_stores_initial_logs_in_order(store: Store) -> None:
    """The log lines given to create_job are readable, in order."""
    lines = [log("queued"), log("waiting", level=LogLevel.DEBUG), log("third", stage="Other")]
    job = await make_job(store, logs=lines)
    read = await store.read_logs(job.id)
    assert [(line.output, line.level, line.stage) for line in read] == [
        ("queued", LogLevel.INFO, "Setting up"),
        ("waiting", LogLevel.DEBUG, "Setting up"),
        ("third", LogLevel.INFO, "Other"),
    ]
    assert all(line.job_id == job.id for line in read)


async def test_create_job_with_missing_file_raises_and_stores_nothing(store: Store) -> None:
    """A job whose file was never stored raises NotFound and leaves no job."""
    missing = hashlib.sha256(b"never stored").hexdigest()
    new = new_job(missing)
    with pytest.raises(NotFound):
        await store.create_job(new, [log("queued")])
    assert await store.get_job(new.id) is None
    assert await all_jobs(store) == []
    assert await store.read_logs(new.id) == []


async def test_get_unknown_job_is_none(store: Store) -> None:
    """get_job of an id never created is None."""
    assert await store.get_job(str(uuid.uuid4())) is None


# -- list_jobs ---------------------------------------------------------------


async def test_list_jobs_newest_first(store: Store) -> None:
    """list_jobs returns jobs newest first."""
    jobs = [await make_job(store) for _ in range(4)]
    assert ids(await all_jobs(store)) == ids(reversed(jobs))


async def test_list_jobs_filters_by_status(store: Store) -> None:
    """A status filter returns exactly the jobs in that status."""
    running = await make_job(store)
    canceling = await make_job(store)
    pending = await make_job(store)
    canceled = await make_job(store)
    await store.cancel_job(canceled.id)
    assert (await claim(store, [DEFAULT_QUEUE], "w1")).id == running.id
    assert (await claim(store, [DEFAULT_QUEUE], "w2")).id == canceling.id
    await store.cancel_job(canceling.id)

    expected = {
        JobStatus.PENDING: [pending.id],
        JobStatus.RUNNING: [running.id],
        JobStatus.CANCELING: [canceling.id],
        JobStatus.CANCELED: [canceled.id],
        JobStatus.SUCCEEDED: [],
        JobStatus.FAILED: [],
    }
    for status, want in expected.items():
        got = await all_jobs(store, status=status)
        assert ids(got) == want, status
        assert all(job.status is status for job in got)


async def test_list_jobs_filters_by_organization(store: Store) -> None:
    """An organization filter returns only that organization's jobs."""
    a1 = await make_job(store, organization="a")
    await make_job(store, organization="b")
    a2 = await make_job(store, organization="a")
    assert ids(await all_jobs(store, organization="a")) == [a2.id, a1.id]
    assert await all_jobs(store, organization="c") == []


async def test_list_jobs_filters_by_provisioner(store: Store) -> None:
    """A provisioner filter returns only that provisioner's jobs."""
    await make_job(store, provisioner="echo")
    tf = await make_job(store, provisioner="terraform")
    assert ids(await all_jobs(store, provisioner="terraform")) == [tf.id]


async def test_list_jobs_filters_by_tag_containment(store: Store) -> None:
    """A tag filter returns jobs whose tags contain every queried pair."""
    both = await make_job(store, tags={**TAGS, "region": "eu", "gpu": "yes"})
    eu = await make_job(store, tags={**TAGS, "region": "eu"})
    await make_job(store, tags={**TAGS, "region": "us", "gpu": "yes"})
    await make_job(store, tags=dict(TAGS))
    assert ids(await all_jobs(store, tags={"region": "eu"})) == [eu.id, both.id]
    assert ids(await all_jobs(store, tags={"region": "eu", "gpu": "yes"})) == [both.id]
    assert await all_jobs(store, tags={"region": "eu", "gpu": "no"}) == []
    assert await all_jobs(store, tags={"gpu": ""}) == []


async def test_list_jobs_filters_combine(store: Store) -> None:
    """Several filters at once return only jobs matching all of them."""
    await make_job(store, organization="a", provisioner="echo")
    want = await make_job(store, organization="a", provisioner="terraform")
    await make_job(store, organization="b", provisioner="terraform")
    got = await all_jobs(store, organization="a", provisioner="terraform", status=JobStatus.PENDING)
    assert ids(got) == [want.id]


async def test_list_jobs_pages_walk_every_job_once(store: Store) -> None:
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
        before = page.next_before_seq
    assert seen == ids(reversed(jobs))
    assert pages == 3


async def test_list_jobs_exact_page_has_no_next(store: Store) -> None:
    """A page that holds the last job has next_before_seq None, even when full."""
    jobs = [await make_job(store) for _ in range(3)]
    page = await store.list_jobs(JobQuery(limit=3))
    assert ids(page.jobs) == ids(reversed(jobs))
    assert page.next_before_seq is None


# -- cancel_job --------------------------------------------------------------


async def test_cancel_pending_job_completes_it_as_canceled(store: Store) -> None:
    """Canceling a pending job makes it CANCELED at once."""
    job = await make_job(store)
    canceled = await store.cancel_job(job.id)
    assert canceled.status is JobStatus.CANCELED
    assert canceled.canceled_at is not None
    assert canceled.completed_at is not None
    assert canceled.started_at is None
    assert await store.get_job(job.id) == canceled


async def test_canceled_pending_job_is_never_claimed(store: Store) -> None:
    """claim_job never returns a job canceled while pending."""
    job = await make_job(store)
    await store.cancel_job(job.id)
    assert await store.claim_job([DEFAULT_QUEUE], "w1") is None
    assert (await fetch(store, job.id)).status is JobStatus.CANCELED


async def test_cancel_running_job_marks_it_canceling(store: Store) -> None:
    """Canceling a claimed job makes it CANCELING, not completed."""
    job = await make_job(store)
    claimed = await store.claim_job([DEFAULT_QUEUE], "w1")
    assert claimed is not None and claimed.id == job.id
    canceling = await store.cancel_job(job.id)
    assert canceling.status is JobStatus.CANCELING
    assert canceling.canceled_at is not None
    assert canceling.completed_at is None
    assert canceling.daemon_id == "w1"
    assert await store.get_job(job.id) == canceling


async def test_cancel_canceling_job_returns_it_unchanged(store: Store) -> None:
    """Canceling a CANCELING job again returns it as it is."""
    job = await make_job(store)
    await store.claim_job([DEFAULT_QUEUE], "w1")
    first = await store.cancel_job(job.id)
    again = await store.cancel_job(job.id)
    assert again == first
    assert await store.get_job(job.id) == first


async def test_cancel_canceled_job_fails_precondition(store: Store) -> None:
    """Canceling a completed (canceled) job raises FailedPrecondition."""
    job = await make_job(store)
    canceled = await store.cancel_job(job.id)
    with pytest.raises(FailedPrecondition):
        await store.cancel_job(job.id)
    assert await store.get_job(job.id) == canceled


async def test_cancel_unknown_job_raises_not_found(store: Store) -> None:
    """Canceling an id never created raises NotFound."""
    with pytest.raises(NotFound):
        await store.cancel_job(str(uuid.uuid4()))


async def test_cancel_appends_logs_only_when_job_changed(store: Store) -> None:
    """cancel_job's log lines are stored when it changed the job, never otherwise."""
    pending = await make_job(store)
    await store.cancel_job(pending.id, [log("canceled while pending")])
    with pytest.raises(FailedPrecondition):
        await store.cancel_job(pending.id, [log("too late")])
    assert [line.output for line in await store.read_logs(pending.id)] == ["canceled while pending"]

    running = await make_job(store)
    await store.claim_job([DEFAULT_QUEUE], "w1")
    await store.cancel_job(running.id, [log("cancel requested")])
    await store.cancel_job(running.id, [log("cancel requested again")])
    assert [line.output for line in await store.read_logs(running.id)] == ["cancel requested"]


# -- claim_job ---------------------------------------------------------------


async def test_claim_with_no_queues_is_none(store: Store) -> None:
    """claim_job with an empty queue list returns None and claims nothing."""
    job = await make_job(store)
    assert await store.claim_job([], "w1") is None
    assert (await fetch(store, job.id)).status is JobStatus.PENDING


async def test_claim_with_nothing_pending_is_none(store: Store) -> None:
    """claim_job returns None when no job is pending."""
    assert await store.claim_job([DEFAULT_QUEUE], "w1") is None
    job = await make_job(store)
    await store.claim_job([DEFAULT_QUEUE], "w1")
    assert await store.claim_job([DEFAULT_QUEUE], "w2") is None
    assert (await fetch(store, job.id)).daemon_id == "w1"


async def test_claim_sets_started_updated_and_worker(store: Store) -> None:
    """A claimed job is RUNNING with started_at, updated_at and daemon_id set."""
    job = await make_job(store)
    claimed = await store.claim_job([DEFAULT_QUEUE], "worker-7")
    assert claimed is not None and claimed.id == job.id
    assert claimed.status is JobStatus.RUNNING
    assert claimed.daemon_id == "worker-7"
    assert claimed.started_at is not None
    assert claimed.started_at >= job.created_at
    assert claimed.updated_at == claimed.started_at
    assert claimed.created_at == job.created_at
    assert claimed.canceled_at is None and claimed.completed_at is None
    assert await store.get_job(job.id) == claimed


async def test_claim_takes_higher_priority_first(store: Store) -> None:
    """Among pending jobs of a queue the highest priority is claimed first."""
    low = await make_job(store, priority=0)
    high = await make_job(store, priority=10)
    mid = await make_job(store, priority=5)
    order = [(await claim(store, [DEFAULT_QUEUE], "w")).id for _ in range(3)]
    assert order == [high.id, mid.id, low.id]


async def test_claim_takes_oldest_among_equal_priority(store: Store) -> None:
    """Among jobs of equal priority the oldest is claimed first."""
    jobs = [await make_job(store) for _ in range(4)]
    order = [(await claim(store, [DEFAULT_QUEUE], "w")).id for _ in range(4)]
    assert order == ids(jobs)


async def test_claim_only_from_given_queues(store: Store) -> None:
    """claim_job takes no job whose organization, provisioner or tags differ."""
    job = await make_job(store, tags={**TAGS, "region": "eu"})
    misses = [
        Queue("other-org", PROVISIONER, {**TAGS, "region": "eu"}),
        Queue(ORG, "terraform", {**TAGS, "region": "eu"}),
        Queue(ORG, PROVISIONER, dict(TAGS)),  # job tags are a superset
        Queue(ORG, PROVISIONER, {**TAGS, "region": "eu", "gpu": "yes"}),  # a subset
        Queue(ORG, PROVISIONER, {**TAGS, "region": "us"}),
    ]
    assert await store.claim_job(misses, "w1") is None
    assert (await fetch(store, job.id)).status is JobStatus.PENDING
    claimed = await store.claim_job([queue_of(job)], "w1")
    assert claimed is not None and claimed.id == job.id


async def test_claim_tag_order_does_not_matter(store: Store) -> None:
    """A queue matches a job whose tags are equal, whatever their insertion order."""
    job = await make_job(store, tags={"region": "eu", "scope": "organization", "owner": ""})
    queue = Queue(ORG, PROVISIONER, {"owner": "", "scope": "organization", "region": "eu"})
    claimed = await store.claim_job([queue], "w1")
    assert claimed is not None and claimed.id == job.id


async def test_claimed_job_is_never_claimed_again(store: Store) -> None:
    """Once claimed, a job is not returned by any later claim."""
    first = await make_job(store)
    second = await make_job(store)
    assert (await claim(store, [DEFAULT_QUEUE], "w1")).id == first.id
    assert (await claim(store, [DEFAULT_QUEUE], "w2")).id == second.id
    assert await store.claim_job([DEFAULT_QUEUE], "w3") is None
    assert (await fetch(store, first.id)).daemon_id == "w1"


async def test_claim_picks_best_head_across_queues(store: Store) -> None:
    """With several queues, claim_job takes the best head: priority, then age."""
    eu_tags = {**TAGS, "region": "eu"}
    us_tags = {**TAGS, "region": "us"}
    eu_old = await make_job(store, tags=eu_tags, priority=1)
    us_old = await make_job(store, tags=us_tags, priority=1)
    eu_new = await make_job(store, tags=eu_tags, priority=1)
    us_high = await make_job(store, tags=us_tags, priority=5)
    other = await make_job(store, tags={**TAGS, "region": "ap"}, priority=9)
    queues = [Queue(ORG, PROVISIONER, eu_tags), Queue(ORG, PROVISIONER, us_tags)]
    order = [(await claim(store, queues, "w")).id for _ in range(4)]
    assert order == [us_high.id, eu_old.id, us_old.id, eu_new.id]
    assert await store.claim_job(queues, "w") is None
    assert (await fetch(store, other.id)).status is JobStatus.PENDING


async def test_concurrent_claims_take_each_job_once(store: Store) -> None:
    """30 concurrent claims on 10 pending jobs: each job once, 20 get None."""
    jobs = [await make_job(store) for _ in range(10)]
    results: list[Job | None] = []

    async def claim(worker: int) -> None:
        results.append(await store.claim_job([DEFAULT_QUEUE], f"w{worker}"))

    async with trio.open_nursery() as nursery:
        for worker in range(30):
            nursery.start_soon(claim, worker)

    claimed = [job for job in results if job is not None]
    assert len(results) == 30
    assert results.count(None) == 20
    assert sorted(ids(claimed)) == sorted(ids(jobs))
    assert len({job.daemon_id for job in claimed}) == 10
    for job in claimed:
        assert await store.get_job(job.id) == job


# -- pending_queues and queue_position ---------------------------------------


async def test_pending_queues_lists_queues_of_created_jobs(store: Store) -> None:
    """pending_queues holds the (organization, provisioner, tags) of each created job."""
    assert await store.pending_queues() == []
    a = await make_job(store)
    b = await make_job(store, organization="org-b", provisioner="terraform")
    c = await make_job(store, tags={**TAGS, "region": "eu"})
    await make_job(store)  # same queue as `a`
    queues = await store.pending_queues()
    as_keys = sorted((q.organization, q.provisioner, sorted(q.tags.items())) for q in queues)
    want = sorted(
        (q.organization, q.provisioner, sorted(q.tags.items())) for q in map(queue_of, (a, b, c))
    )
    assert as_keys == want


async def test_queue_position_counts_pending_jobs_of_same_queue(store: Store) -> None:
    """A pending job's position is 1-based among pending jobs of its queue only."""
    first = await make_job(store)
    await make_job(store, tags={**TAGS, "region": "eu"})  # another queue
    await make_job(store, organization="org-b")  # another queue
    second = await make_job(store)
    third = await make_job(store)
    assert await store.queue_position(first) == QueuePosition(1, 3)
    assert await store.queue_position(second) == QueuePosition(2, 3)
    assert await store.queue_position(third) == QueuePosition(3, 3)


async def test_queue_position_honours_priority(store: Store) -> None:
    """A higher-priority job is ahead of older ones of lower priority."""
    old = await make_job(store, priority=0)
    urgent = await make_job(store, priority=5)
    newer = await make_job(store, priority=0)
    assert await store.queue_position(urgent) == QueuePosition(1, 3)
    assert await store.queue_position(old) == QueuePosition(2, 3)
    assert await store.queue_position(newer) == QueuePosition(3, 3)


async def test_queue_position_moves_up_as_jobs_leave(store: Store) -> None:
    """Claimed and canceled jobs no longer count in their queue."""
    first = await make_job(store)
    second = await make_job(store)
    third = await make_job(store)
    await store.claim_job([DEFAULT_QUEUE], "w1")
    await store.cancel_job(second.id)
    assert (await fetch(store, first.id)).status is JobStatus.RUNNING
    assert await store.queue_position(third) == QueuePosition(1, 1)


async def test_queue_position_is_zero_once_started(store: Store) -> None:
    """A running job's queue position is (0, 0)."""
    job = await make_job(store)
    await make_job(store)
    claimed = await store.claim_job([DEFAULT_QUEUE], "w1")
    assert claimed is not None and claimed.id == job.id
    assert await store.queue_position(claimed) == QueuePosition(0, 0)


async def test_queue_position_is_zero_once_completed(store: Store) -> None:
    """A completed (canceled) job's queue position is (0, 0)."""
    job = await make_job(store)
    await make_job(store)
    canceled = await store.cancel_job(job.id)
    assert await store.queue_position(canceled) == QueuePosition(0, 0)


# -- logs --------------------------------------------------------------------


async def test_append_logs_returns_increasing_ids(store: Store) -> None:
    """Appended lines get increasing ids and read back in order with their fields."""
    job = await make_job(store, logs=[log("zero")])
    first = await store.append_logs(job.id, [log("one"), log("two")])
    second = await store.append_logs(
        job.id,
        [log("three", source=LogSource.PROVISIONER, level=LogLevel.ERROR, created_at=1234)],
    )
    appended = first + second
    assert [line.output for line in appended] == ["one", "two", "three"]
    read = await store.read_logs(job.id)
    assert [line.output for line in read] == ["zero", "one", "two", "three"]
    assert read[1:] == appended
    line_ids = [line.id for line in read]
    assert line_ids == sorted(line_ids) and len(set(line_ids)) == 4
    last = read[-1]
    assert (last.source, last.level, last.created_at) == (
        LogSource.PROVISIONER,
        LogLevel.ERROR,
        1234,
    )


async def test_read_logs_after_skips_older_lines(store: Store) -> None:
    """read_logs(after=id) returns only lines with a greater id."""
    job = await make_job(store)
    lines = await store.append_logs(job.id, [log(str(n)) for n in range(5)])
    assert [line.output for line in await store.read_logs(job.id, after=lines[1].id)] == [
        "2",
        "3",
        "4",
    ]
    assert await store.read_logs(job.id, after=lines[-1].id) == []


async def test_read_logs_limit_caps_the_answer(store: Store) -> None:
    """read_logs returns at most `limit` lines, oldest first."""
    job = await make_job(store)
    await store.append_logs(job.id, [log(str(n)) for n in range(5)])
    assert [line.output for line in await store.read_logs(job.id, limit=2)] == ["0", "1"]


async def test_read_logs_is_per_job(store: Store) -> None:
    """read_logs returns only the lines of the job asked for."""
    a = await make_job(store)
    b = await make_job(store)
    await store.append_logs(a.id, [log("a1")])
    await store.append_logs(b.id, [log("b1")])
    await store.append_logs(a.id, [log("a2")])
    assert [line.output for line in await store.read_logs(a.id)] == ["a1", "a2"]
    assert [line.output for line in await store.read_logs(b.id)] == ["b1"]


async def test_append_logs_to_unknown_job_raises_not_found(store: Store) -> None:
    """Appending to an id never created raises NotFound and stores nothing."""
    job_id = str(uuid.uuid4())
    with pytest.raises(NotFound):
        await store.append_logs(job_id, [log("orphan")])
    assert await store.read_logs(job_id) == []


# -- durability and write isolation ------------------------------------------


async def test_reopened_store_keeps_everything(open_store: StoreFactory) -> None:
    """Files, jobs, states and logs survive closing and reopening the store."""
    async with open_store() as store:
        waiting = await make_job(store, logs=[log("queued")])
        urgent = await make_job(store, priority=3)
        assert (await claim(store, [DEFAULT_QUEUE], "w1")).id == urgent.id
        await store.append_logs(waiting.id, [log("more")])
        jobs_before = await all_jobs(store)
        logs_before = await store.read_logs(waiting.id)

    async with open_store() as store:
        assert await all_jobs(store) == jobs_before
        assert (await fetch(store, urgent.id)).status is JobStatus.RUNNING
        assert (await fetch(store, waiting.id)).status is JobStatus.PENDING
        assert await store.read_logs(waiting.id) == logs_before
        assert [line.output for line in logs_before] == ["queued", "more"]
        assert await store.get_file_data(waiting.file_hash) == ARCHIVE
        assert DEFAULT_QUEUE in await store.pending_queues()
        assert (await claim(store, [DEFAULT_QUEUE], "w2")).id == waiting.id
        newer = await make_job(store)
        assert newer.seq > max(job.seq for job in jobs_before)


async def test_failing_write_in_concurrent_burst_fails_alone(store: Store) -> None:
    """One bad create_job among 20 concurrent ones raises alone; the others persist."""
    stored = await store.put_file(ARCHIVE, TAR)
    missing = hashlib.sha256(b"never stored").hexdigest()
    good = [new_job(stored.hash, input=str(n).encode()) for n in range(19)]
    bad = new_job(missing)
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
        assert [line.output for line in await store.read_logs(new.id)] == [f"queued {new.id}"]
    assert sorted(ids(await all_jobs(store))) == sorted(new.id for new in good)


async def test_duplicate_job_id_fails_alone(store: Store) -> None:
    """A create_job reusing a job id fails alone: the original and the others stay."""
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
    assert [line.output for line in await store.read_logs(original.id)] == ["original"]
    assert sorted(ids(await all_jobs(store))) == sorted([original.id, *(new.id for new in good)])


async def test_closed_store_refuses_writes(open_store: StoreFactory) -> None:
    """A write on a store that was closed raises StoreClosed."""
    async with open_store() as store:
        job = await make_job(store)
    with pytest.raises(StoreClosed):
        await store.append_logs(job.id, [log("late")])
    with pytest.raises(StoreClosed):
        await store.put_file(b"late", TAR)


async def test_closed_store_refuses_reads(open_store: StoreFactory) -> None:
    """A read on a store that was closed raises StoreClosed."""
    async with open_store() as store:
        job = await make_job(store)
    with pytest.raises(StoreClosed):
        await store.get_job(job.id)
    with pytest.raises(StoreClosed):
        await store.read_logs(job.id)

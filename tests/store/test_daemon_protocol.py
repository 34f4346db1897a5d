"""release_job, update_job, complete_job, fail_job and running_jobs_by_daemon:
what a daemon does with the job it holds."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable

import pytest

from provd.errors import InvalidArgument
from provd.model import JobStatus, JobType, JobUpdate, LogLevel, LogSource, QueuePosition
from provd.store import Store
from provd.store._rules import FAILED_WITHOUT_REASON, LOGS_TRUNCATED

from .conftest import Clock
from .holder_checks import HolderChecks
from .support import (
    DEFAULT_QUEUE,
    claim,
    fetch,
    ids,
    log,
    make_job,
    make_running,
    outputs,
    queue_of,
    update_logs,
)


class TestReleaseJob:
    async def test_job_is_pending_again(self, store: Store, clock: Clock) -> None:
        """A released job is pending: not started, held by nobody, updated now, and
        otherwise the job it was."""
        job = await make_job(store)
        claimed = await claim(store, [DEFAULT_QUEUE], "d1")
        now = clock.advance()
        released = await store.release_job(job.id, "d1")
        assert released == dataclasses.replace(job, updated_at=now)
        assert released.status is JobStatus.PENDING
        assert released.seq == claimed.seq
        assert await store.get_job(job.id) == released

    async def test_job_keeps_its_place_at_the_head(self, store: Store) -> None:
        """A released job goes back where it was, ahead of the jobs created after it."""
        first = await make_job(store)
        second = await make_job(store)
        third = await make_job(store)
        assert (await claim(store, [DEFAULT_QUEUE], "d1")).id == first.id
        released = await store.release_job(first.id, "d1")
        assert released is not None
        assert await store.queue_position(released) == QueuePosition(1, 3)
        order = [(await claim(store, [DEFAULT_QUEUE], "d2")).id for _ in range(3)]
        assert order == ids([first, second, third])

    async def test_place_is_by_priority_then_age(self, store: Store) -> None:
        """The released job's place is its (priority, creation) place: ahead of older
        jobs of lower priority and newer ones of its priority, behind a higher-priority
        job that arrived while it was out."""
        older_low = await make_job(store, priority=0)
        job = await make_job(store, priority=5)
        assert (await claim(store, [DEFAULT_QUEUE], "d1")).id == job.id
        urgent = await make_job(store, priority=9)
        newer_same = await make_job(store, priority=5)
        released = await store.release_job(job.id, "d1")
        assert released is not None
        assert await store.queue_position(released) == QueuePosition(2, 4)
        order = [(await claim(store, [DEFAULT_QUEUE], "d2")).id for _ in range(4)]
        assert order == ids([urgent, job, newer_same, older_low])

    async def test_canceled_meanwhile_ends_canceled(self, store: Store, clock: Clock) -> None:
        """A job canceled while its claim was in flight ends canceled, never pending."""
        job = await make_job(store)
        await claim(store, [DEFAULT_QUEUE], "d1")
        canceled_at = clock.advance()
        await store.cancel_job(job.id)
        now = clock.advance()
        released = await store.release_job(job.id, "d1")
        assert released is not None
        assert released.status is JobStatus.CANCELED
        assert (released.started_at, released.daemon_id) == (None, None)
        assert released.canceled_at == canceled_at
        assert released.completed_at == released.updated_at == now
        assert await store.get_job(job.id) == released
        assert await store.claim_job([DEFAULT_QUEUE], "d2") is None

    async def test_appends_logs_when_released(self, store: Store) -> None:
        job = await make_running(store, "d1", logs=[log("queued")])
        await store.release_job(job.id, "d1", [log("not delivered; back to the queue")])
        assert await outputs(store, job.id) == ["queued", "not delivered; back to the queue"]

    async def test_another_daemon_may_claim_it(self, store: Store) -> None:
        job = await make_running(store, "d1")
        await store.release_job(job.id, "d1")
        assert await store.running_jobs_by_daemon() == {}
        again = await claim(store, [queue_of(job)], "d2")
        assert (again.id, again.daemon_id) == (job.id, "d2")

    @pytest.mark.parametrize(
        "state",
        ["unknown", "pending", "other daemon", "released", "canceled pending", "succeeded"],
    )
    async def test_none_unless_the_daemon_holds_it(self, store: Store, state: str) -> None:
        """release_job answers None, changes nothing and writes no line for a job the
        daemon does not hold (it raises no holder-check error)."""
        job_id = await _job_in(store, state)
        before = await store.get_job(job_id)
        logs_before = await store.read_logs(job_id)
        assert await store.release_job(job_id, "d1", [log("released")]) is None
        assert await store.get_job(job_id) == before
        assert await store.read_logs(job_id) == logs_before


async def _job_in(store: Store, state: str) -> str:
    """A job `d1` does not hold, in the named state."""
    if state == "unknown":
        return str(uuid.uuid4())
    if state == "pending":
        return (await make_job(store)).id
    if state == "canceled pending":
        return (await store.cancel_job((await make_job(store)).id)).id
    if state == "other daemon":
        return (await make_running(store, "d2")).id
    job = await make_running(store, "d1")
    if state == "released":
        assert await store.release_job(job.id, "d1") is not None
    else:
        await store.complete_job(job.id, "d1", b"done")
    return job.id


class TestUpdateJob(HolderChecks):
    async def call(self, store: Store, job_id: str, daemon_id: str) -> object:
        update = JobUpdate(logs=(log("refused"),), readme=b"readme")
        return await store.update_job(job_id, daemon_id, update)

    async def test_heartbeat_refreshes_updated_at_only(self, store: Store, clock: Clock) -> None:
        job = await make_running(store, "d1")
        now = clock.advance()
        updated = await store.update_job(job.id, "d1", JobUpdate())
        assert updated == dataclasses.replace(job, updated_at=now)
        assert await store.get_job(job.id) == updated
        assert await store.read_logs(job.id) == []

    async def test_stores_readme_and_template_variables(self, store: Store) -> None:
        """readme and template variables replace the stored ones; None keeps them."""
        job = await make_running(store, "d1")
        first = await store.update_job(
            job.id, "d1", JobUpdate(readme=b"# readme", template_variables=b"vars-1")
        )
        assert (first.readme, first.template_variables) == (b"# readme", b"vars-1")
        second = await store.update_job(job.id, "d1", JobUpdate(template_variables=b"vars-2"))
        assert (second.readme, second.template_variables) == (b"# readme", b"vars-2")
        third = await store.update_job(job.id, "d1", JobUpdate(readme=b""))
        assert (third.readme, third.template_variables) == (b"", b"vars-2")
        assert await store.get_job(job.id) == third

    async def test_appends_logs(self, store: Store, clock: Clock) -> None:
        job = await make_running(store, "d1", logs=[log("queued")])
        now = clock.advance()
        await update_logs(store, job, [log("a"), log("b", created_at=7)])
        read = await store.read_logs(job.id)
        assert [(line.output, line.created_at) for line in read[1:]] == [("a", now), ("b", 7)]

    async def test_lines_come_back_exactly_as_sent(self, store: Store) -> None:
        """Every character, every field, in order, with consecutive ids: quotes,
        backslashes, JSON look-alikes, astral and separator characters, long lines.
        (No NUL: the service shows it as U+FFFD before a store sees it.)"""
        job = await make_running(store, "d1")
        sent = [
            log('say "hi" \\ {"a": [1]}', stage="Plan ☃"),
            log("😀 \u2028 \u2029 \t\r\n end", source=LogSource.PROVISIONER),
            log("x" * 5000, level=LogLevel.ERROR, created_at=123),
            log("", stage=""),
        ]
        await update_logs(store, job, sent)
        read = await store.read_logs(job.id)
        assert [(line.stage, line.output, line.source, line.level) for line in read] == [
            (line.stage, line.output, line.source, line.level) for line in sent
        ]
        assert read[2].created_at == 123
        assert [line.id for line in read] == list(range(read[0].id, read[0].id + len(sent)))

    async def test_canceling_job_can_still_report(self, store: Store, clock: Clock) -> None:
        """A job asked to cancel is still its daemon's: updates land, it stays CANCELING."""
        job = await make_running(store, "d1")
        await store.cancel_job(job.id)
        now = clock.advance()
        updated = await update_logs(store, job, [log("stopping")])
        assert updated.status is JobStatus.CANCELING
        assert updated.updated_at == now
        assert await outputs(store, job.id) == ["stopping"]

    # -- the log budget: UTF-8 bytes of stage and output, one marker past it --

    async def test_lines_that_fit_the_budget_exactly_are_kept(self, store: Store) -> None:
        job = await make_running(store, "d1")
        lines = [log("12345", stage="ab"), log("123", stage="")]  # 7 + 3 bytes
        updated = await update_logs(store, job, lines, budget=10)
        assert await outputs(store, job.id) == ["12345", "123"]
        assert updated.logs_overflowed is False

    async def test_line_past_the_budget_becomes_one_marker(
        self, store: Store, clock: Clock
    ) -> None:
        """The line that crosses the budget is replaced by one WARN marker (with that
        line's stage, source and time) and the lines after it are dropped."""
        job = await make_running(store, "d1")
        now = clock.advance()
        lines = [
            log("12345", stage="ab"),  # 7 bytes
            log("1234", stage="Apply", source=LogSource.PROVISIONER),  # 9: crosses 10
            log("dropped"),
        ]
        updated = await update_logs(store, job, lines, budget=10)
        read = await store.read_logs(job.id)
        assert [line.output for line in read] == ["12345", LOGS_TRUNCATED.format(limit=10)]
        marker = read[1]
        assert (marker.level, marker.stage, marker.source, marker.created_at) == (
            LogLevel.WARN,
            "Apply",
            LogSource.PROVISIONER,
            now,
        )
        assert updated.logs_overflowed is True
        assert (await fetch(store, job.id)).logs_overflowed is True

    async def test_marker_takes_the_crossing_lines_time(self, store: Store) -> None:
        job = await make_running(store, "d1")
        await update_logs(store, job, [log("x" * 20, created_at=42)], budget=10)
        (marker,) = await store.read_logs(job.id)
        assert (marker.output, marker.created_at) == (LOGS_TRUNCATED.format(limit=10), 42)

    async def test_budget_counts_across_updates(self, store: Store) -> None:
        job = await make_running(store, "d1")
        first = await update_logs(store, job, [log("123456", stage="")], budget=10)
        assert first.logs_overflowed is False
        await update_logs(store, job, [log("1234", stage="")], budget=10)  # exactly 10
        await update_logs(store, job, [log("1", stage="")], budget=10)
        assert await outputs(store, job.id) == ["123456", "1234", LOGS_TRUNCATED.format(limit=10)]

    async def test_exactly_one_marker(self, store: Store, clock: Clock) -> None:
        """Once over budget, later updates store no line at all, not even a second
        marker, but still heartbeat and store the readme."""
        job = await make_running(store, "d1")
        await update_logs(store, job, [log("x" * 30)], budget=10)
        for _ in range(3):
            await update_logs(store, job, [log("more"), log("x" * 30)], budget=10)
        await update_logs(store, job, [log("y")], budget=10_000)  # a larger budget changes nothing
        now = clock.advance()
        later = await store.update_job(
            job.id, "d1", JobUpdate(logs=(log("z"),), readme=b"r", log_budget_bytes=10)
        )
        assert (later.updated_at, later.readme, later.logs_overflowed) == (now, b"r", True)
        assert await outputs(store, job.id) == [LOGS_TRUNCATED.format(limit=10)]

    async def test_budget_is_in_utf8_bytes(self, store: Store) -> None:
        """Characters cost their UTF-8 size: 'é' two bytes, '€' three, in the output
        and in the stage alike."""
        job = await make_running(store, "d1")
        await update_logs(store, job, [log("ééé", stage="€")], budget=10)  # 6 + 3 bytes
        await update_logs(store, job, [log("a", stage="")], budget=10)  # 10: fits
        await update_logs(store, job, [log("é", stage="")], budget=11)  # 12: over 11
        assert await outputs(store, job.id) == ["ééé", "a", LOGS_TRUNCATED.format(limit=11)]
        other = await make_running(store, "d2")
        await update_logs(store, other, [log("€€€€", stage="")], budget=10)  # 12 > 10
        assert await outputs(store, other.id) == [LOGS_TRUNCATED.format(limit=10)]

    async def test_provds_own_lines_count_but_are_never_cut(self, store: Store) -> None:
        """Lines written by create_job, cancel_job and fail_job count against the
        budget, and are stored even past it."""
        job = await make_running(store, "d1", logs=[log("123456", stage="")])  # 6 bytes
        await store.cancel_job(job.id, [log("12", stage="")])  # 8 bytes
        await update_logs(store, job, [log("123", stage="")], budget=10)  # 11: over
        await store.fail_job(job.id, "d1", "boom", logs=[log("x" * 50, stage="")])
        assert await outputs(store, job.id) == [
            "123456",
            "12",
            LOGS_TRUNCATED.format(limit=10),
            "x" * 50,
        ]


class TestCompleteJob(HolderChecks):
    async def call(self, store: Store, job_id: str, daemon_id: str) -> object:
        return await store.complete_job(job_id, daemon_id, b"refused")

    async def test_job_succeeds_with_its_result(self, store: Store, clock: Clock) -> None:
        job = await make_running(store, "d1")
        now = clock.advance()
        done = await store.complete_job(job.id, "d1", b"\x00result\xff")
        assert done == dataclasses.replace(
            job, completed_at=now, updated_at=now, result=b"\x00result\xff"
        )
        assert done.status is JobStatus.SUCCEEDED
        assert done.holder_id is None
        assert await store.get_job(job.id) == done

    async def test_canceling_job_ends_canceled(self, store: Store) -> None:
        """A job asked to cancel that completes anyway ends CANCELED, result kept."""
        job = await make_running(store, "d1")
        await store.cancel_job(job.id)
        done = await store.complete_job(job.id, "d1", b"partial")
        assert done.status is JobStatus.CANCELED
        assert done.result == b"partial"

    @pytest.mark.parametrize("job_type", list(JobType))
    async def test_only_as_its_own_type(self, store: Store, job_type: JobType) -> None:
        """Completed as another type, a job is refused and stays running, as it was;
        completed as its own type (or with no type given), it succeeds."""
        job = await make_running(store, "d1")
        if job_type is job.type:
            done = await store.complete_job(job.id, "d1", b"ok", job_type)
            assert done.status is JobStatus.SUCCEEDED
            return
        with pytest.raises(InvalidArgument) as refused:
            await store.complete_job(job.id, "d1", b"wrong", job_type)
        assert str(refused.value) == (
            f"type: job {job.id} is a {job.type.value}, not a {job_type.value}"
        )
        assert await store.get_job(job.id) == job
        assert (await store.complete_job(job.id, "d1", b"ok")).status is JobStatus.SUCCEEDED

    async def test_job_is_no_longer_running(self, store: Store) -> None:
        job = await make_running(store, "d1")
        await store.complete_job(job.id, "d1", b"")
        assert await store.running_jobs_by_daemon() == {}
        assert await store.claim_job([queue_of(job)], "d2") is None


class TestFailJob(HolderChecks):
    async def call(self, store: Store, job_id: str, daemon_id: str) -> object:
        return await store.fail_job(job_id, daemon_id, "refused", logs=[log("refused")])

    async def test_job_fails_with_error_and_code(self, store: Store, clock: Clock) -> None:
        job = await make_running(store, "d1")
        now = clock.advance()
        failed = await store.fail_job(job.id, "d1", "terraform exploded", "SOME_CODE")
        assert failed == dataclasses.replace(
            job,
            completed_at=now,
            updated_at=now,
            error="terraform exploded",
            error_code="SOME_CODE",
        )
        assert failed.status is JobStatus.FAILED
        assert await store.get_job(job.id) == failed

    async def test_stores_the_result_if_given(self, store: Store) -> None:
        job = await make_running(store, "d1")
        failed = await store.fail_job(job.id, "d1", "boom", result=b"partial state")
        assert failed.result == b"partial state"

    async def test_empty_error_on_a_running_job_still_fails_it(self, store: Store) -> None:
        """An empty error means canceled only for a job asked to cancel; any other job
        fails with a reason that says none was given."""
        job = await make_running(store, "d1")
        failed = await store.fail_job(job.id, "d1", "")
        assert failed.status is JobStatus.FAILED
        assert failed.error == FAILED_WITHOUT_REASON

    async def test_empty_error_on_a_canceling_job_cancels_it(self, store: Store) -> None:
        job = await make_running(store, "d1")
        await store.cancel_job(job.id)
        canceled = await store.fail_job(job.id, "d1", "", "")
        assert canceled.status is JobStatus.CANCELED
        assert canceled.error == ""

    async def test_error_on_a_canceling_job_fails_it(self, store: Store) -> None:
        job = await make_running(store, "d1")
        await store.cancel_job(job.id)
        failed = await store.fail_job(job.id, "d1", "could not stop")
        assert failed.status is JobStatus.FAILED

    async def test_appends_logs(self, store: Store, clock: Clock) -> None:
        job = await make_running(store, "d1", logs=[log("queued")])
        now = clock.advance()
        await store.fail_job(job.id, "d1", "boom", logs=[log("failed: boom", level=LogLevel.ERROR)])
        last = (await store.read_logs(job.id))[-1]
        assert (last.output, last.level, last.created_at) == ("failed: boom", LogLevel.ERROR, now)
        assert await outputs(store, job.id) == ["queued", "failed: boom"]


class TestRunningJobsByDaemon:
    async def test_none_running(self, store: Store) -> None:
        await make_job(store)
        assert await store.running_jobs_by_daemon() == {}

    async def test_maps_each_daemon_to_the_job_it_holds(self, store: Store) -> None:
        """Running and canceling jobs count; pending, released and completed ones do not."""
        running = await make_running(store, "d1")
        canceling = await make_running(store, "d2")
        await store.cancel_job(canceling.id)
        await make_job(store)
        released = await make_running(store, "d3")
        await store.release_job(released.id, "d3")
        finishers: list[Callable[[str], Awaitable[object]]] = [
            lambda job_id: store.complete_job(job_id, "d4", b""),
            lambda job_id: store.fail_job(job_id, "d4", "boom"),
        ]
        for finish in finishers:
            await finish((await make_running(store, "d4")).id)
        assert await store.running_jobs_by_daemon() == {"d1": running.id, "d2": canceling.id}

"""JobService.GetJobHistory and `provd jobs history` over a real server: jobs finished
per bucket by outcome and the queue depth (docs/dashboard.md's Activity page).

The server runs on the real clock, so a test finds a job's bucket from the job's own
`completedAt` rather than assuming that everything happened in the current minute.
"""

from __future__ import annotations

import json

import pytest
import trio
from click.testing import CliRunner
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from provd.cli import main
from provd.client.connect import call, job_client
from provd.gen.provd.v1 import jobs_pb2 as pb
from tests.conftest import ADMIN_TOKEN, Server
from tests.daemon_clients import Jobs, TestDaemon

MINUTE_MS = 60_000


async def history(server: Server, **fields: object) -> pb.JobHistory:
    client = job_client(server.url, ADMIN_TOKEN)
    return await call(client.get_job_history, pb.GetJobHistoryRequest(**fields))  # type: ignore[arg-type]


def bucket_of(history: pb.JobHistory, job: pb.Job) -> pb.JobHistoryBucket:
    """The bucket that holds the job's completion."""
    width = history.bucket_seconds * 1000
    start = job.completed_at.ToMilliseconds() // width * width
    (found,) = [b for b in history.buckets if b.start.ToMilliseconds() == start]
    return found


def totals(history: pb.JobHistory) -> tuple[int, int, int]:
    return (
        sum(b.succeeded for b in history.buckets),
        sum(b.failed for b in history.buckets),
        sum(b.canceled for b in history.buckets),
    )


async def finish_three_ways(server: Server, nursery: trio.Nursery) -> list[pb.Job]:
    """One job succeeded, one failed (through the daemon protocol), one canceled while
    pending, and one left pending (no daemon offers terraform); returns them."""
    jobs = Jobs(server)
    daemon = TestDaemon(server, "worker")
    finished = []
    for end in ("succeed", "fail"):
        created = await jobs.create()
        assert (await (await daemon.acquire(nursery)).wait()).job_id == created.id
        if end == "succeed":
            await daemon.complete(created.id)
        else:
            await daemon.fail(created.id, "boom")
        finished.append(await jobs.get(created.id))
    canceled = await jobs.cancel((await jobs.create(provisioner="terraform")).id)
    pending = await jobs.create(provisioner="terraform", organization="acme")
    return [*finished, canceled, pending]


async def test_counts_jobs_by_outcome_and_the_queue_depth(
    server: Server, nursery: trio.Nursery
) -> None:
    succeeded, failed, canceled, pending = await finish_three_ways(server, nursery)
    assert [j.status for j in (succeeded, failed, canceled, pending)] == [
        pb.JOB_STATUS_SUCCEEDED,
        pb.JOB_STATUS_FAILED,
        pb.JOB_STATUS_CANCELED,
        pb.JOB_STATUS_PENDING,
    ]
    answer = await history(server)
    # The defaults: an hour of minutes, aligned to the minute, the last one now.
    assert (len(answer.buckets), answer.bucket_seconds) == (60, 60)
    starts = [b.start.ToMilliseconds() for b in answer.buckets]
    assert all(start % MINUTE_MS == 0 for start in starts)
    assert starts == [starts[0] + i * MINUTE_MS for i in range(60)]
    assert starts[-1] <= answer.read_at.ToMilliseconds() < starts[-1] + MINUTE_MS
    assert totals(answer) == (1, 1, 1)
    assert bucket_of(answer, succeeded).succeeded >= 1
    assert bucket_of(answer, failed).failed >= 1
    assert bucket_of(answer, canceled).canceled >= 1
    assert answer.pending == answer.buckets[-1].pending == 1

    # One organization: default has the finished jobs, acme the pending one.
    default = await history(server, organization="default")
    assert (totals(default), default.pending) == ((1, 1, 1), 0)
    acme = await history(server, organization="acme")
    assert (totals(acme), acme.pending) == ((0, 0, 0), 1)


async def test_a_window_and_buckets_of_its_own(server: Server) -> None:
    answer = await history(server, window_seconds=600, bucket_seconds=120)
    assert (len(answer.buckets), answer.bucket_seconds) == (5, 120)
    widths = {
        b.start.ToMilliseconds() - a.start.ToMilliseconds()
        for a, b in zip(answer.buckets, answer.buckets[1:], strict=False)
    }
    assert widths == {120_000}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"window_seconds": -1}, "windowSeconds: must be between 1 and 86400, got -1"),
        ({"window_seconds": 86_401}, "windowSeconds: must be between 1 and 86400"),
        ({"bucket_seconds": -5}, "bucketSeconds: must be between 1 and windowSeconds (3600)"),
        ({"window_seconds": 60, "bucket_seconds": 120}, "bucketSeconds: must be between 1"),
        ({"bucket_seconds": 1}, "bucketSeconds: 1 makes 3600 buckets of a 3600 s window"),
        ({"organization": "not an organization!"}, "organization"),
    ],
)
async def test_refuses_what_it_cannot_answer(
    server: Server, fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ConnectError) as caught:
        await history(server, **fields)
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert message in str(caught.value)


async def test_needs_the_admin_token(server: Server) -> None:
    client = job_client(server.url, "wrong-token")
    with pytest.raises(ConnectError) as caught:
        await call(client.get_job_history, pb.GetJobHistoryRequest())
    assert caught.value.code == Code.UNAUTHENTICATED


async def provd(server: Server, *args: str) -> str:
    """`provd ARGS…` in-process against the server; its standard output."""
    env = {"PROVD_URL": server.url, "PROVD_ADMIN_TOKEN": ADMIN_TOKEN}
    result = await trio.to_thread.run_sync(
        lambda: CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    )
    assert result.exit_code == 0, result.output
    return result.stdout


async def test_cli_jobs_history(server: Server, nursery: trio.Nursery) -> None:
    await finish_three_ways(server, nursery)
    document = json.loads(await provd(server, "jobs", "history", "--json", "--window", "10m"))
    assert (len(document["buckets"]), document["bucketSeconds"], document["pending"]) == (10, 60, 1)
    finished = [
        sum(int(b.get(outcome, 0)) for b in document["buckets"])
        for outcome in ("succeeded", "failed", "canceled")
    ]
    assert finished == [1, 1, 1]

    lines = await provd(server, "jobs", "history", "--window", "5m", "--bucket", "60s")
    rows = lines.splitlines()
    assert rows[0].split() == ["FROM", "SUCCEEDED", "FAILED", "CANCELED", "PENDING"]
    table = [row.split() for row in rows[2:7]]
    assert [sum(int(cells[i]) for cells in table) for i in (2, 3, 4)] == [1, 1, 1]
    assert table[-1][-1] == "1"
    assert rows[-1] == "Pending now: 1"


async def test_cli_refuses_a_bad_duration(server: Server) -> None:
    env = {"PROVD_URL": server.url, "PROVD_ADMIN_TOKEN": ADMIN_TOKEN}
    result = await trio.to_thread.run_sync(
        lambda: CliRunner().invoke(main, ["jobs", "history", "--window", "soon"], env=env)
    )
    assert result.exit_code == 2
    assert "'soon' is not a duration such as 90s, 15m or 2h" in result.output

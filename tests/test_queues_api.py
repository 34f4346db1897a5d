"""JobService.ListQueues over a real server: the pending jobs per (organization,
provisioner, tags), the oldest wait, and which connected daemons can take each queue,
or why none can (docs/contract/api.md, docs/dashboard.md's Queues page).

A job that a connected, idle daemon can take is claimed at once, so a queue that has
daemons able to take it is one whose daemons are busy: here, one running another job.
"""

from __future__ import annotations

import pytest
import trio
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from provd.client.connect import call, job_client
from provd.gen.provd.v1 import jobs_pb2 as pb
from tests.conftest import ADMIN_TOKEN, Server
from tests.daemon_clients import Jobs, TestDaemon, wait_until


async def list_queues(server: Server, organization: str = "") -> list[pb.JobQueue]:
    client = job_client(server.url, ADMIN_TOKEN)
    response = await call(client.list_queues, pb.ListQueuesRequest(organization=organization))
    return list(response.queues)


def key(queue: pb.JobQueue) -> tuple[str, str, dict[str, str]]:
    return queue.organization, queue.provisioner, dict(queue.tags)


async def test_no_pending_jobs_no_queues(server: Server) -> None:
    assert await list_queues(server) == []


async def test_a_queue_no_daemon_can_take_says_why(server: Server) -> None:
    jobs = Jobs(server)
    first = await jobs.create(provisioner="terraform", tags={"os": "windows"})
    second = await jobs.create(provisioner="terraform", tags={"os": "windows"})
    elsewhere = await jobs.create(provisioner="echo", organization="acme")

    queues = await list_queues(server)
    assert [key(q) for q in queues] == [
        ("default", "terraform", {"os": "windows", "owner": "", "scope": "organization"}),
        ("acme", "echo", {"owner": "", "scope": "organization"}),
    ]  # the longest-waiting first
    windows, acme = queues
    assert windows.pending == 2
    assert windows.oldest_created_at == first.created_at
    assert second.created_at.ToMilliseconds() >= first.created_at.ToMilliseconds()
    assert list(windows.daemons) == []
    assert windows.unroutable_reason.startswith("no daemon is connected in organization 'default'")
    assert "provisioner 'terraform'" in windows.unroutable_reason
    assert "os=windows" in windows.unroutable_reason
    # The same words as the job's own pending reason.
    assert windows.unroutable_reason in (await jobs.get(first.id)).pending_reason
    assert acme.pending == 1 and acme.oldest_created_at == elsewhere.created_at
    assert "organization 'acme'" in acme.unroutable_reason

    # Only one organization's queues.
    assert [key(q) for q in await list_queues(server, "acme")] == [key(acme)]
    assert await list_queues(server, "nobody") == []

    # Canceled: no longer pending, the queue is gone.
    await jobs.cancel(elsewhere.id)
    assert [key(q) for q in await list_queues(server)] == [key(windows)]


async def test_the_closest_daemon_is_named_when_its_tags_differ(
    server: Server, nursery: trio.Nursery
) -> None:
    daemon = TestDaemon(server, "linux-box", provisioners=("terraform",), tags={"os": "linux"})
    acquisition = await daemon.acquire(nursery)
    await wait_until(lambda: server.scheduler.statistics().waiters == 1)
    await Jobs(server).create(provisioner="terraform", tags={"os": "windows"})

    (queue,) = await list_queues(server)
    assert (queue.pending, list(queue.daemons)) == (1, [])
    assert "the closest, 'linux-box'" in queue.unroutable_reason
    assert "os=linux instead of windows" in queue.unroutable_reason
    acquisition.requests.cancel()
    await acquisition.wait()


async def test_a_queue_names_the_busy_daemons_that_can_take_it(
    server: Server, nursery: trio.Nursery
) -> None:
    jobs = Jobs(server)
    daemon = TestDaemon(server, "worker", provisioners=("echo",))
    running = await jobs.create()
    assert (await (await daemon.acquire(nursery)).wait()).job_id == running.id
    # Another daemon, not able to take echo jobs: not listed for the queue.
    other = TestDaemon(server, "other", provisioners=("terraform",))
    waiting = await other.acquire(nursery)
    await wait_until(lambda: server.scheduler.statistics().waiters == 1)

    waits = [await jobs.create(), await jobs.create()]
    (queue,) = await list_queues(server)
    assert key(queue) == ("default", "echo", {"owner": "", "scope": "organization"})
    assert queue.pending == 2
    assert queue.oldest_created_at == waits[0].created_at
    assert queue.unroutable_reason == ""
    assert [(d.name, d.current_job_id) for d in queue.daemons] == [("worker", running.id)]
    assert queue.daemons[0].id
    # Its jobs' own reason agrees: they wait for a free daemon.
    assert (await jobs.get(waits[0].id)).pending_reason.startswith("Waiting for a free daemon")

    # The daemon finishes and takes the next one: one left, the daemon on its new job.
    await daemon.complete(running.id)
    taken = await (await daemon.acquire(nursery)).wait()
    assert taken.job_id == waits[0].id
    (queue,) = await list_queues(server)
    assert queue.pending == 1 and queue.oldest_created_at == waits[1].created_at
    assert [(d.name, d.current_job_id) for d in queue.daemons] == [("worker", waits[0].id)]

    waiting.requests.cancel()
    await waiting.wait()


@pytest.mark.parametrize(
    ("token", "fragment"), [(None, "missing credentials"), ("wrong-token", "invalid admin token")]
)
async def test_list_queues_needs_the_admin_token(
    server: Server, token: str | None, fragment: str
) -> None:
    await Jobs(server).create(provisioner="terraform")
    client = job_client(server.url, token)
    with pytest.raises(ConnectError) as caught:
        await call(client.list_queues, pb.ListQueuesRequest())
    assert caught.value.code == Code.UNAUTHENTICATED, caught.value
    assert fragment in str(caught.value)


async def test_a_bad_organization_is_refused(server: Server) -> None:
    with pytest.raises(ConnectError) as caught:
        await list_queues(server, "not an organization!")
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert "organization" in str(caught.value)

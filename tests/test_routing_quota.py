"""Routing, "why is my job pending", daemon identity, ListDaemons, CommitQuota and
the reapers, over a real server (docs/contract/semantics.md and api.md)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
from connectrpc.code import Code
from connectrpc.compat import google_protobuf_binary_codec
from connectrpc.errors import ConnectError

from provd.client.connect import StaticHeaders, call, daemon_client, http2_client
from provd.gen.provd.v1 import daemons_pb2 as dpb
from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.gen.provd.v1 import quota_pb2 as qpb
from provd.gen.provd.v1.quota_connect_client import QuotaServiceClientSync
from provd.gen.provisionerd import provisionerd_pb2 as pd
from provd.gen.provisionerd.provisionerd_connect_client import ProvisionerDaemonClientSync
from provd.gen.provisionersdk import provisioner_pb2 as sdk
from provd.reapers import ReaperSettings
from provd.store import Store
from tests.claim_gate import ClaimGate
from tests.conftest import ADMIN_TOKEN, DAEMON_PSK, Server
from tests.daemon_clients import (
    Acquisition,
    Jobs,
    TestDaemon,
    admin_headers,
    daemon_named,
    daemons_client,
    list_daemons,
    wait_until,
)

# -- helpers -------------------------------------------------------------------


def quota_client(server: Server, token: str | None = ADMIN_TOKEN) -> QuotaServiceClientSync:
    return QuotaServiceClientSync(
        server.url, codec=google_protobuf_binary_codec(), interceptors=admin_headers(token)
    )


async def expect_error(code: Code, fn: Any, *args: Any) -> ConnectError:
    with pytest.raises(ConnectError) as caught:
        await call(fn, *args)
    assert caught.value.code == code, caught.value
    return caught.value


async def wait_for_waiters(server: Server, count: int) -> None:
    await wait_until(lambda: server.scheduler.statistics().waiters == count)


async def stays_empty(server: Server, acquisition: Acquisition) -> None:
    """The stream is waiting and got nothing: the scheduler looked for it, found
    nothing, and no job woke it. Cancel it, expect the empty answer."""
    await wait_for_waiters(server, 1)
    await wait_until(lambda: server.scheduler.statistics().claims >= 1)
    stats = server.scheduler.statistics()
    assert stats.wakeups == 0 and stats.claims == stats.claims_empty, stats
    acquisition.requests.cancel()
    assert (await acquisition.wait()).job_id == ""


async def heartbeat(daemon: TestDaemon, job_id: str, seconds: float, every: float = 0.05) -> None:
    """UpdateJob on `job_id` every `every` seconds for `seconds`."""
    deadline = trio.current_time() + seconds
    while trio.current_time() < deadline:
        await daemon.update(job_id)
        await trio.sleep(every)


# -- 1. routing matrix ---------------------------------------------------------


@dataclass(frozen=True)
class Route:
    job: Mapping[str, Any]
    daemon: Mapping[str, Any]
    matches: bool
    job_tags: Mapping[str, str] = field(default_factory=dict)
    daemon_tags: Mapping[str, str] = field(default_factory=dict)


ROUTES: dict[str, Route] = {
    "same default organization": Route({}, {}, True),
    "same named organization": Route({"organization": "acme"}, {"organization": "acme"}, True),
    "job in another organization": Route(
        {"organization": "acme"}, {"organization": "other"}, False
    ),
    "job in default, daemon in named": Route({}, {"organization": "acme"}, False),
    "provisioner not offered": Route({"provisioner": "terraform"}, {}, False),
    "provisioner one of several": Route(
        {"provisioner": "terraform"}, {"provisioners": ("echo", "terraform")}, True
    ),
    "untagged job, daemon with extra tag": Route({}, {}, False, daemon_tags={"os": "linux"}),
    "untagged job, explicitly untagged daemon": Route(
        {}, {}, True, job_tags={"scope": "organization"}, daemon_tags={"scope": "organization"}
    ),
    "tagged job, daemon has the tag and more": Route(
        {}, {}, True, job_tags={"os": "linux"}, daemon_tags={"os": "linux", "arch": "amd64"}
    ),
    "tagged job, daemon has the same tags": Route(
        {}, {}, True, job_tags={"os": "linux"}, daemon_tags={"os": "linux"}
    ),
    "tagged job, daemon value differs": Route(
        {}, {}, False, job_tags={"os": "linux"}, daemon_tags={"os": "windows"}
    ),
    "tagged job, daemon lacks one tag": Route(
        {}, {}, False, job_tags={"os": "linux", "arch": "arm64"}, daemon_tags={"os": "linux"}
    ),
    "tagged job, untagged daemon": Route({}, {}, False, job_tags={"os": "linux"}),
    "bad job scope means organization scope": Route({}, {}, True, job_tags={"scope": "galaxy"}),
    "bad daemon scope means organization scope": Route(
        {}, {}, True, daemon_tags={"scope": "galaxy"}
    ),
    "organization scope ignores owner": Route(
        {}, {}, True, job_tags={"scope": "organization", "owner": "bob"}
    ),
    "user scope, same owner": Route(
        {},
        {},
        True,
        job_tags={"scope": "user", "owner": "u1"},
        daemon_tags={"scope": "user", "owner": "u1"},
    ),
    "user scope, owner from initiator": Route(
        {"initiator": pb.Initiator(user_id="u1", user_name="alice")},
        {},
        True,
        job_tags={"scope": "user"},
        daemon_tags={"scope": "user", "owner": "u1"},
    ),
    "user scope, other owner": Route(
        {},
        {},
        False,
        job_tags={"scope": "user", "owner": "u1"},
        daemon_tags={"scope": "user", "owner": "u2"},
    ),
    "user-scoped job, organization daemon": Route(
        {}, {}, False, job_tags={"scope": "user", "owner": "u1"}
    ),
    "untagged job, user-scoped daemon": Route(
        {}, {}, False, daemon_tags={"scope": "user", "owner": "u1"}
    ),
    "organization-scoped tagged job, user-scoped daemon with the tag": Route(
        {},
        {},
        False,
        job_tags={"os": "linux"},
        daemon_tags={"scope": "user", "owner": "u1", "os": "linux"},
    ),
}


@pytest.mark.parametrize("route", ROUTES.values(), ids=ROUTES.keys())
async def test_routing_matrix(server: Server, nursery: trio.Nursery, route: Route) -> None:
    """A job reaches a daemon exactly when organization, provisioner and tags match."""
    jobs = Jobs(server)
    job = await jobs.create(tags=route.job_tags, **route.job)
    daemon = TestDaemon(server, "d", tags=route.daemon_tags, **route.daemon)
    acquisition = await daemon.acquire(nursery)
    if route.matches:
        assert (await acquisition.wait()).job_id == job.id
        assert (await jobs.get(job.id)).status == pb.JOB_STATUS_RUNNING
    else:
        await stays_empty(server, acquisition)
        assert (await jobs.get(job.id)).status == pb.JOB_STATUS_PENDING


async def test_waiting_daemon_skips_unmatched_job_and_takes_matching_one(
    server: Server, nursery: trio.Nursery
) -> None:
    """A waiting daemon is not woken by a job it cannot run, and takes the next it can."""
    jobs = Jobs(server)
    acquisition = await TestDaemon(server, "d", tags={"os": "linux"}).acquire(nursery)
    await wait_for_waiters(server, 1)
    untagged = await jobs.create()
    windows = await jobs.create(tags={"os": "windows"})
    # CreateJob wakes a matching group before it answers: none was woken.
    assert server.scheduler.statistics().wakeups == 0
    assert not acquisition.ended.is_set()
    linux = await jobs.create(tags={"os": "linux"})
    assert (await acquisition.wait()).job_id == linux.id
    for other in (untagged, windows):
        assert (await jobs.get(other.id)).status == pb.JOB_STATUS_PENDING


async def test_user_scoped_job_needs_an_owner(server: Server) -> None:
    """scope=user without an owner or an initiator id is invalid."""
    jobs = Jobs(server)
    await jobs.file_hash()
    with pytest.raises(ConnectError) as caught:
        await jobs.create(tags={"scope": "user"})
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert "scope=user needs an owner" in caught.value.message


async def test_job_created_during_another_groups_claim_reaches_an_idle_daemon(
    make_server,  # type: ignore[no-untyped-def]
    nursery: trio.Nursery,
) -> None:
    """A job created while one daemon group claims still wakes another idle matching daemon
    at once (not after the 30 s backup poll)."""
    gates: list[ClaimGate] = []

    def wrap(store: Store) -> Store:
        gates.append(ClaimGate(store, armed=True, only_jobs=True))
        return gates[0]  # type: ignore[return-value]

    server = await make_server(wrap_store=wrap)
    jobs = Jobs(server)
    await jobs.file_hash()
    gpu = await TestDaemon(server, "gpu", tags={"os": "linux", "gpu": "yes"}).acquire(nursery)
    await wait_for_waiters(server, 1)
    plain = await TestDaemon(server, "plain", tags={"os": "linux"}).acquire(nursery)
    await wait_for_waiters(server, 2)
    created: list[pb.Job] = []
    first_created = trio.Event()

    async def create_first() -> None:
        created.append(await jobs.create(tags={"os": "linux"}))
        first_created.set()

    # `first` goes straight to the daemon that waited longest (the gpu one), held there.
    nursery.start_soon(create_first)
    with trio.fail_after(5):
        await gates[0].holding.wait()
    second = await jobs.create(tags={"os": "linux"})
    gates[0].opened.set()
    with trio.fail_after(5):
        await first_created.wait()
    # Whichever daemon took `first`, the other one must get `second`.
    taken = {(await gpu.wait(timeout=5)).job_id, (await plain.wait(timeout=5)).job_id}
    assert taken == {created[0].id, second.id}


# -- 2. why is my job pending --------------------------------------------------


async def test_pending_reason_without_any_daemon(server: Server) -> None:
    """With no daemon connected, the reason and the job's logs say so."""
    jobs = Jobs(server)
    job = await jobs.create(provisioner="terraform", tags={"os": "linux"})
    assert "no daemon is connected in organization 'default'" in job.pending_reason
    assert "'terraform'" in job.pending_reason and "os=linux" in job.pending_reason
    fetched = await jobs.get(job.id)
    assert fetched.pending_reason == job.pending_reason
    assert (fetched.queue_position, fetched.queue_size) == (1, 1)
    outputs = [line.output for line in await jobs.logs(job.id)]
    assert any(o.startswith("No daemon can take it yet: no daemon is connected") for o in outputs)


async def test_pending_reason_names_the_missing_provisioner(
    server: Server, nursery: trio.Nursery
) -> None:
    """A connected daemon offering another provisioner: the reason names both."""
    jobs = Jobs(server)
    acquisition = await TestDaemon(server, "tf", provisioners=("terraform",)).acquire(nursery)
    await wait_for_waiters(server, 1)
    job = await jobs.create(provisioner="echo")
    reason = (await jobs.get(job.id)).pending_reason
    assert "no connected daemon offers provisioner 'echo'" in reason
    assert "connected daemons offer terraform" in reason
    outputs = [line.output for line in await jobs.logs(job.id)]
    assert any("No daemon can take it yet: no connected daemon offers" in o for o in outputs)
    await stays_empty(server, acquisition)


async def test_pending_reason_names_the_closest_daemon_and_missing_tag(
    server: Server, nursery: trio.Nursery
) -> None:
    """A tag no daemon has: the reason names the closest daemon and the missing tag."""
    jobs = Jobs(server)
    plain = await TestDaemon(server, "plain").acquire(nursery)
    arm = await TestDaemon(server, "arm", tags={"arch": "arm64"}).acquire(nursery)
    await wait_for_waiters(server, 2)
    job = await jobs.create(tags={"os": "linux", "arch": "arm64"})
    reason = job.pending_reason
    assert reason.startswith("No connected daemon can take this job")
    assert "the closest, 'arm'" in reason
    assert "os=linux missing" in reason
    assert "Queue position 1 of 1" in reason
    for acquisition in (plain, arm):
        acquisition.requests.cancel()
        assert (await acquisition.wait()).job_id == ""


async def test_untagged_job_reason_mentions_extra_daemon_tags(
    server: Server, nursery: trio.Nursery
) -> None:
    """An untagged job and only a tagged daemon: the reason says it needs an untagged one."""
    jobs = Jobs(server)
    acquisition = await TestDaemon(server, "linux", tags={"os": "linux"}).acquire(nursery)
    await wait_for_waiters(server, 1)
    reason = (await jobs.create()).pending_reason
    assert "the closest, 'linux'" in reason
    assert "an untagged job needs an untagged daemon" in reason
    assert "extra tags {os=linux}" in reason
    await stays_empty(server, acquisition)


async def test_pending_reason_with_a_busy_capable_daemon(
    server: Server, nursery: trio.Nursery
) -> None:
    """A capable daemon busy with another job: it waits for a free daemon, with its place."""
    jobs = Jobs(server)
    daemon = TestDaemon(server, "d")
    running = await jobs.create()
    assert (await (await daemon.acquire(nursery)).wait()).job_id == running.id
    first = await jobs.create()
    second = await jobs.create()
    assert "No daemon can take it yet" not in {line.output for line in await jobs.logs(first.id)}
    view = await jobs.get(second.id)
    assert view.pending_reason.startswith("Waiting for a free daemon: position 2 of 2")
    assert (view.queue_position, view.queue_size) == (2, 2)
    assert (await jobs.get(first.id)).pending_reason.startswith(
        "Waiting for a free daemon: position 1 of 2"
    )
    started = await jobs.get(running.id)
    assert (started.pending_reason, started.queue_position, started.queue_size) == ("", 0, 0)


# -- 3. daemon identity and auth -----------------------------------------------

GOOD_HEADERS = {
    "provd-daemon-psk": DAEMON_PSK,
    "provd-daemon-name": "raw",
    "provd-daemon-provisioners": "echo",
}


def raw_daemon(server: Server, headers: Mapping[str, str]) -> ProvisionerDaemonClientSync:
    return ProvisionerDaemonClientSync(
        server.url,
        codec=google_protobuf_binary_codec(),
        interceptors=[StaticHeaders(headers)],
        http_client=http2_client(),
    )


def headers_with(**changes: str | None) -> dict[str, str]:
    """GOOD_HEADERS with `provd_x=value` set, or removed when None."""
    headers = dict(GOOD_HEADERS)
    for key, value in changes.items():
        name = key.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return headers


BAD_IDENTITIES: dict[str, tuple[dict[str, str], Code, Sequence[str]]] = {
    "missing psk": (headers_with(provd_daemon_psk=None), Code.UNAUTHENTICATED, ("Psk",)),
    "wrong psk": (headers_with(provd_daemon_psk="nope"), Code.UNAUTHENTICATED, ("pre-shared",)),
    "api 2.0": (
        headers_with(provd_api_version="2.0"),
        Code.FAILED_PRECONDITION,
        ("Provd-Api-Version: 2.0 is not supported", "1.0 to 1.1"),
    ),
    "api 1.2": (
        headers_with(provd_api_version="1.2"),
        Code.FAILED_PRECONDITION,
        ("Provd-Api-Version: 1.2",),
    ),
    "api not a version": (
        headers_with(provd_api_version="latest"),
        Code.INVALID_ARGUMENT,
        ("Provd-Api-Version", "MAJOR.MINOR"),
    ),
    "tag without value": (
        headers_with(provd_daemon_tags="os=linux,novalue"),
        Code.INVALID_ARGUMENT,
        ("Provd-Daemon-Tags", "novalue"),
    ),
    "missing name": (
        headers_with(provd_daemon_name=None),
        Code.INVALID_ARGUMENT,
        ("Provd-Daemon-Name",),
    ),
    "missing provisioners": (
        headers_with(provd_daemon_provisioners=None),
        Code.INVALID_ARGUMENT,
        ("Provd-Daemon-Provisioners",),
    ),
    "version too long": (
        headers_with(provd_daemon_version="v" * 200),
        Code.INVALID_ARGUMENT,
        ("Provd-Daemon-Version",),
    ),
    "bad organization": (
        headers_with(provd_daemon_organization="no such org!"),
        Code.INVALID_ARGUMENT,
        ("Provd-Daemon-Organization",),
    ),
}


@pytest.mark.parametrize("case", BAD_IDENTITIES.values(), ids=BAD_IDENTITIES.keys())
async def test_bad_daemon_identity_is_rejected(
    server: Server, case: tuple[dict[str, str], Code, Sequence[str]]
) -> None:
    """Bad credentials or identity headers: the right code, a message naming the header."""
    headers, code, words = case
    client = raw_daemon(server, headers)
    error = await expect_error(
        code, client.update_job, pd.UpdateJobRequest(job_id=str(uuid.uuid4()))
    )
    for word in words:
        assert word in error.message
    # The deprecated unary acquire is checked the same way.
    await expect_error(code, client.acquire_job, pd.Empty())


@pytest.mark.parametrize("version", ["1.0", "1.1", None])
async def test_supported_api_versions_are_accepted(server: Server, version: str | None) -> None:
    """1.0, 1.1 and no header (meaning 1.0) pass the identity check."""
    client = raw_daemon(server, headers_with(provd_api_version=version))
    await expect_error(
        Code.NOT_FOUND, client.update_job, pd.UpdateJobRequest(job_id=str(uuid.uuid4()))
    )
    assert (await daemon_named(server, "raw")).api_version == (version or "1.0")


STREAM_REJECTIONS: dict[str, tuple[dict[str, Any], Code]] = {
    "wrong psk": ({"psk": "nope"}, Code.UNAUTHENTICATED),
    "api 2.0": ({"api_version": "2.0"}, Code.FAILED_PRECONDITION),
    "malformed tags": ({"tags": {"": "linux"}}, Code.INVALID_ARGUMENT),
}


@pytest.mark.parametrize("case", STREAM_REJECTIONS.values(), ids=STREAM_REJECTIONS.keys())
async def test_rejected_acquire_stream_takes_no_job(
    server: Server, nursery: trio.Nursery, case: tuple[dict[str, Any], Code]
) -> None:
    """An acquire stream with bad credentials or identity fails and takes no job."""
    overrides, code = case
    jobs = Jobs(server)
    job = await jobs.create()
    daemon = TestDaemon(server, "rejected")
    options: dict[str, Any] = {"psk": DAEMON_PSK, "name": "rejected", **overrides}
    daemon.client = daemon_client(server.url, options.pop("psk"), **options)
    acquisition = await daemon.acquire(nursery)
    with pytest.raises(ConnectError) as caught:
        await acquisition.wait()
    assert caught.value.code == code
    assert (await jobs.get(job.id)).status == pb.JOB_STATUS_PENDING
    assert "rejected" not in [d.name for d in await list_daemons(server)]


# -- 4. ListDaemons ------------------------------------------------------------


async def test_list_daemons_after_an_acquire(server: Server, nursery: trio.Nursery) -> None:
    """A daemon that took a job is listed with its identity, its job, and as connected."""
    jobs = Jobs(server)
    job = await jobs.create(organization="acme", provisioner="terraform", tags={"os": "linux"})
    daemon = TestDaemon(server, "builder", provisioners=("echo", "terraform"), tags={"os": "linux"})
    daemon.client = daemon_client(
        server.url,
        DAEMON_PSK,
        name="builder",
        provisioners=("echo", "terraform"),
        tags={"os": "linux"},
        organization="acme",
        version="2.11.4",
    )
    assert (await (await daemon.acquire(nursery)).wait()).job_id == job.id
    listed = await daemon_named(server, "builder")
    assert listed.organization == "acme"
    assert list(listed.provisioners) == ["echo", "terraform"]
    assert dict(listed.tags) == {"scope": "organization", "owner": "", "os": "linux"}
    assert (listed.version, listed.api_version) == ("2.11.4", "1.1")
    assert abs(listed.last_seen_at.ToMilliseconds() - time.time() * 1000) < 60_000
    assert listed.current_job_id == job.id
    assert listed.id == (await jobs.get(job.id)).worker_id
    assert listed.connected and not listed.stale
    # The organization filter.
    assert [d.name for d in await list_daemons(server, "acme")] == ["builder"]
    assert await list_daemons(server, "elsewhere") == []
    # Done: no current job any more.
    await daemon.complete(job.id)
    assert (await daemon_named(server, "builder")).current_job_id == ""


async def test_list_daemons_shows_an_open_stream_as_connected(
    server: Server, nursery: trio.Nursery
) -> None:
    """A daemon holding an acquire stream is connected; after it ends, it is not."""
    acquisition = await TestDaemon(server, "waiting").acquire(nursery)
    await wait_for_waiters(server, 1)
    listed = await daemon_named(server, "waiting")
    assert listed.connected and not listed.stale and listed.current_job_id == ""
    acquisition.requests.cancel()
    assert (await acquisition.wait()).job_id == ""
    assert not (await daemon_named(server, "waiting")).connected


@pytest.mark.slow  # real-time timers; tests/test_reapers.py covers the rules on the autojump clock
async def test_daemon_not_seen_for_three_heartbeats_is_stale(make_server, nursery) -> None:  # type: ignore[no-untyped-def]
    """With a 0.1 s heartbeat, a daemon silent for 0.3 s is stale; a connected one is not."""
    server = await make_server(heartbeat_interval_seconds=0.1)
    quiet = TestDaemon(server, "quiet")
    await expect_error(
        Code.NOT_FOUND, quiet.client.update_job, pd.UpdateJobRequest(job_id=str(uuid.uuid4()))
    )
    acquisition = await TestDaemon(server, "holding").acquire(nursery)
    await wait_for_waiters(server, 1)

    stale: dict[str, bool] = {}

    async def refresh() -> None:
        stale.update({d.name: d.stale for d in await list_daemons(server)})

    with trio.fail_after(10):
        while not stale.get("quiet"):
            await refresh()
            await trio.sleep(0.05)
    await trio.sleep(0.4)
    await refresh()
    assert stale == {"quiet": True, "holding": False}
    acquisition.requests.cancel()
    await acquisition.wait()


@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_admin_services_need_the_admin_token(server: Server, token: str | None) -> None:
    """ListDaemons and the quota service refuse a missing or wrong token."""
    await expect_error(
        Code.UNAUTHENTICATED, daemons_client(server, token).list_daemons, dpb.ListDaemonsRequest()
    )
    await expect_error(
        Code.UNAUTHENTICATED,
        quota_client(server, token).list_allowances,
        qpb.ListAllowancesRequest(),
    )


# -- 5. CommitQuota --------------------------------------------------------------


class Builds:
    """Workspace builds run by one daemon, for quota tests."""

    def __init__(self, server: Server, nursery: trio.Nursery, name: str = "builder") -> None:
        self.jobs = Jobs(server)
        self.daemon = TestDaemon(server, name)
        self.quota = quota_client(server)
        self._nursery = nursery

    async def start(
        self,
        workspace: str,
        *,
        owner: str = "u1",
        groups: Sequence[str] = (),
        transition: int = sdk.START,
    ) -> str:
        """Create a build and have the daemon acquire it; returns its job id."""
        job = await self.jobs.create(
            "workspace_build",
            workspace_build=pb.WorkspaceBuildInput(
                workspace_name=workspace,
                metadata=sdk.Metadata(
                    workspace_id=workspace,
                    workspace_owner_id=owner,
                    workspace_owner_groups=list(groups),
                    workspace_transition=transition,
                ),
            ),
        )
        acquired = await (await self.daemon.acquire(self._nursery)).wait()
        assert acquired.job_id == job.id
        assert acquired.workspace_build.metadata.workspace_id == workspace
        return job.id

    async def commit(self, job_id: str, cost: int) -> pd.CommitQuotaResponse:
        return await call(
            self.daemon.client.commit_quota, pd.CommitQuotaRequest(job_id=job_id, daily_cost=cost)
        )

    async def complete(self, job_id: str) -> None:
        await self.daemon.complete(job_id, workspace_build=pd.CompletedJob.WorkspaceBuild())

    async def run(self, workspace: str, cost: int, **kwargs: Any) -> pd.CommitQuotaResponse:
        """A whole build: acquire, commit `cost`, then complete if allowed, else fail."""
        job_id = await self.start(workspace, **kwargs)
        decision = await self.commit(job_id, cost)
        if decision.ok:
            await self.complete(job_id)
        else:
            await self.daemon.fail(job_id, "quota exceeded")
        return decision

    async def allow(self, cost: int, *, user: str = "", group: str = "") -> None:
        allowance = qpb.Allowance(allowance=cost)
        if user:
            allowance.user_id = user
        else:
            allowance.group = group
        await call(self.quota.set_allowance, qpb.SetAllowanceRequest(allowance=allowance))

    async def usage(self, user: str = "u1", groups: Sequence[str] = ()) -> tuple[int, int]:
        quota = await call(
            self.quota.get_user_quota, qpb.GetUserQuotaRequest(user_id=user, groups=list(groups))
        )
        return quota.credits_consumed, quota.budget


async def test_create_job_records_the_workspace_from_metadata(
    server: Server, nursery: trio.Nursery
) -> None:
    """CreateJob keeps workspace id, owner and groups so that CommitQuota can account them."""
    builds = Builds(server, nursery)
    await builds.allow(10, group="devs")
    job_id = await builds.start("w1", owner="u1", groups=["devs"])
    decision = await builds.commit(job_id, 4)
    # The budget comes from the build's metadata groups, the consumption from its owner.
    assert (decision.ok, decision.credits_consumed, decision.budget) == (True, 4, 10)
    assert await builds.usage("u1", ["devs"]) == (4, 10)


async def test_no_quota_configured_always_allows(server: Server, nursery: trio.Nursery) -> None:
    """No allowance in the organization: ok with budget -1, whatever the cost."""
    builds = Builds(server, nursery)
    decision = await builds.run("w1", 1000)
    assert decision.ok and decision.budget == -1
    assert decision.credits_consumed == 1000
    assert await builds.usage() == (1000, -1)


async def test_budget_is_the_users_plus_their_groups_allowances(
    server: Server, nursery: trio.Nursery
) -> None:
    """Budget = the user's allowance + their groups'; other users and groups do not count."""
    builds = Builds(server, nursery)
    await builds.allow(10, user="u1")
    await builds.allow(5, group="devs")
    await builds.allow(100, group="admins")
    await builds.allow(1000, user="u2")
    assert await builds.usage("u1", ["devs"]) == (0, 15)
    assert await builds.usage("u1") == (0, 10)
    assert await builds.usage("u3") == (0, 0)
    other_org = await call(
        builds.quota.get_user_quota, qpb.GetUserQuotaRequest(organization="acme", user_id="u1")
    )
    assert other_org.budget == -1  # allowances are per organization
    job_id = await builds.start("w1", groups=["devs"])
    decision = await builds.commit(job_id, 15)
    assert (decision.ok, decision.credits_consumed, decision.budget) == (True, 15, 15)


async def test_quota_allows_within_budget_and_refuses_over_it(
    server: Server, nursery: trio.Nursery
) -> None:
    """A fitting cost is allowed and counted; another workspace going over is refused."""
    builds = Builds(server, nursery)
    await builds.allow(10, user="u1")
    first = await builds.run("w1", 6)
    assert (first.ok, first.credits_consumed, first.budget) == (True, 6, 10)
    refused = await builds.run("w2", 5)
    assert (refused.ok, refused.credits_consumed, refused.budget) == (False, 6, 10)
    fits = await builds.run("w3", 4)
    assert (fits.ok, fits.credits_consumed, fits.budget) == (True, 10, 10)
    assert await builds.usage() == (10, 10)
    # Another owner's consumption is theirs alone.
    other = await builds.run("w9", 0, owner="u2")
    assert other.ok and other.credits_consumed == 0


async def test_lower_cost_rebuild_is_allowed_over_budget(
    server: Server, nursery: trio.Nursery
) -> None:
    """Over budget, a rebuild of a workspace that lowers its cost passes; an equal one does not."""
    builds = Builds(server, nursery)
    await builds.allow(100, user="u1")
    assert (await builds.run("w1", 8)).ok
    await builds.allow(3, user="u1")  # now over budget: 8 > 3
    assert await builds.usage() == (8, 3)
    lower = await builds.run("w1", 5)
    assert (lower.ok, lower.credits_consumed, lower.budget) == (True, 5, 3)
    same = await builds.run("w1", 5)
    assert (same.ok, same.budget) == (False, 3)


async def test_only_the_latest_live_build_of_each_workspace_counts(
    server: Server, nursery: trio.Nursery
) -> None:
    """Rebuilds replace a workspace's cost; a destroyed workspace costs nothing."""
    builds = Builds(server, nursery)
    assert (await builds.run("w1", 5)).ok
    assert (await builds.run("w1", 3)).ok
    assert (await builds.run("w2", 4)).ok
    assert await builds.usage() == (7, -1)
    destroy = await builds.start("w1", transition=sdk.DESTROY)
    await builds.complete(destroy)
    assert await builds.usage() == (4, -1)
    # With a budget, the destroyed workspace's cost is free again.
    await builds.allow(6, user="u1")
    assert (await builds.run("w3", 2)).ok
    assert not (await builds.run("w4", 1)).ok


async def test_quota_sums_past_int32_saturate(server: Server, nursery: trio.Nursery) -> None:
    """Budgets and consumption are sums of int32 values; the answers clamp to int32
    instead of failing (CommitQuotaResponse and UserQuota carry int32 fields)."""
    builds = Builds(server, nursery)
    int32_max = 2**31 - 1
    await builds.allow(int32_max, user="u1")
    await builds.allow(int32_max, group="devs")
    assert (await builds.run("w1", int32_max, groups=["devs"])).ok
    decision = await builds.run("w2", int32_max, groups=["devs"])
    assert (decision.ok, decision.credits_consumed, decision.budget) == (
        True,
        int32_max,
        int32_max,
    )
    assert await builds.usage("u1", ["devs"]) == (int32_max, int32_max)


async def test_commit_quota_errors(server: Server, nursery: trio.Nursery) -> None:
    """Non-holder, template import, no workspace id, negative cost, unknown and bad ids."""
    builds = Builds(server, nursery)
    job_id = await builds.start("w1")
    stranger = TestDaemon(server, "stranger")
    await expect_error(
        Code.PERMISSION_DENIED,
        stranger.client.commit_quota,
        pd.CommitQuotaRequest(job_id=job_id, daily_cost=1),
    )
    error = await expect_error(
        Code.INVALID_ARGUMENT,
        builds.daemon.client.commit_quota,
        pd.CommitQuotaRequest(job_id=job_id, daily_cost=-1),
    )
    assert "dailyCost" in error.message
    await expect_error(
        Code.NOT_FOUND,
        builds.daemon.client.commit_quota,
        pd.CommitQuotaRequest(job_id=str(uuid.uuid4()), daily_cost=1),
    )
    await expect_error(
        Code.INVALID_ARGUMENT,
        builds.daemon.client.commit_quota,
        pd.CommitQuotaRequest(job_id="not-a-uuid", daily_cost=1),
    )
    template = await builds.jobs.create()
    assert (await (await builds.daemon.acquire(nursery)).wait()).job_id == template.id
    error = await expect_error(
        Code.FAILED_PRECONDITION,
        builds.daemon.client.commit_quota,
        pd.CommitQuotaRequest(job_id=template.id, daily_cost=1),
    )
    assert "template_import" in error.message
    anonymous = await builds.jobs.create("workspace_build")
    assert (await (await builds.daemon.acquire(nursery)).wait()).job_id == anonymous.id
    error = await expect_error(
        Code.FAILED_PRECONDITION,
        builds.daemon.client.commit_quota,
        pd.CommitQuotaRequest(job_id=anonymous.id, daily_cost=1),
    )
    assert "workspaceId" in error.message
    await builds.complete(job_id)
    await expect_error(
        Code.FAILED_PRECONDITION,
        builds.daemon.client.commit_quota,
        pd.CommitQuotaRequest(job_id=job_id, daily_cost=1),
    )


async def test_quota_service_validation(server: Server) -> None:
    """Negative allowances, missing or empty subjects and a missing user id are invalid."""
    quota = quota_client(server)
    bad_requests = [
        (quota.set_allowance, qpb.SetAllowanceRequest()),
        (quota.set_allowance, qpb.SetAllowanceRequest(allowance=qpb.Allowance(allowance=5))),
        (
            quota.set_allowance,
            qpb.SetAllowanceRequest(allowance=qpb.Allowance(user_id="u1", allowance=-1)),
        ),
        (
            quota.set_allowance,
            qpb.SetAllowanceRequest(allowance=qpb.Allowance(group="", allowance=1)),
        ),
        (
            quota.set_allowance,
            qpb.SetAllowanceRequest(
                allowance=qpb.Allowance(organization="bad org!", user_id="u1", allowance=1)
            ),
        ),
        (quota.delete_allowance, qpb.DeleteAllowanceRequest()),
        (quota.get_user_quota, qpb.GetUserQuotaRequest()),
    ]
    for method, request in bad_requests:
        await expect_error(Code.INVALID_ARGUMENT, method, request)
    listed = await call(quota.list_allowances, qpb.ListAllowancesRequest())
    assert list(listed.allowances) == []


async def test_list_and_delete_allowances(server: Server) -> None:
    """Allowances are listed per organization, replaced on set, and deleted once."""
    quota = quota_client(server)
    for allowance in (
        qpb.Allowance(user_id="u1", allowance=10),
        qpb.Allowance(group="devs", allowance=5),
        qpb.Allowance(user_id="u1", allowance=12),  # replaces the first
        qpb.Allowance(organization="acme", user_id="u1", allowance=99),
    ):
        stored = await call(quota.set_allowance, qpb.SetAllowanceRequest(allowance=allowance))
        assert stored.allowance == allowance.allowance
        assert stored.organization == (allowance.organization or "default")
    listed = await call(quota.list_allowances, qpb.ListAllowancesRequest())
    assert [
        (a.WhichOneof("subject"), a.user_id or a.group, a.allowance) for a in listed.allowances
    ] == [
        ("group", "devs", 5),
        ("user_id", "u1", 12),
    ]
    acme = await call(quota.list_allowances, qpb.ListAllowancesRequest(organization="acme"))
    assert [(a.user_id, a.allowance) for a in acme.allowances] == [("u1", 99)]
    deleted = await call(quota.delete_allowance, qpb.DeleteAllowanceRequest(group="devs"))
    assert deleted.deleted
    again = await call(quota.delete_allowance, qpb.DeleteAllowanceRequest(group="devs"))
    assert not again.deleted
    listed = await call(quota.list_allowances, qpb.ListAllowancesRequest())
    assert [a.user_id for a in listed.allowances] == ["u1"]
    usage = await call(quota.get_user_quota, qpb.GetUserQuotaRequest(user_id="u1", groups=["devs"]))
    assert (usage.credits_consumed, usage.budget) == (0, 12)
    # Deleting the last allowance of an organization turns its quota off.
    await call(quota.delete_allowance, qpb.DeleteAllowanceRequest(user_id="u1"))
    usage = await call(quota.get_user_quota, qpb.GetUserQuotaRequest(user_id="u1"))
    assert usage.budget == -1


# -- 6. reapers ----------------------------------------------------------------

FAST_HANG = ReaperSettings(
    hang_timeout_seconds=0.5, pending_timeout_seconds=None, interval_seconds=0.1
)
FAST_PENDING = ReaperSettings(
    hang_timeout_seconds=300, pending_timeout_seconds=0.5, interval_seconds=0.1
)


@pytest.mark.slow  # real-time timers; tests/test_reapers.py covers the rules on the autojump clock
async def test_hung_job_is_failed(make_server, nursery: trio.Nursery) -> None:  # type: ignore[no-untyped-def]
    """A running job with no update for hang_timeout fails as JOB_HUNG, with log lines."""
    server = await make_server(reapers=FAST_HANG)
    jobs = Jobs(server)
    job = await jobs.create()
    assert (await (await TestDaemon(server, "d").acquire(nursery)).wait()).job_id == job.id
    with trio.fail_after(10):
        while (failed := await jobs.get(job.id)).status == pb.JOB_STATUS_RUNNING:
            await trio.sleep(0.05)
    assert failed.status == pb.JOB_STATUS_FAILED
    assert failed.error_code == "JOB_HUNG"
    assert failed.error.startswith("Job hung: its provisioner daemon sent no update for 0.5s")
    outputs = [line.output for line in await jobs.logs(job.id)]
    assert any(o.startswith("Job hung") for o in outputs)
    assert any("does not stay running forever" in o for o in outputs)


@pytest.mark.slow  # real-time timers; tests/test_reapers.py covers the rules on the autojump clock
async def test_heartbeats_keep_a_job_alive(make_server, nursery: trio.Nursery) -> None:  # type: ignore[no-untyped-def]
    """UpdateJob heartbeats keep a running job from being reaped as hung."""
    server = await make_server(
        reapers=ReaperSettings(
            hang_timeout_seconds=1.0, pending_timeout_seconds=None, interval_seconds=0.1
        )
    )
    jobs = Jobs(server)
    daemon = TestDaemon(server, "d")
    job = await jobs.create()
    assert (await (await daemon.acquire(nursery)).wait()).job_id == job.id
    await heartbeat(daemon, job.id, seconds=2.5)
    assert (await jobs.get(job.id)).status == pb.JOB_STATUS_RUNNING
    await daemon.complete(job.id)
    assert (await jobs.get(job.id)).status == pb.JOB_STATUS_SUCCEEDED


async def wait_for_status(jobs: Jobs, job_id: str, status: int) -> pb.Job:
    with trio.fail_after(10):
        while (job := await jobs.get(job_id)).status != status:
            await trio.sleep(0.05)
    return job


@pytest.mark.slow  # real-time timers; tests/test_reapers.py covers the rules on the autojump clock
async def test_unroutable_job_fails_naming_the_missing_provisioner(make_server) -> None:  # type: ignore[no-untyped-def]
    """A pending job no daemon can take fails as NO_CAPABLE_DAEMON, naming what is missing."""
    server = await make_server(reapers=FAST_PENDING, heartbeat_interval_seconds=0.1)
    jobs = Jobs(server)
    job = await jobs.create(provisioner="terraform")
    failed = await wait_for_status(jobs, job.id, pb.JOB_STATUS_FAILED)
    assert failed.error_code == "NO_CAPABLE_DAEMON"
    assert failed.error.startswith("No daemon could take this job for 0.5s")
    assert "provisioner 'terraform'" in failed.error
    outputs = [line.output for line in await jobs.logs(job.id)]
    assert failed.error in outputs


@pytest.mark.slow  # real-time timers; tests/test_reapers.py covers the rules on the autojump clock
async def test_unroutable_job_fails_naming_the_missing_tag(
    make_server,  # type: ignore[no-untyped-def]
    nursery: trio.Nursery,
) -> None:
    """With a connected daemon lacking a tag, the error names the daemon and the tag."""
    server = await make_server(reapers=FAST_PENDING, heartbeat_interval_seconds=0.1)
    jobs = Jobs(server)
    acquisition = await TestDaemon(server, "plain").acquire(nursery)
    await wait_for_waiters(server, 1)
    job = await jobs.create(tags={"os": "linux"})
    failed = await wait_for_status(jobs, job.id, pb.JOB_STATUS_FAILED)
    assert failed.error_code == "NO_CAPABLE_DAEMON"
    assert "the closest, 'plain'" in failed.error and "os=linux missing" in failed.error
    acquisition.requests.cancel()
    assert (await acquisition.wait()).job_id == ""


@pytest.mark.slow  # real-time timers; tests/test_reapers.py covers the rules on the autojump clock
async def test_without_pending_timeout_an_unroutable_job_waits(make_server) -> None:  # type: ignore[no-untyped-def]
    """pending_timeout_seconds=None: an unroutable job stays pending."""
    settings = ReaperSettings(
        hang_timeout_seconds=300, pending_timeout_seconds=None, interval_seconds=0.1
    )
    server = await make_server(reapers=settings, heartbeat_interval_seconds=0.1)
    jobs = Jobs(server)
    job = await jobs.create(provisioner="terraform")
    await trio.sleep(1.5)
    view = await jobs.get(job.id)
    assert view.status == pb.JOB_STATUS_PENDING
    assert "no daemon is connected" in view.pending_reason


@pytest.mark.slow  # real-time timers; tests/test_reapers.py covers the rules on the autojump clock
async def test_job_waiting_for_a_busy_capable_daemon_is_not_failed(
    make_server,  # type: ignore[no-untyped-def]
    nursery: trio.Nursery,
) -> None:
    """A capable daemon that is busy (and heartbeating) keeps its queue's jobs pending."""
    server = await make_server(reapers=FAST_PENDING, heartbeat_interval_seconds=0.2)
    jobs = Jobs(server)
    daemon = TestDaemon(server, "busy")
    running = await jobs.create()
    assert (await (await daemon.acquire(nursery)).wait()).job_id == running.id
    waiting = await jobs.create()
    unroutable = await jobs.create(provisioner="terraform")

    async with trio.open_nursery() as inner:
        inner.start_soon(heartbeat, daemon, running.id, 30.0)
        await wait_for_status(jobs, unroutable.id, pb.JOB_STATUS_FAILED)  # the reaper ran
        await trio.sleep(0.5)  # a few more reaper rounds
        view = await jobs.get(waiting.id)
        inner.cancel_scope.cancel()
    assert view.status == pb.JOB_STATUS_PENDING, view.error
    assert view.pending_reason.startswith("Waiting for a free daemon")
    await daemon.complete(running.id)
    assert (await (await daemon.acquire(nursery)).wait()).job_id == waiting.id

"""set_allowance, delete_allowance, list_allowances, quota_usage and commit_quota.

A user's budget is their own allowance plus their groups' (-1 when the organization
configures none). What they consume is the daily cost of the latest build of each of
their workspaces, a destroyed workspace costing nothing. A build's cost is committed
unless it would take its owner over budget while not lowering its workspace's cost.
"""

from __future__ import annotations

import pytest

from provd.errors import FailedPrecondition
from provd.model import Allowance, JobType, QuotaDecision
from provd.store import Store

from .holder_checks import HolderChecks
from .support import (
    DESTROY,
    ORG,
    STOP,
    TAGS,
    committed_build,
    fetch,
    make_running,
    make_running_build,
    workspace,
)

OWNER = "owner-1"


def allowance(subject: str, amount: int, kind: str = "user", org: str = ORG) -> Allowance:
    return Allowance(org, kind, subject, amount)


class TestSetAllowance:
    async def test_stores_an_allowance(self, store: Store) -> None:
        await store.set_allowance(allowance("u1", 10))
        await store.set_allowance(allowance("devs", 0, kind="group"))
        assert await store.list_allowances(ORG) == [
            allowance("devs", 0, kind="group"),
            allowance("u1", 10),
        ]

    async def test_again_replaces_the_amount(self, store: Store) -> None:
        """One allowance per (organization, kind, subject): setting it again replaces it."""
        await store.set_allowance(allowance("u1", 10))
        await store.set_allowance(allowance("u1", 3))
        await store.set_allowance(allowance("u1", 7, kind="group"))
        await store.set_allowance(allowance("u1", 5, org="org-b"))
        assert await store.list_allowances(ORG) == [
            allowance("u1", 7, kind="group"),
            allowance("u1", 3),
        ]
        assert await store.list_allowances("org-b") == [allowance("u1", 5, org="org-b")]


class TestDeleteAllowance:
    async def test_removes_exactly_one(self, store: Store) -> None:
        await store.set_allowance(allowance("u1", 10))
        await store.set_allowance(allowance("u1", 4, kind="group"))
        await store.set_allowance(allowance("u1", 5, org="org-b"))
        assert await store.delete_allowance(ORG, "user", "u1") is True
        assert await store.list_allowances(ORG) == [allowance("u1", 4, kind="group")]
        assert await store.list_allowances("org-b") == [allowance("u1", 5, org="org-b")]

    async def test_absent_is_false(self, store: Store) -> None:
        await store.set_allowance(allowance("u1", 10))
        assert await store.delete_allowance(ORG, "user", "u2") is False
        assert await store.delete_allowance(ORG, "group", "u1") is False
        assert await store.delete_allowance("org-b", "user", "u1") is False
        assert await store.delete_allowance(ORG, "user", "u1") is True
        assert await store.delete_allowance(ORG, "user", "u1") is False


class TestListAllowances:
    async def test_none_configured(self, store: Store) -> None:
        await store.set_allowance(allowance("u1", 10, org="org-b"))
        assert await store.list_allowances(ORG) == []

    async def test_one_organization_by_kind_then_subject(self, store: Store) -> None:
        for item in [
            allowance("zed", 1),
            allowance("ops", 2, kind="group"),
            allowance("amy", 3),
            allowance("devs", 4, kind="group"),
            allowance("amy", 5, org="org-b"),
        ]:
            await store.set_allowance(item)
        assert await store.list_allowances(ORG) == [
            allowance("devs", 4, kind="group"),
            allowance("ops", 2, kind="group"),
            allowance("amy", 3),
            allowance("zed", 1),
        ]


class TestQuotaUsage:
    async def test_no_allowance_in_the_organization_is_no_budget(self, store: Store) -> None:
        """-1 means unlimited: the organization configures no allowance at all."""
        await store.set_allowance(allowance(OWNER, 10, org="org-b"))
        assert await store.quota_usage(ORG, OWNER, ["devs"]) == (0, -1)

    async def test_budget_is_own_plus_groups_allowances(self, store: Store) -> None:
        for item in [
            allowance(OWNER, 10),
            allowance("devs", 5, kind="group"),
            allowance("ops", 7, kind="group"),
            allowance("admins", 100, kind="group"),
            allowance("someone-else", 1000),
            allowance(OWNER, 1000, kind="group"),  # a group named like the user
            allowance("devs", 1000, org="org-b", kind="group"),
        ]:
            await store.set_allowance(item)
        assert await store.quota_usage(ORG, OWNER, ["devs", "ops"]) == (0, 22)
        assert await store.quota_usage(ORG, OWNER, ["devs", "devs"]) == (0, 15)
        assert await store.quota_usage(ORG, OWNER, []) == (0, 10)
        assert await store.quota_usage(ORG, "nobody", []) == (0, 0)

    async def test_consumed_is_latest_build_of_each_workspace(self, store: Store) -> None:
        """Each workspace counts the cost of its latest build only; other owners',
        other organizations' and destroyed workspaces count nothing."""
        await committed_build(store, workspace("ws-1", OWNER), 10)
        await committed_build(store, workspace("ws-1", OWNER, STOP), 4)  # latest of ws-1
        await committed_build(store, workspace("ws-2", OWNER), 6)
        await committed_build(store, workspace("ws-3", OWNER), 50)
        await committed_build(store, workspace("ws-3", OWNER, DESTROY), 7)
        await committed_build(store, workspace("ws-4", "another-owner"), 100)
        await make_running(store)  # not a workspace build
        assert await store.quota_usage(ORG, OWNER, []) == (10, -1)
        assert await store.quota_usage(ORG, "another-owner", []) == (100, -1)
        assert await store.quota_usage("org-b", OWNER, []) == (0, -1)

    async def test_a_new_build_is_the_latest_whatever_its_state(self, store: Store) -> None:
        """A build not yet committed (cost 0) is its workspace's latest: the workspace
        counts 0 until it commits, even if it fails."""
        await committed_build(store, workspace("ws-1", OWNER), 10)
        job = await make_running_build(store, workspace("ws-1", OWNER))
        assert await store.quota_usage(ORG, OWNER, []) == (0, -1)
        await store.fail_job(job.id, "d1", "boom")
        assert await store.quota_usage(ORG, OWNER, []) == (0, -1)


class TestCommitQuota(HolderChecks):
    async def call(self, store: Store, job_id: str, daemon_id: str) -> object:
        return await store.commit_quota(job_id, daemon_id, 5)

    async def test_without_a_budget_any_cost_is_recorded(self, store: Store) -> None:
        await committed_build(store, workspace("ws-2", OWNER), 40)
        job = await make_running_build(store, workspace("ws-1", OWNER))
        decision = await store.commit_quota(job.id, "d1", 1000)
        assert decision == QuotaDecision(ok=True, credits_consumed=1040, budget=-1)
        assert (await fetch(store, job.id)).daily_cost == 1000

    async def test_within_budget_is_recorded(self, store: Store) -> None:
        """Allowed up to the budget exactly: consumed plus the cost may equal it."""
        await store.set_allowance(allowance(OWNER, 50))
        await committed_build(store, workspace("ws-2", OWNER), 40)
        job = await make_running_build(store, workspace("ws-1", OWNER))
        decision = await store.commit_quota(job.id, "d1", 10)
        assert decision == QuotaDecision(ok=True, credits_consumed=50, budget=50)
        assert (await fetch(store, job.id)).daily_cost == 10
        assert await store.quota_usage(ORG, OWNER, []) == (50, 50)

    async def test_over_budget_is_refused_and_not_recorded(self, store: Store) -> None:
        await store.set_allowance(allowance(OWNER, 50))
        await committed_build(store, workspace("ws-2", OWNER), 40)
        job = await make_running_build(store, workspace("ws-1", OWNER))
        decision = await store.commit_quota(job.id, "d1", 11)
        assert decision == QuotaDecision(ok=False, credits_consumed=40, budget=50)
        assert await fetch(store, job.id) == job
        assert await store.quota_usage(ORG, OWNER, []) == (40, 50)

    async def test_budget_is_the_workspace_owners(self, store: Store) -> None:
        """The budget is the workspace owner's, with the groups the build names, not
        the initiator's."""
        await store.set_allowance(allowance(OWNER, 10))
        await store.set_allowance(allowance("devs", 5, kind="group"))
        await store.set_allowance(allowance("initiator", 1000))
        ws = workspace("ws-1", OWNER, owner_groups=("devs",))
        job = await make_running_build(store, ws, initiator_id="initiator")
        assert await store.commit_quota(job.id, "d1", 16) == QuotaDecision(False, 0, 15)
        assert await store.commit_quota(job.id, "d1", 15) == QuotaDecision(True, 15, 15)

    @pytest.mark.parametrize(
        ("cost", "ok"), [(0, True), (5, True), (9, True), (10, False), (11, False)]
    )
    async def test_over_budget_a_cheaper_build_is_allowed(
        self, store: Store, cost: int, ok: bool
    ) -> None:
        """The net-increase rule: over budget, a build may still lower its workspace's
        cost (below its previous build's); the same cost or more is refused."""
        await store.set_allowance(allowance(OWNER, 100))
        await committed_build(store, workspace("ws-other", OWNER), 18)
        await committed_build(store, workspace("ws-1", OWNER), 10)
        await store.set_allowance(allowance(OWNER, 20))  # now 28 of 20
        job = await make_running_build(store, workspace("ws-1", OWNER, STOP))
        decision = await store.commit_quota(job.id, "d1", cost)
        used = 18  # ws-1 counts this build's cost, not the previous one's
        if ok:
            assert decision == QuotaDecision(True, used + cost, 20)
            assert (await fetch(store, job.id)).daily_cost == cost
        else:
            assert decision == QuotaDecision(False, used, 20)
            assert (await fetch(store, job.id)).daily_cost == 0

    async def test_previous_build_is_the_one_just_before(self, store: Store) -> None:
        """The cost to lower is that of the workspace's build just before this one,
        whatever it was: after a destroy (cost 0) any cost is an increase."""
        await store.set_allowance(allowance(OWNER, 100))
        await committed_build(store, workspace("ws-other", OWNER), 18)
        await committed_build(store, workspace("ws-1", OWNER), 10)
        await committed_build(store, workspace("ws-1", OWNER, DESTROY), 0)
        await store.set_allowance(allowance(OWNER, 20))
        job = await make_running_build(store, workspace("ws-1", OWNER))
        assert await store.commit_quota(job.id, "d1", 5) == QuotaDecision(False, 18, 20)

    async def test_previous_build_is_of_the_same_owner(self, store: Store) -> None:
        """Another owner's workspace of the same id is another workspace."""
        await store.set_allowance(allowance(OWNER, 10))
        await store.set_allowance(allowance("other", 100))
        await committed_build(store, workspace("ws-1", "other"), 50)
        job = await make_running_build(store, workspace("ws-1", OWNER))
        assert await store.commit_quota(job.id, "d1", 20) == QuotaDecision(False, 0, 10)

    async def test_committing_again_replaces_the_cost(self, store: Store) -> None:
        """A build's own earlier commit never counts against it."""
        await store.set_allowance(allowance(OWNER, 10))
        job = await make_running_build(store, workspace("ws-1", OWNER))
        assert await store.commit_quota(job.id, "d1", 8) == QuotaDecision(True, 8, 10)
        assert await store.commit_quota(job.id, "d1", 9) == QuotaDecision(True, 9, 10)
        assert (await fetch(store, job.id)).daily_cost == 9
        assert await store.quota_usage(ORG, OWNER, []) == (9, 10)

    async def test_canceling_build_may_commit(self, store: Store) -> None:
        job = await make_running_build(store, workspace("ws-1", OWNER))
        await store.cancel_job(job.id)
        assert (await store.commit_quota(job.id, "d1", 3)).ok

    async def test_only_workspace_builds_commit(self, store: Store) -> None:
        """Other job types, and builds without a workspace, fail the precondition and
        record nothing."""
        import_job = await make_running(
            store, type=JobType.TEMPLATE_IMPORT, workspace=workspace("ws-1", OWNER)
        )
        no_workspace = await make_running(
            store, type=JobType.WORKSPACE_BUILD, tags={**TAGS, "q": "2"}, workspace=None
        )
        for job in (import_job, no_workspace):
            with pytest.raises(FailedPrecondition):
                await store.commit_quota(job.id, "d1", 1)
            assert await fetch(store, job.id) == job

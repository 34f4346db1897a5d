"""Builders and short-hands shared by the store suite; they use only `Store` methods."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from provd.model import (
    Daemon,
    Job,
    JobQuery,
    JobType,
    JobUpdate,
    LogLevel,
    LogLine,
    LogSource,
    NewJob,
    NewLogLine,
    Queue,
    WorkspaceRef,
)
from provd.protocol import LOG_BUDGET_BYTES
from provd.store import Store

ORG = "org-a"
PROVISIONER = "echo"
TAGS: Mapping[str, str] = {"scope": "organization", "owner": ""}
TAR = "application/x-tar"
ARCHIVE = b"a tar archive, as far as the store cares"
DEFAULT_QUEUE = Queue(ORG, PROVISIONER, dict(TAGS))
START, STOP, DESTROY = 0, 1, 2  # provisioner.WorkspaceTransition


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
    """A log line; keyword arguments replace source, level or created_at."""
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


def workspace(
    workspace_id: str = "ws-1",
    owner_id: str = "owner-1",
    transition: int = START,
    owner_groups: tuple[str, ...] = (),
) -> WorkspaceRef:
    return WorkspaceRef(workspace_id, owner_id, transition, owner_groups)


async def make_job(store: Store, logs: Sequence[NewLogLine] = (), **overrides: Any) -> Job:
    """Store the archive (idempotent) and create a job from it."""
    stored = await store.put_file(ARCHIVE, TAR)
    return await store.create_job(new_job(stored.hash, **overrides), logs)


async def make_build(store: Store, ws: WorkspaceRef | None = None, **overrides: Any) -> Job:
    """A pending workspace build of `ws` (the default workspace if None)."""
    return await make_job(
        store, type=JobType.WORKSPACE_BUILD, workspace=ws or workspace(), **overrides
    )


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


async def make_running(store: Store, daemon_id: str = "d1", **overrides: Any) -> Job:
    """A job created in a queue of its own and claimed by `daemon_id`."""
    overrides.setdefault("tags", {**TAGS, "queue": str(uuid.uuid4())})
    job = await make_job(store, **overrides)
    claimed = await claim(store, [queue_of(job)], daemon_id)
    assert claimed.id == job.id
    return claimed


async def make_running_build(
    store: Store, ws: WorkspaceRef | None = None, daemon_id: str = "d1", **overrides: Any
) -> Job:
    """A workspace build of `ws`, claimed by `daemon_id`."""
    return await make_running(
        store, daemon_id, type=JobType.WORKSPACE_BUILD, workspace=ws or workspace(), **overrides
    )


async def committed_build(
    store: Store, ws: WorkspaceRef, daily_cost: int, daemon_id: str = "d1"
) -> Job:
    """A workspace build that committed `daily_cost` (it must be allowed) and succeeded."""
    job = await make_running_build(store, ws, daemon_id)
    decision = await store.commit_quota(job.id, daemon_id, daily_cost)
    assert decision.ok, decision
    return await store.complete_job(job.id, daemon_id, b"done")


async def update_logs(
    store: Store, job: Job, lines: Sequence[NewLogLine], budget: int | None = None
) -> Job:
    """update_job with only log lines, by the job's holder, within `budget` bytes
    (the protocol's budget if None)."""
    assert job.daemon_id is not None
    update = JobUpdate(logs=tuple(lines), log_budget_bytes=budget or LOG_BUDGET_BYTES)
    return await store.update_job(job.id, job.daemon_id, update)


async def outputs(store: Store, job_id: str) -> list[str]:
    """The output of every log line of a job, in order."""
    return [line.output for line in await store.read_logs(job_id)]


async def all_jobs(store: Store, **filters: Any) -> list[Job]:
    page = await store.list_jobs(JobQuery(limit=1000, **filters))
    assert page.next_before_seq is None
    return page.jobs


def ids(items: Iterable[Job | LogLine]) -> list[Any]:
    return [item.id for item in items]


def daemon(name: str = "d1", **tags: str) -> Daemon:
    """An echo daemon of the test organization, untagged unless `tags` are given."""
    return Daemon(
        id=f"id-{name}",
        organization=ORG,
        name=name,
        owner="",
        provisioners=("echo",),
        tags={**TAGS, **tags},
    )

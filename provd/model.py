"""Plain data for jobs, log lines and files: no I/O, no protobuf.

A job's status is derived from its timestamps and error, never stored, so that no
write can leave the two disagreeing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

from provd.protocol import (
    INT32_MAX,
    LOG_BUDGET_BYTES,
    LOG_OUTPUT_MAX_CHARS,
    LOG_STAGE_MAX_CHARS,
    PAYLOAD_MAX_BYTES,
    UPLOAD_MAX_BYTES,
)

DEFAULT_ORGANIZATION = "default"
SCOPE_ORGANIZATION = "organization"
SCOPE_USER = "user"


def now_ms() -> int:
    """The wall clock in Unix milliseconds, the unit of every stored timestamp."""
    return time.time_ns() // 1_000_000


class JobType(StrEnum):
    TEMPLATE_IMPORT = "template_import"
    WORKSPACE_BUILD = "workspace_build"
    TEMPLATE_DRY_RUN = "template_dry_run"


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELING = "canceling"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED)


class LogSource(IntEnum):
    """Who wrote a log line; values are the wire's provisionerd.LogSource."""

    PROVISIONER_DAEMON = 0
    PROVISIONER = 1


class LogLevel(IntEnum):
    """Values are the wire's provisioner.LogLevel."""

    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4


def normalize_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """Fill in the routing defaults: a missing or unknown scope means organization
    scope, whose owner is always empty; user scope keeps its owner."""
    result = dict(tags)
    if result.get("scope") not in (SCOPE_ORGANIZATION, SCOPE_USER):
        result["scope"] = SCOPE_ORGANIZATION
    if result["scope"] == SCOPE_ORGANIZATION:
        result["owner"] = ""
    else:
        result.setdefault("owner", "")
    return result


def tags_key(tags: Mapping[str, str]) -> str:
    """A canonical text form of a tag set, equal for equal sets (sorted JSON)."""
    return json.dumps(dict(sorted(tags.items())), separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class WorkspaceRef:
    """What quota accounting needs from a workspace build (from its metadata)."""

    workspace_id: str
    owner_id: str
    transition: int  # provisioner.WorkspaceTransition: 0 start, 1 stop, 2 destroy
    owner_groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Job:
    """A provisioning job as stored. `input` and `result` are opaque to the store:
    the service layer serializes them (provd.v1 input and result messages)."""

    id: str
    seq: int
    type: JobType
    provisioner: str
    organization: str
    tags: Mapping[str, str]
    file_hash: str
    initiator_id: str
    initiator_name: str
    priority: int
    input: bytes
    trace_metadata: Mapping[str, str]
    created_at: int
    updated_at: int
    started_at: int | None = None
    canceled_at: int | None = None
    completed_at: int | None = None
    daemon_id: str | None = None
    error: str = ""
    error_code: str = ""
    result: bytes | None = None
    readme: bytes | None = None
    template_variables: bytes | None = None
    logs_overflowed: bool = False
    workspace: WorkspaceRef | None = None
    daily_cost: int = 0

    @property
    def holder_id(self) -> str | None:
        """The daemon id running this job, or None if it is not running."""
        if self.started_at is None or self.completed_at is not None:
            return None
        return self.daemon_id

    @property
    def status(self) -> JobStatus:
        if self.completed_at is not None:
            if self.error:
                return JobStatus.FAILED
            if self.canceled_at is not None:
                return JobStatus.CANCELED
            return JobStatus.SUCCEEDED
        if self.canceled_at is not None:
            return JobStatus.CANCELING
        if self.started_at is None:
            return JobStatus.PENDING
        return JobStatus.RUNNING


@dataclass(frozen=True, slots=True)
class NewJob:
    """What CreateJob stores; the store adds the sequence number and timestamps."""

    id: str
    type: JobType
    provisioner: str
    organization: str
    tags: Mapping[str, str]
    file_hash: str
    initiator_id: str
    initiator_name: str
    priority: int
    input: bytes
    trace_metadata: Mapping[str, str] = field(default_factory=dict)
    workspace: WorkspaceRef | None = None


@dataclass(frozen=True, slots=True)
class NewLogLine:
    source: LogSource
    level: LogLevel
    stage: str
    output: str
    created_at: int | None = None


# One log line as the store takes it: (created_at in Unix ms, source, level, stage,
# output), the enums as their numbers.
LogRow = tuple[int, int, int, str, str]


@dataclass(frozen=True, slots=True)
class LogBatch:
    """Lines to append to one job's log, checked and dated, as plain rows: what the
    service builds from an UpdateJob in a few passes over the lines (no object per
    line), and what a store writes as one chunk (provd/store/_log_chunks.py).

    `size` is what the lines cost against the job's log budget (`log_size` summed).
    """

    rows: Sequence[LogRow] = ()
    size: int = 0

    def __len__(self) -> int:
        return len(self.rows)

    def __bool__(self) -> bool:
        return bool(self.rows)


def saturate_int32(value: int) -> int:
    """`value` clamped to an int32 field: sums of int32 values (quota) can pass it."""
    return max(-INT32_MAX - 1, min(value, INT32_MAX))


def server_line(stage: str, output: str, level: LogLevel = LogLevel.INFO) -> NewLogLine:
    """A log line that provd itself writes into a job's log (source PROVISIONER_DAEMON)."""
    return NewLogLine(source=LogSource.PROVISIONER_DAEMON, level=level, stage=stage, output=output)


@dataclass(frozen=True, slots=True)
class LogLine:
    id: int
    job_id: str
    created_at: int
    source: LogSource
    level: LogLevel
    stage: str
    output: str


@dataclass(frozen=True, slots=True)
class StoredFile:
    hash: str
    size: int
    mimetype: str
    created_at: int


@dataclass(frozen=True, slots=True)
class JobQuery:
    """Filters and a page for ListJobs; jobs come newest first."""

    status: JobStatus | None = None
    # Only jobs of this type; None means any.
    type: JobType | None = None
    organization: str | None = None
    provisioner: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    limit: int = 50
    before_seq: int | None = None


@dataclass(frozen=True, slots=True)
class JobPage:
    jobs: list[Job]
    next_before_seq: int | None


@dataclass(frozen=True, slots=True)
class QueuePosition:
    """A pending job's 1-based place in its queue and the queue's size."""

    position: int
    size: int


@dataclass(frozen=True, slots=True)
class Queue:
    """Jobs that the same daemons can take: same organization, provisioner and tags."""

    organization: str
    provisioner: str
    tags: Mapping[str, str]


def tags_match(job_tags: Mapping[str, str], daemon_tags: Mapping[str, str]) -> bool:
    """Whether a daemon with `daemon_tags` may run a job with `job_tags` (both
    normalized). An untagged job (only the default scope and owner) needs a daemon
    with exactly those tags; otherwise every job tag must be on the daemon."""
    if dict(job_tags) == UNTAGGED:
        return dict(daemon_tags) == UNTAGGED
    return all(daemon_tags.get(key) == value for key, value in job_tags.items())


UNTAGGED: Mapping[str, str] = {"scope": SCOPE_ORGANIZATION, "owner": ""}


@dataclass(frozen=True, slots=True)
class Daemon:
    """A provisioner daemon as it identifies itself on each call.

    A daemon that presented a daemon key has its organization, owner and tags from the
    key and its id from (key id, name): `key_id` names the key; a daemon on the
    pre-shared key has none, and its id comes from (organization, name, owner).
    """

    id: str
    organization: str
    name: str
    owner: str
    provisioners: tuple[str, ...]
    tags: Mapping[str, str]
    version: str = ""
    api_version: str = "1.0"
    key_id: str = ""

    def can_run(self, queue: Queue) -> bool:
        return (
            queue.organization == self.organization
            and queue.provisioner in self.provisioners
            and tags_match(queue.tags, self.tags)
        )


@dataclass(frozen=True, slots=True)
class DaemonRecord:
    daemon: Daemon
    created_at: int
    last_seen_at: int


@dataclass(frozen=True, slots=True)
class DaemonKey:
    """A daemon key: a credential that fixes who its daemons are (docs/keys.md).

    Its daemons belong to `organization` and `owner` and have exactly `tags`
    (normalized: scope and owner included); they may offer any of `provisioners`
    (empty: any provisioner). Only the SHA-256 of the key's secret is stored
    (`secret_sha256`, hex). `last_used_at` is 0 until a daemon used it.
    """

    id: str
    name: str
    organization: str
    owner: str
    provisioners: tuple[str, ...]
    tags: Mapping[str, str]
    secret_sha256: str
    created_at: int
    last_used_at: int = 0


@dataclass(frozen=True, slots=True)
class Limits:
    """The sizes the service enforces; the defaults are the protocol's (provd.protocol)."""

    upload_max_bytes: int = UPLOAD_MAX_BYTES
    # What a daemon accepts in one AcquiredJob (archive and inputs together).
    payload_max_bytes: int = PAYLOAD_MAX_BYTES
    log_budget_bytes: int = LOG_BUDGET_BYTES
    log_stage_max_chars: int = LOG_STAGE_MAX_CHARS
    log_output_max_chars: int = LOG_OUTPUT_MAX_CHARS


@dataclass(frozen=True, slots=True)
class JobUpdate:
    """What one UpdateJob writes. `readme` and `template_variables` are opaque
    (serialized by the service) and replace the stored value when not None."""

    logs: tuple[NewLogLine, ...] | LogBatch = ()
    readme: bytes | None = None
    template_variables: bytes | None = None
    # The per-job budget of log output (provd.protocol.LOG_BUDGET_BYTES); past it,
    # lines are dropped and one marker line says so.
    log_budget_bytes: int = LOG_BUDGET_BYTES


@dataclass(frozen=True, slots=True)
class Allowance:
    organization: str
    kind: str  # "user" or "group"
    subject: str
    allowance: int


@dataclass(frozen=True, slots=True)
class QuotaDecision:
    ok: bool
    credits_consumed: int
    budget: int  # -1: no quota configured for the organization


@dataclass(frozen=True, slots=True)
class PendingSummary:
    """A queue's pending jobs at a glance, for the unroutable-job reaper."""

    queue: Queue
    count: int
    oldest_created_at: int

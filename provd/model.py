"""Plain data for jobs, log lines and files: no I/O, no protobuf.

A job's status is derived from its timestamps and error, never stored, so that no
write can leave the two disagreeing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

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
    worker_id: str | None = None
    error: str = ""
    error_code: str = ""
    result: bytes | None = None

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


@dataclass(frozen=True, slots=True)
class NewLogLine:
    source: LogSource
    level: LogLevel
    stage: str
    output: str
    created_at: int | None = None


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

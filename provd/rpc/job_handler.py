"""`provd.v1.JobService` over Connect: check fields, call `JobService`, convert results."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import replace
from typing import Any

from connectrpc.request import RequestContext

from provd import model
from provd.errors import InvalidArgument
from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.gen.provisionersdk import provisioner_pb2 as sdk
from provd.ids import parse_job_id
from provd.job_service import (
    HISTORY_BUCKET_SECONDS,
    HISTORY_MAX_BUCKETS,
    HISTORY_MAX_WINDOW_SECONDS,
    HISTORY_WINDOW_SECONDS,
    JobService,
)
from provd.model import JobQuery, JobType, NewJob
from provd.rpc import validate
from provd.rpc.convert import JOB_TYPE_TO_PB, STATUS_FROM_PB, job_to_pb, log_to_pb, timestamp
from provd.rpc.page_tokens import PageTokens
from provd.rpc.trace_context import trace_metadata_from_headers

DEFAULT_PAGE = 50
MAX_PAGE = 500
_INPUT_FIELDS = "templateImport, workspaceBuild or templateDryRun"
_LOG_LEVELS = ("", "debug")
_TYPE_FROM_PB = {value: job_type for job_type, value in JOB_TYPE_TO_PB.items()}


class JobServiceHandler:
    """Implements the generated `JobService` protocol."""

    def __init__(self, jobs: JobService, page_tokens: PageTokens) -> None:
        self._jobs = jobs
        self._page_tokens = page_tokens

    async def upload_file(
        self, request: pb.UploadFileRequest, ctx: RequestContext[Any, Any]
    ) -> pb.UploadFileResponse:
        stored = await self._jobs.upload_file(request.data, request.mimetype)
        return pb.UploadFileResponse(hash=stored.hash, size=stored.size)

    async def create_job(
        self, request: pb.CreateJobRequest, ctx: RequestContext[Any, Any]
    ) -> pb.Job:
        new_job = new_job_from_pb(request)
        if not new_job.trace_metadata:
            # The caller's W3C trace context, so that the daemon continues its trace.
            traced = trace_metadata_from_headers(ctx.request_headers)
            if traced:
                new_job = replace(new_job, trace_metadata=traced)
        return job_to_pb(await self._jobs.create_job(new_job))

    async def get_job(self, request: pb.GetJobRequest, ctx: RequestContext[Any, Any]) -> pb.Job:
        return job_to_pb(await self._jobs.get_job(parse_job_id(request.id, "id")))

    async def list_jobs(
        self, request: pb.ListJobsRequest, ctx: RequestContext[Any, Any]
    ) -> pb.ListJobsResponse:
        query = job_query_from_pb(request, self._page_tokens)
        page = await self._jobs.list_jobs(query)
        views = await self._jobs.views(page.jobs)
        token = (
            ""
            if page.next_before_seq is None
            else self._page_tokens.issue(page.next_before_seq, query)
        )
        return pb.ListJobsResponse(jobs=[job_to_pb(v) for v in views], next_page_token=token)

    async def cancel_job(
        self, request: pb.CancelJobRequest, ctx: RequestContext[Any, Any]
    ) -> pb.Job:
        return job_to_pb(await self._jobs.cancel_job(parse_job_id(request.id, "id")))

    async def list_queues(
        self, request: pb.ListQueuesRequest, ctx: RequestContext[Any, Any]
    ) -> pb.ListQueuesResponse:
        organization = validate.name(request.organization, "organization", required=False)
        return pb.ListQueuesResponse(
            queues=[
                pb.JobQueue(
                    organization=view.queue.organization,
                    provisioner=view.queue.provisioner,
                    tags=view.queue.tags,
                    pending=model.saturate_int32(view.pending),
                    oldest_created_at=timestamp(view.oldest_created_at),
                    daemons=[
                        pb.QueueDaemon(id=daemon.id, name=daemon.name, current_job_id=job_id)
                        for daemon, job_id in view.daemons
                    ],
                    unroutable_reason=view.unroutable_reason,
                )
                for view in await self._jobs.list_queues(organization)
            ]
        )

    async def get_job_history(
        self, request: pb.GetJobHistoryRequest, ctx: RequestContext[Any, Any]
    ) -> pb.JobHistory:
        organization = validate.name(request.organization, "organization", required=False)
        window, bucket = history_span_from_pb(request)
        history = await self._jobs.job_history(window, bucket, organization)
        return pb.JobHistory(
            buckets=[
                pb.JobHistoryBucket(
                    start=timestamp(b.start),
                    succeeded=model.saturate_int32(b.succeeded),
                    failed=model.saturate_int32(b.failed),
                    canceled=model.saturate_int32(b.canceled),
                    pending=model.saturate_int32(b.pending),
                )
                for b in history.buckets
            ],
            bucket_seconds=bucket,
            pending=model.saturate_int32(history.pending),
            read_at=timestamp(history.read_at),
        )

    async def stream_job_logs(
        self, request: pb.StreamJobLogsRequest, ctx: RequestContext[Any, Any]
    ) -> AsyncIterator[pb.JobLog]:
        job_id = parse_job_id(request.id, "id")
        if request.after < 0:
            raise InvalidArgument(f"after: must not be negative, got {request.after}")
        batches = self._jobs.stream_logs(job_id, request.after, request.follow)
        async with aclosing(batches):
            async for batch in batches:
                for line in batch:
                    yield log_to_pb(line)

    async def watch_jobs(
        self, request: pb.WatchJobsRequest, ctx: RequestContext[Any, Any]
    ) -> AsyncIterator[pb.JobsChanged]:
        """`JobService.watch_jobs` as messages. It never ends by itself: the client
        leaves, or the server stops (a departed client's request is cancelled within
        the connection's close grace, which drops its feed)."""
        changes = self._jobs.watch_jobs()
        async with aclosing(changes):
            async for change in changes:
                yield pb.JobsChanged(
                    read_at=timestamp(change.read_at),
                    job_ids=change.job_ids,
                    many=change.many,
                    keep_alive=change.keep_alive,
                )


def new_job_from_pb(request: pb.CreateJobRequest) -> NewJob:
    """Check a CreateJobRequest field by field and turn it into a `NewJob`."""
    kind = request.WhichOneof("input")
    if kind is None:
        raise InvalidArgument(f"input: exactly one of {_INPUT_FIELDS} is required")
    job_type = JobType(kind)
    job_input = getattr(request, kind)
    if job_type is JobType.WORKSPACE_BUILD and request.workspace_build.log_level not in _LOG_LEVELS:
        raise InvalidArgument(
            f"workspaceBuild.logLevel: {request.workspace_build.log_level[:40]!r}"
            " must be empty or 'debug'"
        )
    _check_metadata(job_input.metadata, f"{_json_name(kind)}.metadata")

    initiator_id = validate.text(request.initiator.user_id, "initiator.userId", 256)
    tags = model.normalize_tags(validate.string_map(request.tags, "tags"))
    if tags["scope"] == model.SCOPE_USER and not tags["owner"]:
        if not initiator_id:
            raise InvalidArgument("tags: scope=user needs an owner (or initiator.userId)")
        tags["owner"] = initiator_id
    return NewJob(
        id=str(uuid.uuid4()),
        type=job_type,
        provisioner=validate.name(request.provisioner, "provisioner"),
        organization=validate.name(request.organization, "organization", required=False)
        or model.DEFAULT_ORGANIZATION,
        tags=tags,
        file_hash=validate.sha256(request.file_hash, "fileHash"),
        initiator_id=initiator_id,
        initiator_name=validate.text(request.initiator.user_name, "initiator.userName", 256),
        priority=request.priority,
        input=job_input.SerializeToString(deterministic=True),
        trace_metadata=validate.string_map(request.trace_metadata, "traceMetadata"),
        workspace=_workspace_ref(request.workspace_build)
        if job_type is JobType.WORKSPACE_BUILD
        else None,
    )


def _workspace_ref(build: pb.WorkspaceBuildInput) -> model.WorkspaceRef | None:
    """What quota accounting needs, from a build's metadata; None without a workspace id."""
    metadata = build.metadata
    if not metadata.workspace_id:
        return None
    return model.WorkspaceRef(
        workspace_id=metadata.workspace_id,
        owner_id=metadata.workspace_owner_id,
        transition=metadata.workspace_transition,
        owner_groups=tuple(metadata.workspace_owner_groups),
    )


def job_query_from_pb(request: pb.ListJobsRequest, tokens: PageTokens) -> JobQuery:
    status = None
    if request.status != pb.JOB_STATUS_UNSPECIFIED:
        if request.status not in STATUS_FROM_PB:
            raise InvalidArgument(f"status: {request.status} is not a job status")
        status = STATUS_FROM_PB[request.status]
    job_type = None
    if request.type != pb.JOB_TYPE_UNSPECIFIED:
        if request.type not in _TYPE_FROM_PB:
            raise InvalidArgument(f"type: {request.type} is not a job type")
        job_type = _TYPE_FROM_PB[request.type]
    if request.limit < 0:
        raise InvalidArgument(f"limit: must not be negative, got {request.limit}")
    query = JobQuery(
        status=status,
        type=job_type,
        organization=validate.name(request.organization, "organization", required=False),
        provisioner=validate.name(request.provisioner, "provisioner", required=False),
        tags=validate.string_map(request.tags, "tags"),
        limit=min(request.limit or DEFAULT_PAGE, MAX_PAGE),
    )
    if not request.page_token:
        return query
    return replace(query, before_seq=tokens.check(request.page_token, query))


def history_span_from_pb(request: pb.GetJobHistoryRequest) -> tuple[int, int]:
    """(window, bucket) in seconds: the defaults for 0, within the bounds."""
    window = request.window_seconds or HISTORY_WINDOW_SECONDS
    bucket = request.bucket_seconds or HISTORY_BUCKET_SECONDS
    if not 0 < window <= HISTORY_MAX_WINDOW_SECONDS:
        raise InvalidArgument(
            f"windowSeconds: must be between 1 and {HISTORY_MAX_WINDOW_SECONDS}, got {window}"
        )
    if not 0 < bucket <= window:
        raise InvalidArgument(
            f"bucketSeconds: must be between 1 and windowSeconds ({window}), got {bucket}"
        )
    buckets = -(-window // bucket)
    if buckets > HISTORY_MAX_BUCKETS:
        raise InvalidArgument(
            f"bucketSeconds: {bucket} makes {buckets} buckets of a {window} s window,"
            f" more than {HISTORY_MAX_BUCKETS}"
        )
    return window, bucket


def _check_metadata(metadata: sdk.Metadata, field: str) -> None:
    if metadata.workspace_transition not in sdk.WorkspaceTransition.values():
        raise InvalidArgument(
            f"{field}.workspaceTransition: {metadata.workspace_transition}"
            " is not START, STOP or DESTROY"
        )
    # Quota reads a build's groups back as one SQL parameter each.
    validate.string_list(metadata.workspace_owner_groups, f"{field}.workspaceOwnerGroups")


def _json_name(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.title() for part in rest)

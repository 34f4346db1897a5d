"""Conversions between the model and provd.v1 messages. No logic beyond mapping."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.job_service import JobView
from provd.model import Job, JobStatus, JobType, LogLine

JOB_TYPE_TO_PB = {
    JobType.TEMPLATE_IMPORT: pb.JOB_TYPE_TEMPLATE_IMPORT,
    JobType.WORKSPACE_BUILD: pb.JOB_TYPE_WORKSPACE_BUILD,
    JobType.TEMPLATE_DRY_RUN: pb.JOB_TYPE_TEMPLATE_DRY_RUN,
}
STATUS_TO_PB = {status: pb.JobStatus.Value(f"JOB_STATUS_{status.name}") for status in JobStatus}
STATUS_FROM_PB = {value: status for status, value in STATUS_TO_PB.items()}


def timestamp(ms: int) -> Timestamp:
    ts = Timestamp()
    ts.FromMilliseconds(ms)
    return ts


def job_to_pb(view: JobView) -> pb.Job:
    job: Job = view.job
    message = pb.Job(
        id=job.id,
        type=JOB_TYPE_TO_PB[job.type],
        provisioner=job.provisioner,
        organization=job.organization,
        tags=job.tags,
        status=STATUS_TO_PB[job.status],
        created_at=timestamp(job.created_at),
        updated_at=timestamp(job.updated_at),
        worker_id=job.daemon_id or "",
        error=job.error,
        error_code=job.error_code,
        queue_position=view.queue.position,
        queue_size=view.queue.size,
        pending_reason=view.pending_reason,
        file_hash=job.file_hash,
        initiator=pb.Initiator(user_id=job.initiator_id, user_name=job.initiator_name),
        priority=job.priority,
        trace_metadata=job.trace_metadata,
    )
    for field, ms in (
        ("started_at", job.started_at),
        ("canceled_at", job.canceled_at),
        ("completed_at", job.completed_at),
    ):
        if ms is not None:
            getattr(message, field).CopyFrom(timestamp(ms))
    # The stored input is the serialized input message named like the job type.
    getattr(message, job.type.value).MergeFromString(job.input)
    if job.result is not None:
        message.result.MergeFromString(job.result)
    if job.readme is not None:
        message.result.readme = job.readme
    if job.template_variables is not None:
        # Stored as a JobResult holding only the variables.
        message.result.MergeFromString(job.template_variables)
    return message


def log_to_pb(line: LogLine) -> pb.JobLog:
    return pb.JobLog(
        id=line.id,
        created_at=timestamp(line.created_at),
        source=int(line.source),  # type: ignore[arg-type]
        level=int(line.level),  # type: ignore[arg-type]
        stage=line.stage,
        output=line.output,
    )

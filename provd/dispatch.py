"""The daemon side of a job's life: acquire, update, fail, complete, commit quota.

Transport-free: it speaks the protocol's protobuf messages (every transport
carries the same ones) and raises `provd.errors`. Who the caller is comes in as a
`Daemon`; each call checks that this daemon holds the job it names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from provd.errors import FailedPrecondition, InvalidArgument
from provd.events import JobEvents
from provd.file_cache import FileCache
from provd.gen.provd.v1 import jobs_pb2 as api
from provd.gen.provisionerd import provisionerd_pb2 as pd
from provd.gen.provisionersdk import provisioner_pb2 as sdk
from provd.ids import parse_job_id
from provd.keys import DaemonKeys
from provd.model import (
    Daemon,
    Job,
    JobType,
    JobUpdate,
    Limits,
    LogBatch,
    LogLevel,
    now_ms,
    saturate_int32,
    server_line,
)
from provd.protocol import TRUNCATED_MARK, JobErrorCode
from provd.registry import DaemonRegistry
from provd.scheduler import Scheduler
from provd.store import Store

if TYPE_CHECKING:
    from provd.metrics import Metrics

_JOB_TYPES = "workspaceBuild, templateImport or templateDryRun"
# Checked for every log line: look-ups, not lists rebuilt per line.
_LOG_SOURCES = frozenset(pd.LogSource.values())
_LOG_LEVELS = frozenset(sdk.LogLevel.values())


@dataclass(frozen=True, slots=True)
class Acquired:
    """A job locked for a daemon and the message that hands it over."""

    job: Job
    message: pd.AcquiredJob


class Dispatcher:
    """Serves the provisioner daemon protocol over the store and the scheduler."""

    def __init__(
        self,
        store: Store,
        scheduler: Scheduler,
        registry: DaemonRegistry,
        events: JobEvents,
        limits: Limits = Limits(),
        *,
        keys: DaemonKeys,
        unary_acquire_wait_seconds: float = 5.0,
        on_handed_over: Callable[[Job, Daemon], None] | None = None,
        metrics: Metrics | None = None,
        files: FileCache | None = None,
    ) -> None:
        """`keys` ends the waits of a deleted key's daemons. `unary_acquire_wait_seconds`:
        how long the deprecated unary AcquireJob waits for a job before it answers with
        an empty one. `on_handed_over` hears of each job `acquire` returns (tracing).
        `files` gives the jobs' archives (shared with the job service)."""
        self._store = store
        self._files = files or FileCache(store)
        self._on_handed_over = on_handed_over
        # Counts dispatch latency, completions and log lines (provd.metrics).
        self._metrics = metrics
        self._keys = keys
        self._scheduler = scheduler
        self._registry = registry
        self._events = events
        self._limits = limits
        self._unary_acquire_wait_seconds = unary_acquire_wait_seconds

    # -- acquire -----------------------------------------------------------------

    async def acquire(
        self, daemon: Daemon, cancel_requested: trio.Event, *, deadline: float = math.inf
    ) -> Acquired | None:
        """Wait for a job for `daemon` and build its message, until `cancel_requested`
        is set or `deadline` (trio time) passes; None if the wait ended without a job.

        A job claimed while the cancel was on its way is returned all the same: it is
        locked for this daemon. A job that cannot be sent is failed, saying why, and
        the wait goes on. If this task is cancelled while it holds a job, the job goes
        back to its queue. The caller must hand the message over or `release` the job.

        If the daemon's key is deleted (on any process) the wait ends with
        `Unauthenticated`, and a job claimed meanwhile goes back to its queue; the key
        is read once more right before a job is returned, so a deletion committed
        elsewhere whose wake-up is still on its way hands no job over either.
        """
        with (
            self._registry.connected(daemon),
            self._keys.watch(daemon, cancel_requested) as key_watch,
        ):
            while not cancel_requested.is_set() and trio.current_time() < deadline:
                job = await self._scheduler.wait_for_job(
                    daemon, cancel_requested, deadline=deadline
                )
                if job is None:
                    break
                try:
                    message = await self._message_for(daemon, job)
                    if message is not None:
                        await self._keys.check_current(key_watch)
                except BaseException:
                    await self.release(daemon, job)
                    raise
                if message is not None:
                    if self._on_handed_over is not None:
                        self._on_handed_over(job, daemon)
                    if self._metrics is not None:
                        self._metrics.job_dispatched(job)
                    return Acquired(job, message)
            key_watch.check()
        return None

    async def acquire_unary(self, daemon: Daemon) -> pd.AcquiredJob:
        """The deprecated AcquireJob: a job within the wait time, else an empty one.
        Nothing but the wait time ends it early: the call has no cancel message."""
        deadline = trio.current_time() + self._unary_acquire_wait_seconds
        acquired = await self.acquire(daemon, trio.Event(), deadline=deadline)
        return pd.AcquiredJob() if acquired is None else acquired.message

    async def release(self, daemon: Daemon, job: Job) -> None:
        """Give back a job whose message the transport could not hand over
        (`Scheduler.release`, the one way back to the queue)."""
        await self._scheduler.release(daemon, job)

    async def _message_for(self, daemon: Daemon, job: Job) -> pd.AcquiredJob | None:
        """The message that hands `job` to its daemon, or None if it cannot be sent,
        in which case the job has been failed with the reason."""
        archive = await self._files.data(job.file_hash)
        if archive is None:
            await self._fail_undeliverable(
                daemon,
                job,
                "its template archive is missing from the store",
                JobErrorCode.FILE_MISSING,
            )
            return None
        message = _acquired_job(job, archive)
        size = message.ByteSize()
        if size > self._limits.payload_max_bytes:
            await self._fail_undeliverable(
                daemon,
                job,
                f"the job is {size} bytes, over the {self._limits.payload_max_bytes} bytes a"
                " daemon accepts in one message",
                JobErrorCode.PAYLOAD_TOO_LARGE,
            )
            return None
        return message

    async def _fail_undeliverable(self, daemon: Daemon, job: Job, reason: str, code: str) -> None:
        error = f"provd could not send this job to a daemon: {reason}"
        failed = await self._store.fail_job(
            job.id, daemon.id, error, code, logs=[server_line("Acquire", error, LogLevel.ERROR)]
        )
        if self._metrics is not None:
            self._metrics.job_completed(failed)
        self._events.notify(job.id)

    # -- progress ------------------------------------------------------------------

    async def update_job(
        self, daemon: Daemon, request: pd.UpdateJobRequest
    ) -> pd.UpdateJobResponse:
        job_id = parse_job_id(request.job_id, "jobId")
        logs = self._log_batch(request.logs)
        if request.template_variables:
            job = await self._store.get_job(job_id)
            held = job is not None and job.holder_id == daemon.id
            if held and job is not None and job.type is not JobType.TEMPLATE_IMPORT:
                raise InvalidArgument(
                    f"templateVariables: job {job_id} is a {job.type.value};"
                    " only template imports declare variables"
                )
        template_variables = None
        resolved: list[sdk.VariableValue] = []
        missing: list[str] = []
        if request.template_variables:
            resolved, missing = _resolve_template_variables(
                request.template_variables, request.user_variable_values
            )
            template_variables = api.JobResult(
                template_variables=request.template_variables
            ).SerializeToString(deterministic=True)
        job = await self._store.update_job(
            job_id,
            daemon.id,
            JobUpdate(
                logs=logs,
                readme=request.readme or None,
                template_variables=template_variables,
                log_budget_bytes=self._limits.log_budget_bytes,
            ),
        )
        if logs or template_variables is not None:
            self._events.notify(job_id)
        if logs and self._metrics is not None:
            self._metrics.log_lines(len(logs), overflowed=job.logs_overflowed)
        if missing:
            raise FailedPrecondition(
                f"required template variables need values: {', '.join(missing)}",
                reason=JobErrorCode.REQUIRED_TEMPLATE_VARIABLES,
            )
        return pd.UpdateJobResponse(canceled=job.canceled_at is not None, variable_values=resolved)

    async def fail_job(self, daemon: Daemon, request: pd.FailedJob) -> None:
        job_id = parse_job_id(request.job_id, "jobId")
        result = None
        if request.WhichOneof("type") == "workspace_build" and request.workspace_build.state:
            result = api.JobResult(failed_state=request.workspace_build.state).SerializeToString()
        error = _readable(request.error)
        line = server_line(
            "Failed",
            f"The daemon failed the job: {error}" if error else "The daemon stopped the job.",
            LogLevel.ERROR if error else LogLevel.WARN,
        )
        failed = await self._store.fail_job(
            job_id, daemon.id, error, _readable(request.error_code), result, logs=[line]
        )
        self._events.notify(job_id)
        if self._metrics is not None:
            self._metrics.job_completed(failed)

    async def complete_job(self, daemon: Daemon, request: pd.CompletedJob) -> None:
        job_id = parse_job_id(request.job_id, "jobId")
        kind = request.WhichOneof("type")
        if kind is None:
            raise InvalidArgument(f"type: one of {_JOB_TYPES} is required")
        result = api.JobResult()
        getattr(result, kind).CopyFrom(getattr(request, kind))
        completed = await self._store.complete_job(
            job_id, daemon.id, result.SerializeToString(deterministic=True), JobType(kind)
        )
        self._events.notify(job_id)
        if self._metrics is not None:
            self._metrics.job_completed(completed)

    async def commit_quota(
        self, daemon: Daemon, request: pd.CommitQuotaRequest
    ) -> pd.CommitQuotaResponse:
        job_id = parse_job_id(request.job_id, "jobId")
        if request.daily_cost < 0:
            raise InvalidArgument(f"dailyCost: must not be negative, got {request.daily_cost}")
        decision = await self._store.commit_quota(job_id, daemon.id, request.daily_cost)
        return pd.CommitQuotaResponse(
            ok=decision.ok,
            credits_consumed=saturate_int32(decision.credits_consumed),
            budget=saturate_int32(decision.budget),
        )

    def _log_batch(self, logs: Sequence[pd.Log]) -> LogBatch:
        """An UpdateJob's lines, checked and ready to store. The common case (known
        enums, no NUL, nothing over its length cap) costs a few passes over the lines
        in C and one tuple per line; only a batch that needs it is fixed line by line."""
        if not logs:
            return LogBatch()
        now = now_ms()
        rows = [
            (log.created_at or now, log.source, log.level, log.stage, log.output) for log in logs
        ]
        if not (
            {row[1] for row in rows} <= _LOG_SOURCES and {row[2] for row in rows} <= _LOG_LEVELS
        ):
            for index, (_, source, level, _, _) in enumerate(rows):
                if source not in _LOG_SOURCES:
                    raise InvalidArgument(f"logs[{index}].source: {source} is not a log source")
                if level not in _LOG_LEVELS:
                    raise InvalidArgument(f"logs[{index}].level: {level} is not a log level")
        stages = [row[3] for row in rows]
        outputs = [row[4] for row in rows]
        limits = self._limits
        text = "".join(stages) + "".join(outputs)
        if (
            "\x00" in text
            or max(map(len, stages)) > limits.log_stage_max_chars
            or max(map(len, outputs)) > limits.log_output_max_chars
        ):
            rows = [
                (
                    created_at,
                    source,
                    level,
                    _cap(stage, limits.log_stage_max_chars),
                    _cap(output, limits.log_output_max_chars),
                )
                for created_at, source, level, stage, output in rows
            ]
            text = "".join(row[3] + row[4] for row in rows)
        return LogBatch(rows, len(text) if text.isascii() else len(text.encode()))


def _readable(text: str) -> str:
    """`text` from a daemon, meant for people (a log line, an error), with any NUL shown
    as U+FFFD: PostgreSQL cannot store NUL in text, nor can SQLite's JSON functions,
    which the SQLite store inserts log lines with."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _cap(text: str, limit: int) -> str:
    """`text` made `_readable` and cut to `limit` characters, with a visible marker
    when cut."""
    text = _readable(text)
    return text if len(text) <= limit else text[: limit - len(TRUNCATED_MARK)] + TRUNCATED_MARK


def _resolve_template_variables(
    variables: Sequence[sdk.TemplateVariable], user_values: Sequence[sdk.VariableValue]
) -> tuple[list[sdk.VariableValue], list[str]]:
    """Each variable's value: the user's, else its default. Returns the values and the
    names of required variables left without one."""
    given = {value.name: value.value for value in user_values}
    resolved, missing = [], []
    for variable in variables:
        value = given.get(variable.name, variable.default_value)
        if variable.required and value == "":
            missing.append(variable.name)
        resolved.append(
            sdk.VariableValue(name=variable.name, value=value, sensitive=variable.sensitive)
        )
    return resolved, missing


def _acquired_job(job: Job, archive: bytes) -> pd.AcquiredJob:
    """The AcquiredJob message for `job`, built from its stored input."""
    message = pd.AcquiredJob(
        job_id=job.id,
        created_at=job.created_at,
        provisioner=job.provisioner,
        user_name=job.initiator_name,
        template_source_archive=archive,
        trace_metadata=job.trace_metadata,
    )
    if job.type is JobType.WORKSPACE_BUILD:
        build = api.WorkspaceBuildInput.FromString(job.input)
        message.workspace_build.CopyFrom(
            pd.AcquiredJob.WorkspaceBuild(
                workspace_build_id=build.workspace_build_id,
                workspace_name=build.workspace_name,
                rich_parameter_values=build.rich_parameter_values,
                variable_values=build.variable_values,
                external_auth_providers=build.external_auth_providers,
                metadata=build.metadata,
                state=build.state,
                log_level=build.log_level,
            )
        )
    elif job.type is JobType.TEMPLATE_IMPORT:
        imported = api.TemplateImportInput.FromString(job.input)
        message.template_import.CopyFrom(
            pd.AcquiredJob.TemplateImport(
                metadata=imported.metadata, user_variable_values=imported.user_variable_values
            )
        )
    else:
        dry_run = api.TemplateDryRunInput.FromString(job.input)
        message.template_dry_run.CopyFrom(
            pd.AcquiredJob.TemplateDryRun(
                rich_parameter_values=dry_run.rich_parameter_values,
                variable_values=dry_run.variable_values,
                metadata=dry_run.metadata,
            )
        )
    return message

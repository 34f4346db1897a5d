"""The daemon's nursery tree: one slot per concurrent job, each holding one
acquire stream while free.

    run_daemon
    └── slot (N of them) ── acquire (a stream; CancelAcquire on stop) → run_job
                    run_job: reporter.run (heartbeats, logs) + the provisioner

Stopping is graceful: `stop` makes free slots send CancelAcquire, and a job that
raced in is still run to its end. Cancelling `run_daemon` is the hard stop.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field

import trio
from connectrpc.errors import ConnectError
from pyqwest import SyncClient

from provd import __version__
from provd.client.connect import daemon_client_for, daemon_headers, http_transport
from provd.client.daemon.connection import DaemonConnection, Endpoint
from provd.client.daemon.provisioners import JobFailed, Provisioner
from provd.client.daemon.reporting import JobLost, JobReporter, ReportingSettings
from provd.gen.provisionerd import provisionerd_pb2 as pd
from provd.gen.provisionersdk import provisioner_pb2 as sdk

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    # One provd URL, or several replicas' comma-separated in order of preference:
    # a transport failure moves the daemon to the next (see connection.py).
    url: str
    # The pre-shared key; ignored when `key` is set.
    psk: str
    name: str
    provisioners: tuple[str, ...] = ("echo",)
    tags: Mapping[str, str] = field(default_factory=dict)
    organization: str = ""
    jobs: int = 1
    reporting: ReportingSettings = field(default_factory=ReportingSettings)
    # "connect": acquire over an HTTP/2 stream; "websocket": over provd's WebSocket
    # transport (unary calls then use HTTP/1.1, which needs no bidi stream).
    transport: str = "connect"
    # A daemon key (docs/keys.md), sent instead of the PSK: provd takes the
    # organization, owner and tags from it (`organization` and `tags` left empty).
    key: str = ""

    @property
    def urls(self) -> tuple[str, ...]:
        """`url` split at commas: the replicas, in order of preference."""
        return split_urls(self.url)


def split_urls(value: str) -> tuple[str, ...]:
    return tuple(url.strip() for url in value.split(",") if url.strip())


def builtin_provisioners() -> dict[str, Provisioner]:
    from provd.client.daemon.echo import run_echo

    return {"echo": run_echo}


async def run_daemon(
    settings: DaemonSettings,
    stop: trio.Event,
    *,
    provisioners: Mapping[str, Provisioner] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve jobs until `stop` is set and every running job has ended."""
    headers = daemon_headers(
        settings.psk,
        key=settings.key,
        name=settings.name,
        provisioners=settings.provisioners,
        tags=settings.tags,
        organization=settings.organization,
        version=__version__,
    )
    over_websocket = settings.transport == "websocket"
    # Over WebSocket only the acquire stream needs it; unary calls go over HTTP/1.1.
    urls = settings.urls or (settings.url,)
    # http:// URLs only: no CA roots needed, so none are loaded (minimal systems).
    transport = http_transport(http2=not over_websocket, urls=urls)
    http_client = SyncClient(transport)
    endpoints = [
        Endpoint(
            url,
            daemon_client_for(url, headers, http_client=http_client),
            websocket=(url, headers) if over_websocket else None,
        )
        for url in urls
    ]
    connection = DaemonConnection(endpoints)
    available = dict(provisioners if provisioners is not None else builtin_provisioners())
    try:
        await _serve_slots(settings, connection, available, stop, task_status)
    finally:
        # Closing the transport ends any request a cancelled call left in a worker
        # thread, so no thread is still inside the HTTP client when Python exits.
        transport.close()


async def _serve_slots(
    settings: DaemonSettings,
    connection: DaemonConnection,
    available: Mapping[str, Provisioner],
    stop: trio.Event,
    task_status: trio.TaskStatus[None],
) -> None:
    async with trio.open_nursery() as nursery:
        for slot in range(settings.jobs):
            nursery.start_soon(
                _serve_slot, connection, available, settings.reporting, stop, name=f"slot-{slot}"
            )
        task_status.started()


async def _serve_slot(
    connection: DaemonConnection,
    provisioners: Mapping[str, Provisioner],
    reporting: ReportingSettings,
    stop: trio.Event,
) -> None:
    while not stop.is_set():
        job = await connection.acquire(stop)
        if job is not None:
            await run_job(connection, job, provisioners, reporting)


Outcome = pd.CompletedJob | JobFailed | None  # None: canceled


async def run_job(
    connection: DaemonConnection,
    job: pd.AcquiredJob,
    provisioners: Mapping[str, Provisioner],
    reporting: ReportingSettings | None = None,
) -> None:
    """Run one job to its end and tell provd how it ended."""
    logger.info("running job %s (%s, %s)", job.job_id, job.WhichOneof("type"), job.provisioner)
    reporter = JobReporter(connection, job.job_id, reporting or ReportingSettings())
    outcome: Outcome = None
    lost = False
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(reporter.run)
            outcome = await _run_provisioner(provisioners, job, reporter)
            await reporter.update()  # the last lines go out before the verdict
            nursery.cancel_scope.cancel()
    except* JobLost as group:
        logger.warning("job %s is no longer ours: %s", job.job_id, group.exceptions[0])
        lost = True
    if not lost:
        await _report(connection, job, outcome)


async def _run_provisioner(
    provisioners: Mapping[str, Provisioner], job: pd.AcquiredJob, reporter: JobReporter
) -> Outcome:
    provisioner = provisioners.get(job.provisioner)
    if provisioner is None:
        return JobFailed(f"this daemon has no {job.provisioner!r} provisioner")
    outcome: Outcome = None
    async with trio.open_nursery() as nursery:

        async def stop_when_canceled() -> None:
            await reporter.canceled.wait()
            reporter.log(
                "provd asked to cancel this job; stopping.",
                stage="Canceling",
                level=sdk.WARN,
                source=pd.PROVISIONER_DAEMON,
            )
            nursery.cancel_scope.cancel()

        nursery.start_soon(stop_when_canceled)
        try:
            outcome = await provisioner(job, reporter)
        except JobFailed as failure:
            outcome = failure
        except JobLost:
            raise
        except Exception as error:  # a provisioner bug must not take the daemon down
            logger.exception("provisioner %s crashed on job %s", job.provisioner, job.job_id)
            reporter.log(
                "".join(traceback.format_exception_only(error)).strip(),
                stage="Crashed",
                level=sdk.ERROR,
                source=pd.PROVISIONER_DAEMON,
            )
            outcome = JobFailed(f"the {job.provisioner} provisioner crashed: {error}")
        nursery.cancel_scope.cancel()
    return outcome


async def _report(connection: DaemonConnection, job: pd.AcquiredJob, outcome: Outcome) -> None:
    kind = job.WhichOneof("type")
    try:
        if isinstance(outcome, pd.CompletedJob):
            outcome.job_id = job.job_id
            await connection.complete_job(outcome)
            logger.info("job %s completed", job.job_id)
            return
        failed = pd.FailedJob(job_id=job.job_id)
        if outcome is None:  # canceled: an empty error makes it end canceled
            logger.info("job %s canceled", job.job_id)
        else:
            failed.error, failed.error_code = outcome.error, outcome.error_code
            logger.info("job %s failed: %s", job.job_id, outcome.error)
        if kind == "workspace_build":
            # A canceled or stateless failure keeps the state the build started from.
            state = outcome.state if isinstance(outcome, JobFailed) and outcome.state else b""
            state = state or job.workspace_build.state
            failed.workspace_build.CopyFrom(pd.FailedJob.WorkspaceBuild(state=state))
        elif kind == "template_import":
            failed.template_import.SetInParent()
        elif kind == "template_dry_run":
            failed.template_dry_run.SetInParent()
        await connection.fail_job(failed)
    except ConnectError as error:
        logger.error("provd refused the end of job %s: %s", job.job_id, error.message)

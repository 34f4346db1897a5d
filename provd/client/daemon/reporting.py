"""A running job's line back to provd: batched logs that double as heartbeats.

Lines are collected as the provisioner writes them and sent in one UpdateJob when
a short debounce window ends, when a batch grows past its size limit, or when the
stage changes; with nothing to say, an empty UpdateJob still goes out every
heartbeat interval so provd knows the job is alive. Each answer says whether the
job was canceled.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import trio
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from provd.client.daemon.connection import DaemonConnection
from provd.gen.provisionerd import provisionerd_pb2 as pd
from provd.gen.provisionersdk import provisioner_pb2 as sdk
from provd.model import now_ms

logger = logging.getLogger(__name__)

# UpdateJob answers that mean the job was taken from us (failed as hung, say).
_NOT_OURS = frozenset({Code.PERMISSION_DENIED, Code.NOT_FOUND})


@dataclass(frozen=True, slots=True)
class ReportingSettings:
    """How a running job's logs and heartbeats are batched."""

    # With nothing to send, an empty UpdateJob goes out this often.
    heartbeat_interval_seconds: float = 1.0
    # Lines wait this long for more before they are sent.
    debounce_seconds: float = 0.2
    # A batch this large is sent at once: when a provisioner writes fast, batches
    # grow to this within the debounce window (fewer, larger UpdateJobs).
    max_batch_lines: int = 1000
    max_batch_bytes: int = 256 * 1024


class JobLost(Exception):
    """provd no longer lets this daemon report on the job (it was failed as hung,
    or taken over): stop working on it."""


class JobReporter:
    """Sends a job's logs and heartbeats. Run `run` in the job's nursery."""

    def __init__(
        self,
        connection: DaemonConnection,
        job_id: str,
        settings: ReportingSettings = ReportingSettings(),
    ) -> None:
        self._connection = connection
        self.job_id = job_id
        self._settings = settings
        self._pending: list[pd.Log] = []
        self._pending_bytes = 0
        self._stage = ""
        self._flush_soon = trio.Event()
        self._sending = trio.Lock()
        self.canceled = trio.Event()
        self.lost: ConnectError | None = None
        self.lost_event = trio.Event()

    def log(
        self,
        output: str,
        *,
        stage: str,
        level: sdk.LogLevel = sdk.INFO,
        source: pd.LogSource = pd.PROVISIONER,
    ) -> None:
        """Queue a line; it is sent within the debounce window."""
        if self._pending and stage != self._stage:
            self._flush_soon.set()  # a stage boundary: send what the last stage said
        self._stage = stage
        self._pending.append(
            pd.Log(source=source, level=level, created_at=now_ms(), stage=stage, output=output)
        )
        self._pending_bytes += len(output) + len(stage)
        if (
            len(self._pending) >= self._settings.max_batch_lines
            or self._pending_bytes >= self._settings.max_batch_bytes
        ):
            self._flush_soon.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Flush when asked, after the debounce window, or at least every heartbeat."""
        task_status.started()
        while True:
            settings = self._settings
            wait = (
                settings.debounce_seconds if self._pending else settings.heartbeat_interval_seconds
            )
            with trio.move_on_after(wait):
                await self._flush_soon.wait()
            await self.update()

    async def update(
        self,
        *,
        template_variables: Sequence[sdk.TemplateVariable] = (),
        user_variable_values: Sequence[sdk.VariableValue] = (),
        readme: bytes = b"",
    ) -> pd.UpdateJobResponse:
        """Send every queued line, with these fields, in one UpdateJob now.

        Raises the server's ConnectError for a request it refused (e.g. required
        template variables without values); raises JobLost if the job is not ours.
        """
        async with self._sending:
            self._flush_soon = trio.Event()
            batch, self._pending, self._pending_bytes = self._pending, [], 0
            request = pd.UpdateJobRequest(
                job_id=self.job_id,
                logs=batch,
                template_variables=template_variables,
                user_variable_values=user_variable_values,
                readme=readme,
            )
            try:
                response = await self._connection.update_job(request)
            except ConnectError as error:
                # With template variables, failed_precondition may also mean "required
                # variables need values", which the provisioner handles.
                if error.code in _NOT_OURS or (
                    error.code is Code.FAILED_PRECONDITION and not template_variables
                ):
                    self.lost = error
                    self.lost_event.set()
                    raise JobLost(error.message) from error
                raise
            if response.canceled and not self.canceled.is_set():
                logger.info("job %s was canceled", self.job_id)
                self.canceled.set()
            return response

    async def commit_quota(self, daily_cost: int) -> pd.CommitQuotaResponse:
        return await self._connection.commit_quota(
            pd.CommitQuotaRequest(job_id=self.job_id, daily_cost=daily_cost)
        )

"""Test-side provisioner daemons: real clients over HTTP/2 (in worker threads) or
over provd's WebSocket transport (natively in trio)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import trio
from connectrpc.compat import google_protobuf_binary_codec
from connectrpc.protocol import ProtocolType

from provd.client.connect import (
    AcquireRequests,
    StaticHeaders,
    call,
    daemon_client_for,
    daemon_headers,
    job_client,
)
from provd.client.websocket import WebSocketAcquisition
from provd.gen.provd.v1 import daemons_pb2 as dpb
from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.gen.provd.v1.daemons_connect_client import DaemonServiceClientSync
from provd.gen.provisionerd import provisionerd_pb2 as pd
from provd.gen.provisionerd.provisionerd_connect_client import ProvisionerDaemonClientSync
from provd.gen.provisionersdk import provisioner_pb2 as sdk
from tests.archives import MAIN_TF, make_tar
from tests.conftest import ADMIN_TOKEN, DAEMON_PSK, Server

# Streams block a worker thread each: allow many more than trio's default 40.
STREAM_THREADS = trio.CapacityLimiter(200)


@dataclass(eq=False)
class Acquisition:
    """One AcquireJobWithCancel stream: every response it got, and whether it ended."""

    requests: AcquireRequests | WebSocketAcquisition = field(default_factory=AcquireRequests)
    responses: list[pd.AcquiredJob] = field(default_factory=list)
    error: Exception | None = None
    ended: trio.Event = field(default_factory=trio.Event)

    @property
    def job_id(self) -> str:
        assert len(self.responses) == 1, self.responses
        return self.responses[0].job_id

    async def wait(self, timeout: float = 10) -> pd.AcquiredJob:
        """The stream's one response (it must end with exactly one)."""
        with trio.fail_after(timeout):
            await self.ended.wait()
        if self.error is not None:
            raise self.error
        assert len(self.responses) == 1, f"expected exactly one response, got {self.responses}"
        return self.responses[0]


class TestDaemon:
    """A daemon identity with a client; `acquire` opens one stream. It presents the
    test PSK, or the daemon `key` when given (then empty `tags` and `organization`
    are left out of its headers: the key supplies them)."""

    __test__ = False  # not a pytest class

    def __init__(
        self,
        server: Server,
        name: str,
        *,
        provisioners: Sequence[str] = ("echo",),
        tags: Mapping[str, str] | None = None,
        organization: str = "",
        protocol: ProtocolType = ProtocolType.CONNECT,
        transport: str = "connect",
        key: str = "",
    ) -> None:
        self.name = name
        self.url = server.url
        self.transport = transport
        self.headers = daemon_headers(
            DAEMON_PSK,
            key=key,
            name=name,
            provisioners=provisioners,
            tags=tags,
            organization=organization,
        )
        self.client: ProvisionerDaemonClientSync = daemon_client_for(
            server.url, self.headers, protocol=protocol
        )

    async def acquire(self, nursery: trio.Nursery) -> Acquisition:
        """Open a stream in the background; returns at once."""
        if self.transport == "websocket":
            stream = WebSocketAcquisition(self.url, self.headers)
            acquisition = Acquisition(requests=stream)
            nursery.start_soon(self._run_websocket, acquisition, stream)
            return acquisition
        acquisition = Acquisition()
        nursery.start_soon(self._run, acquisition)
        return acquisition

    async def _run_websocket(self, acquisition: Acquisition, stream: WebSocketAcquisition) -> None:
        try:
            acquisition.responses.extend(await stream.run())
        except Exception as error:  # reported by Acquisition.wait
            acquisition.error = error
        finally:
            acquisition.ended.set()

    async def _run(self, acquisition: Acquisition) -> None:
        def consume() -> None:
            try:
                for message in self.client.acquire_job_with_cancel(acquisition.requests):
                    acquisition.responses.append(message)
            except Exception as error:  # reported by Acquisition.wait
                acquisition.error = error
            finally:
                acquisition.requests.close()

        try:
            await trio.to_thread.run_sync(consume, limiter=STREAM_THREADS, abandon_on_cancel=True)
        finally:
            acquisition.ended.set()

    async def update(self, job_id: str, **fields: object) -> pd.UpdateJobResponse:
        return await call(self.client.update_job, pd.UpdateJobRequest(job_id=job_id, **fields))

    async def complete(self, job_id: str, **result: object) -> None:
        if not result:
            result = {"template_import": pd.CompletedJob.TemplateImport()}
        await call(self.client.complete_job, pd.CompletedJob(job_id=job_id, **result))

    async def fail(self, job_id: str, error: str = "", **fields: object) -> None:
        await call(self.client.fail_job, pd.FailedJob(job_id=job_id, error=error, **fields))


class Jobs:
    """The job API as tests use it."""

    def __init__(self, server: Server) -> None:
        self.client = job_client(server.url, ADMIN_TOKEN)
        self._file_hash = ""

    async def file_hash(self) -> str:
        if not self._file_hash:
            uploaded = await call(
                self.client.upload_file, pb.UploadFileRequest(data=make_tar(MAIN_TF))
            )
            self._file_hash = uploaded.hash
        return self._file_hash

    async def create(self, kind: str = "template_import", **fields: object) -> pb.Job:
        inputs = {
            "template_import": pb.TemplateImportInput(),
            "workspace_build": pb.WorkspaceBuildInput(workspace_name="ws"),
            "template_dry_run": pb.TemplateDryRunInput(),
        }
        fields.setdefault("provisioner", "echo")
        fields.setdefault(kind, inputs[kind])
        if "file_hash" not in fields:
            fields["file_hash"] = await self.file_hash()
        return await call(self.client.create_job, pb.CreateJobRequest(**fields))

    async def get(self, job_id: str) -> pb.Job:
        return await call(self.client.get_job, pb.GetJobRequest(id=job_id))

    async def cancel(self, job_id: str) -> pb.Job:
        return await call(self.client.cancel_job, pb.CancelJobRequest(id=job_id))

    async def logs(self, job_id: str) -> list[pb.JobLog]:
        return await call(
            lambda: list(self.client.stream_job_logs(pb.StreamJobLogsRequest(id=job_id)))
        )


class Follower:
    """StreamJobLogs with follow through one client, in a worker thread: every line
    it got, and its end."""

    def __init__(self, jobs: Jobs, job_id: str, nursery: trio.Nursery) -> None:
        self.lines: list[pb.JobLog] = []
        self.ended = trio.Event()
        self._jobs = jobs
        self._job_id = job_id
        nursery.start_soon(self._run)

    async def _run(self) -> None:
        def follow() -> None:
            request = pb.StreamJobLogsRequest(id=self._job_id, follow=True)
            for line in self._jobs.client.stream_job_logs(request):
                self.lines.append(line)

        try:
            await trio.to_thread.run_sync(follow, abandon_on_cancel=True)
        finally:
            self.ended.set()

    def outputs(self) -> list[str]:
        return [line.output for line in self.lines]

    def stages(self) -> list[str]:
        return [line.stage for line in self.lines]


async def wait_until(predicate, timeout: float = 10, interval: float = 0.01) -> None:  # type: ignore[no-untyped-def]
    """Poll `predicate` (sync) until true; a hang guard, not a timing assertion."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(interval)


async def waiting_on(server: Server, daemon: TestDaemon, nursery: trio.Nursery) -> object:
    """An acquire stream of `daemon`, once its group's first claim found nothing (so
    only a wake-up or a poll can deliver what comes next)."""
    before = server.scheduler.statistics().claims_empty
    acquisition = await daemon.acquire(nursery)
    await wait_until(lambda: server.scheduler.statistics().claims_empty > before)
    return acquisition


def log(output: str) -> pd.Log:
    return pd.Log(source=pd.PROVISIONER, level=sdk.INFO, stage="Plan", output=output)


async def daemon_named(server: Server, name: str) -> dpb.Daemon:
    (found,) = [d for d in await list_daemons(server) if d.name == name]
    return found


async def list_daemons(server: Server, organization: str = "") -> list[dpb.Daemon]:
    response = await call(
        daemons_client(server).list_daemons, dpb.ListDaemonsRequest(organization=organization)
    )
    return list(response.daemons)


def daemons_client(server: Server, token: str | None = ADMIN_TOKEN) -> DaemonServiceClientSync:
    return DaemonServiceClientSync(
        server.url, codec=google_protobuf_binary_codec(), interceptors=admin_headers(token)
    )


def admin_headers(token: str | None = ADMIN_TOKEN) -> list[StaticHeaders]:
    return [StaticHeaders({"authorization": f"Bearer {token}"} if token else {})]

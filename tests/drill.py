"""The SIGKILL drill's load and its audit: job creators and provisioner daemons that
keep working across `kill -9` of `provd serve`, a ledger of what provd acknowledged
to them, and the count of what a restarted server still has.

Every client talks to one fixed address over real sockets (Connect over HTTP/2, as
daemons do). A call that fails because the server is gone is retried after a short
backoff until the server is back; only answers that came back OK are recorded as
acknowledged, so anything the audit misses was promised and lost.
"""

from __future__ import annotations

import itertools
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar, cast

import trio
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from provd.client.connect import job_client
from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.gen.provd.v1.jobs_connect_client import JobServiceClientSync
from provd.gen.provisionerd import provisionerd_pb2 as pd
from provd.gen.provisionersdk import provisioner_pb2 as sdk
from tests.archives import MAIN_TF, make_tar
from tests.conftest import ADMIN_TOKEN, Server
from tests.daemon_clients import TestDaemon

T = TypeVar("T")

STAGE = "Drill"
UPDATES_PER_JOB = 3
LINES_PER_UPDATE = 2
CALL_TIMEOUT_MS = 15_000  # a hang guard: no call should take near this long
BACKOFF_SECONDS = (0.02, 0.05, 0.1, 0.2)
# What a client sees while the server is dead or dying. Anything else is an answer
# from a live server, and the drill reports it as an anomaly.
TRANSIENT_CODES = frozenset({Code.UNAVAILABLE})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Endpoint:
    """What TestDaemon needs of a server: its address (the same across restarts)."""

    url: str


@dataclass
class Ledger:
    """What provd acknowledged, as the clients saw it."""

    jobs: list[str] = field(default_factory=list)  # CreateJob returned OK
    deliveries: list[tuple[str, str]] = field(default_factory=list)  # (daemon, job id)
    lines: dict[str, list[int]] = field(default_factory=dict)  # UpdateJob returned OK
    completed: set[str] = field(default_factory=set)  # CompleteJob returned OK
    transient: Counter[str] = field(default_factory=Counter)  # errors while provd was down
    anomalies: list[str] = field(default_factory=list)  # errors a live provd answered

    @property
    def acknowledged_lines(self) -> int:
        return sum(len(numbers) for numbers in self.lines.values())


class Transient(Exception):
    """The call failed the way calls fail while the server is down."""


def is_transient(error: Exception) -> bool:
    return not isinstance(error, ConnectError) or error.code in TRANSIENT_CODES


def kind(error: Exception) -> str:
    if isinstance(error, ConnectError):
        return error.code.value
    return type(error).__name__


def describe(error: Exception) -> str:
    if isinstance(error, ConnectError):
        return f"{error.code.value}: {error.message}"
    return f"{type(error).__name__}: {error}"


async def rpc(fn: Callable[..., T], request: Any) -> T:
    """One blocking unary call in a worker thread, bounded, abandoned if cancelled."""
    return await trio.to_thread.run_sync(
        partial(fn, request, timeout_ms=CALL_TIMEOUT_MS), abandon_on_cancel=True
    )


def drill_line(number: int) -> pd.Log:
    return pd.Log(
        source=pd.PROVISIONER,
        level=sdk.INFO,
        stage=STAGE,
        output=f"line {number}",
    )


class Load:
    """Creators and daemons working against `url` until `stop` is set."""

    def __init__(self, url: str, ledger: Ledger) -> None:
        self.url = url
        self.ledger = ledger
        self.stop = trio.Event()
        self._file_hash = ""

    async def _backoff(self, attempt: int) -> None:
        await trio.sleep(BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)])

    def _note(self, who: str, what: str, error: Exception) -> None:
        if is_transient(error):
            self.ledger.transient[kind(error)] += 1
        else:
            self.ledger.anomalies.append(f"{who} {what}: {describe(error)}")

    async def upload(self) -> None:
        """The template every job uses (before the first kill: it is acknowledged)."""
        client = job_client(self.url, ADMIN_TOKEN)
        data = make_tar(MAIN_TF)
        uploaded = await rpc(client.upload_file, pb.UploadFileRequest(data=data))
        self._file_hash = uploaded.hash

    # -- creators ---------------------------------------------------------------

    async def creator(self, name: str) -> None:
        client = job_client(self.url, ADMIN_TOKEN)
        request = pb.CreateJobRequest(
            provisioner="echo",
            file_hash=self._file_hash,
            template_import=pb.TemplateImportInput(),
        )
        failures = 0
        while not self.stop.is_set():
            try:
                job = await rpc(client.create_job, request)
            except Exception as error:
                self._note(name, "CreateJob", error)
                failures += 1
                await self._backoff(failures)
                continue
            failures = 0
            self.ledger.jobs.append(job.id)

    # -- daemons ----------------------------------------------------------------

    async def daemon(self, name: str) -> None:
        daemon = TestDaemon(cast(Server, Endpoint(self.url)), name)
        failures = 0
        while not self.stop.is_set():
            try:
                job_ids = await self._acquire(daemon)
            except Exception as error:
                self._note(name, "AcquireJobWithCancel", error)
                job_ids = []
                failures += 1
                await self._backoff(failures)
            else:
                failures = 0
            for job_id in job_ids:  # one, unless the server broke its promise
                await self._run_job(daemon, job_id)

    async def _acquire(self, daemon: TestDaemon) -> list[str]:
        """One acquire stream; on `stop`, ask to cancel it. Every job it answered
        with is recorded as delivered, even if the stream then broke."""
        async with trio.open_nursery() as nursery:
            acquisition = await daemon.acquire(nursery)

            async def cancel_on_stop() -> None:
                await self.stop.wait()
                acquisition.requests.cancel()

            nursery.start_soon(cancel_on_stop)
            await acquisition.ended.wait()
            nursery.cancel_scope.cancel()
        job_ids = [r.job_id for r in acquisition.responses if r.job_id]
        self.ledger.deliveries.extend((daemon.name, job_id) for job_id in job_ids)
        if len(acquisition.responses) > 1:
            self.ledger.anomalies.append(
                f"{daemon.name}: one acquire stream answered {len(acquisition.responses)} times"
            )
        if acquisition.error is not None and not job_ids:
            raise acquisition.error
        return job_ids

    async def _run_job(self, daemon: TestDaemon, job_id: str) -> None:
        """UpdateJob with numbered lines until UPDATES_PER_JOB were acknowledged, then
        CompleteJob. A failed update is not resent: the next one carries new numbers,
        so the stored numbers must rise strictly whatever was lost in flight."""
        acknowledged = self.ledger.lines.setdefault(job_id, [])
        number = 0
        updates = 0
        failures = 0
        while updates < UPDATES_PER_JOB:
            if self.stop.is_set():
                return
            numbers = list(range(number, number + LINES_PER_UPDATE))
            number += LINES_PER_UPDATE
            request = pd.UpdateJobRequest(job_id=job_id, logs=[drill_line(n) for n in numbers])
            try:
                await rpc(daemon.client.update_job, request)
            except Exception as error:
                self._note(daemon.name, f"UpdateJob {job_id}", error)
                if not is_transient(error):
                    return
                failures += 1
                await self._backoff(failures)
                continue
            failures = 0
            updates += 1
            acknowledged.extend(numbers)
        retried = False
        while not self.stop.is_set():
            request = pd.CompletedJob(
                job_id=job_id, template_import=pd.CompletedJob.TemplateImport()
            )
            try:
                await rpc(daemon.client.complete_job, request)
            except ConnectError as error:
                if retried and error.code is Code.FAILED_PRECONDITION:
                    return  # the earlier attempt was stored, its answer lost: not acknowledged
                self._note(daemon.name, f"CompleteJob {job_id}", error)
                if not is_transient(error):
                    return
            except Exception as error:
                self._note(daemon.name, f"CompleteJob {job_id}", error)
            else:
                self.ledger.completed.add(job_id)
                return
            retried = True
            failures += 1
            await self._backoff(failures)


@dataclass
class Audit:
    """What the restarted server has of what was acknowledged."""

    lost_jobs: list[str] = field(default_factory=list)
    lost_lines: dict[str, list[int]] = field(default_factory=dict)
    disordered: dict[str, list[int]] = field(default_factory=dict)
    lost_completions: list[str] = field(default_factory=list)
    delivered_then_pending: list[str] = field(default_factory=list)
    duplicates: dict[str, list[str]] = field(default_factory=dict)  # job id → daemons

    @property
    def lost_line_count(self) -> int:
        return sum(len(numbers) for numbers in self.lost_lines.values())


async def audit(url: str, ledger: Ledger) -> Audit:
    client = job_client(url, ADMIN_TOKEN)
    result = Audit()
    holders: dict[str, list[str]] = {}
    for daemon, job_id in ledger.deliveries:
        holders.setdefault(job_id, []).append(daemon)
    result.duplicates = {j: names for j, names in holders.items() if len(names) > 1}

    statuses: dict[str, int] = {}
    for job_id in dict.fromkeys([*ledger.jobs, *holders, *ledger.lines]):
        try:
            job = await rpc(client.get_job, pb.GetJobRequest(id=job_id))
        except ConnectError as error:
            if error.code is not Code.NOT_FOUND:
                raise
            result.lost_jobs.append(job_id)
            continue
        statuses[job_id] = job.status
    for job_id in holders:
        if statuses.get(job_id) == pb.JOB_STATUS_PENDING:
            result.delivered_then_pending.append(job_id)
    for job_id in ledger.completed:
        if statuses.get(job_id) != pb.JOB_STATUS_SUCCEEDED:
            result.lost_completions.append(job_id)
    for job_id, acknowledged in ledger.lines.items():
        if not acknowledged:
            continue
        stored = [
            int(line.output.removeprefix("line "))
            for line in await stream_logs(client, job_id)
            if line.stage == STAGE
        ]
        if any(a >= b for a, b in itertools.pairwise(stored)):
            result.disordered[job_id] = stored
        missing = sorted(set(acknowledged) - set(stored))
        if missing:
            result.lost_lines[job_id] = missing
    return result


async def stream_logs(client: JobServiceClientSync, job_id: str) -> list[pb.JobLog]:
    request = pb.StreamJobLogsRequest(id=job_id)
    return await trio.to_thread.run_sync(
        lambda: list(client.stream_job_logs(request, timeout_ms=CALL_TIMEOUT_MS)),
        abandon_on_cancel=True,
    )

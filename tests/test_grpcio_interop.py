"""An independent gRPC client: grpcio, with stubs generated from proto/ at test time.

provd's own client is connectrpc; these tests check the daemon protocol against the
reference gRPC implementation instead. The stubs are compiled with grpc_tools.protoc
into a temporary directory and used only by a small daemon script run in a separate
interpreter (`python -I`): its generated `provisionerd.provisionerd_pb2` can neither
collide with `provd.gen...` nor meet provd's descriptors in the same default pool.

The script speaks grpcio to provd over h2c and prints one JSON object on stdout; the
test drives the job API from here and checks what the script saw.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import trio

from provd.client.connect import call
from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.gen.provisionerd import provisionerd_pb2 as pd
from provd.gen.provisionersdk import provisioner_pb2 as sdk
from tests.archives import MAIN_TF, make_tar
from tests.conftest import DAEMON_PSK, Server
from tests.daemon_clients import Jobs, TestDaemon, wait_until

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


def log_line(job_id: str) -> str:
    """The line both daemons log (the script builds the same one)."""
    return f"hello from the daemon: {job_id}"


# The daemon side, run as `python -I grpcio_daemon.py STUBS TARGET PSK SCENARIO`.
# Scenarios:
#   run-job  wait for one job, UpdateJob with a log line, CommitQuota, CompleteJob
#   cancel   open the stream, send CancelAcquire when stdin says "cancel"
#   errors   status codes of calls that must fail
DAEMON_SCRIPT = '''
import hashlib, json, queue, sys, uuid

stubs, target, psk, scenario = sys.argv[1:5]
sys.path.insert(0, stubs)

import grpc
from provisionerd import provisionerd_pb2 as pd, provisionerd_pb2_grpc as pd_grpc
from provisionersdk import provisioner_pb2 as sdk

assert pd.__file__.startswith(stubs) and sdk.__file__.startswith(stubs), (pd, sdk)
assert not any(name == "provd" or name.startswith("provd.") for name in sys.modules)

IDENTITY = [
    ("provd-daemon-name", "grpcio-daemon"),
    ("provd-daemon-provisioners", "echo"),
    ("provd-daemon-tags", "scope=organization"),
    ("provd-api-version", "1.1"),
]
METADATA = [("provd-daemon-psk", psk), *IDENTITY]
TIMEOUT = 20


class Requests:
    """The client side of AcquireJobWithCancel: sends what is put, ends on None."""

    def __init__(self):
        self.queue = queue.SimpleQueue()

    def __iter__(self):
        while (item := self.queue.get()) is not None:
            yield item


def describe(acquired):
    return {
        "job_id": acquired.job_id,
        "type": acquired.WhichOneof("type"),
        "provisioner": acquired.provisioner,
        "created_at": acquired.created_at,
        "archive_sha256": hashlib.sha256(acquired.template_source_archive).hexdigest(),
        "workspace_name": acquired.workspace_build.workspace_name,
        "empty": acquired == pd.AcquiredJob(),
    }


def acquire(stub, before_end=lambda requests: None):
    """Open one stream; every response until it ends (and how it ended)."""
    requests = Requests()
    call = stub.AcquireJobWithCancel(iter(requests), metadata=METADATA, timeout=TIMEOUT)
    before_end(requests)
    responses = [describe(acquired) for acquired in call]
    requests.queue.put(None)  # half-close once the server is done
    return responses, call.code().name


def code_of(rpc, request, metadata):
    try:
        rpc(request, metadata=metadata, timeout=TIMEOUT)
    except grpc.RpcError as error:
        return {"code": error.code().name, "details": error.details()}
    return {"code": "OK", "details": ""}


def run_job(stub):
    responses, status = acquire(stub)
    result = {"responses": responses, "status": status}
    if len(responses) != 1:
        return result
    job_id = responses[0]["job_id"]
    output = f"hello from the daemon: {job_id}"
    log = pd.Log(source=pd.PROVISIONER, level=sdk.INFO, stage="Planning", output=output)
    update = stub.UpdateJob(
        pd.UpdateJobRequest(job_id=job_id, logs=[log]), metadata=METADATA, timeout=TIMEOUT
    )
    quota = stub.CommitQuota(
        pd.CommitQuotaRequest(job_id=job_id, daily_cost=0), metadata=METADATA, timeout=TIMEOUT
    )
    build = pd.CompletedJob.WorkspaceBuild(state=b"new-state")
    stub.CompleteJob(
        pd.CompletedJob(job_id=job_id, workspace_build=build), metadata=METADATA, timeout=TIMEOUT
    )
    result.update(logged=output, canceled=update.canceled, quota_ok=quota.ok)
    return result


def cancel(stub):
    def cancel_on_signal(requests):
        assert sys.stdin.readline().strip() == "cancel"
        requests.queue.put(pd.CancelAcquire())

    responses, status = acquire(stub, cancel_on_signal)
    return {"responses": responses, "status": status}


def errors(stub):
    unknown = pd.UpdateJobRequest(job_id=str(uuid.uuid4()))
    no_psk_stream = stub.AcquireJobWithCancel(iter([]), metadata=IDENTITY, timeout=TIMEOUT)
    try:
        list(no_psk_stream)
    except grpc.RpcError:
        pass
    return {
        "unknown_job": code_of(stub.UpdateJob, unknown, METADATA),
        "malformed_job_id": code_of(stub.UpdateJob, pd.UpdateJobRequest(job_id="x"), METADATA),
        "no_psk": code_of(stub.UpdateJob, unknown, IDENTITY),
        "wrong_psk": code_of(stub.UpdateJob, unknown, [("provd-daemon-psk", "nope"), *IDENTITY]),
        "no_psk_acquire": {"code": no_psk_stream.code().name},
    }


with grpc.insecure_channel(target) as channel:
    grpc.channel_ready_future(channel).result(timeout=TIMEOUT)
    stub = pd_grpc.ProvisionerDaemonStub(channel)
    result = {"run-job": run_job, "cancel": cancel, "errors": errors}[scenario](stub)
print(json.dumps(result), flush=True)
'''


@pytest.fixture(scope="session")
def grpcio_daemon_script(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(script, stubs directory): grpcio stubs compiled from the project's protos."""
    root = tmp_path_factory.mktemp("grpcio")
    stubs = root / "stubs"
    stubs.mkdir()
    bundled = resources.files("grpc_tools") / "_proto"  # google/protobuf/*.proto
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{REPO / 'proto'}",
            f"-I{bundled}",
            f"--python_out={stubs}",
            f"--grpc_python_out={stubs}",
            "provisionerd/provisionerd.proto",
            "provisionersdk/provisioner.proto",
        ],
        check=True,
        cwd=root,
    )
    assert (stubs / "provisionerd" / "provisionerd_pb2_grpc.py").exists()
    script = root / "grpcio_daemon.py"
    script.write_text(DAEMON_SCRIPT)
    return script, stubs


class GrpcioDaemon:
    """The daemon script as a child process: poke it through stdin, read its JSON."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self._stdout = bytearray()
        self._stderr = bytearray()

    async def _drain(self, stream: trio.abc.ReceiveStream, into: bytearray) -> None:
        while chunk := await stream.receive_some():
            into += chunk

    async def send(self, line: str) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(f"{line}\n".encode())

    async def result(self, timeout: float = 30) -> dict[str, Any]:
        """What the script printed; fails with its stderr if it did not succeed."""
        assert self.process.stdout is not None and self.process.stderr is not None
        with trio.fail_after(timeout):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._drain, self.process.stdout, self._stdout)
                nursery.start_soon(self._drain, self.process.stderr, self._stderr)
            returncode = await self.process.wait()
        stderr = self._stderr.decode(errors="replace")
        assert returncode == 0, f"grpcio daemon exited with {returncode}:\n{stderr}"
        return json.loads(self._stdout.decode().strip().splitlines()[-1])


@asynccontextmanager
async def grpcio_daemon(
    script: tuple[Path, Path], server: Server, scenario: str, psk: str = DAEMON_PSK
) -> AsyncIterator[GrpcioDaemon]:
    path, stubs = script
    target = server.url.removeprefix("http://")
    process = await trio.lowlevel.open_process(
        [sys.executable, "-I", str(path), str(stubs), target, psk, scenario],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        yield GrpcioDaemon(process)
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                await stream.aclose()


async def create_build(jobs: Jobs) -> pb.Job:
    return await jobs.create(
        "workspace_build",
        initiator=pb.Initiator(user_id="u1", user_name="alice"),
        workspace_build=pb.WorkspaceBuildInput(
            workspace_build_id="b1",
            workspace_name="ws",
            metadata=sdk.Metadata(
                workspace_transition=sdk.START,
                workspace_id="w1",
                workspace_owner="alice",
                workspace_owner_id="u1",
            ),
        ),
    )


async def assert_succeeded_with_log(jobs: Jobs, job_id: str) -> None:
    done = await jobs.get(job_id)
    assert done.status == pb.JOB_STATUS_SUCCEEDED, done
    logs = await jobs.logs(job_id)
    mine = [line for line in logs if line.output == log_line(job_id)]
    assert len(mine) == 1, [line.output for line in logs]
    assert (mine[0].source, mine[0].level, mine[0].stage) == (pd.PROVISIONER, sdk.INFO, "Planning")


async def test_grpcio_daemon_runs_a_job(
    server: Server, grpcio_daemon_script: tuple[Path, Path]
) -> None:
    jobs = Jobs(server)
    async with grpcio_daemon(grpcio_daemon_script, server, "run-job") as daemon:
        await wait_until(lambda: server.scheduler.statistics().waiters == 1, timeout=20)
        job = await create_build(jobs)
        seen = await daemon.result()
    assert seen["status"] == "OK"
    assert len(seen["responses"]) == 1, seen
    acquired = seen["responses"][0]
    assert acquired["job_id"] == job.id
    assert acquired["type"] == "workspace_build" and acquired["workspace_name"] == "ws"
    assert acquired["provisioner"] == "echo"
    assert acquired["created_at"] == job.created_at.ToMilliseconds()
    assert acquired["archive_sha256"] == hashlib.sha256(make_tar(MAIN_TF)).hexdigest()
    assert seen["logged"] == log_line(job.id)
    assert seen["canceled"] is False and seen["quota_ok"] is True
    await assert_succeeded_with_log(jobs, job.id)


async def test_same_flow_over_connect(server: Server, nursery: trio.Nursery) -> None:
    """What the grpcio daemon does, with provd's own Connect client."""
    jobs = Jobs(server)
    daemon = TestDaemon(server, "connect-daemon", tags={"scope": "organization"})
    acquisition = await daemon.acquire(nursery)
    await wait_until(lambda: server.scheduler.statistics().waiters == 1)
    job = await create_build(jobs)
    acquired = await acquisition.wait()
    assert acquired.job_id == job.id and acquired.WhichOneof("type") == "workspace_build"
    assert acquired.template_source_archive == make_tar(MAIN_TF)
    log = pd.Log(source=pd.PROVISIONER, level=sdk.INFO, stage="Planning", output=log_line(job.id))
    assert not (await daemon.update(job.id, logs=[log])).canceled
    quota = await call(daemon.client.commit_quota, pd.CommitQuotaRequest(job_id=job.id))
    assert quota.ok
    await daemon.complete(
        job.id, workspace_build=pd.CompletedJob.WorkspaceBuild(state=b"new-state")
    )
    await assert_succeeded_with_log(jobs, job.id)


async def test_grpcio_cancel_acquire_gets_one_empty_answer(
    server: Server, grpcio_daemon_script: tuple[Path, Path]
) -> None:
    async with grpcio_daemon(grpcio_daemon_script, server, "cancel") as daemon:
        await wait_until(lambda: server.scheduler.statistics().waiters == 1, timeout=20)
        await daemon.send("cancel")
        seen = await daemon.result()
    assert seen["status"] == "OK"
    assert len(seen["responses"]) == 1, seen
    assert seen["responses"][0]["empty"] is True
    assert server.scheduler.statistics().waiters == 0
    job = await Jobs(server).create()
    assert (await Jobs(server).get(job.id)).status == pb.JOB_STATUS_PENDING


async def test_grpcio_sees_grpc_status_codes(
    server: Server, grpcio_daemon_script: tuple[Path, Path]
) -> None:
    async with grpcio_daemon(grpcio_daemon_script, server, "errors") as daemon:
        seen = await daemon.result()
    assert seen["unknown_job"]["code"] == "NOT_FOUND", seen
    assert seen["malformed_job_id"]["code"] == "INVALID_ARGUMENT", seen
    assert seen["no_psk"]["code"] == "UNAUTHENTICATED", seen
    assert seen["wrong_psk"]["code"] == "UNAUTHENTICATED", seen
    assert seen["no_psk_acquire"]["code"] == "UNAUTHENTICATED", seen
    assert all(seen[name]["details"] for name in ("unknown_job", "no_psk")), seen

"""What provd acknowledged survives a restart and a `kill -9` (real processes)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio

from provd.client.connect import call, job_client
from provd.gen.provd.v1 import jobs_pb2 as pb
from tests.archives import MAIN_TF, make_tar
from tests.conftest import ADMIN_TOKEN
from tests.processes import start_server

pytestmark = pytest.mark.slow


def import_request(file_hash: str) -> pb.CreateJobRequest:
    return pb.CreateJobRequest(
        provisioner="echo", file_hash=file_hash, template_import=pb.TemplateImportInput()
    )


async def test_restart_keeps_every_job(tmp_path: Path, nursery: trio.Nursery) -> None:
    db = tmp_path / "provd.db"
    first = await start_server(nursery, db)
    client = job_client(first.url, ADMIN_TOKEN)
    uploaded = await call(client.upload_file, pb.UploadFileRequest(data=make_tar(MAIN_TF)))
    jobs = [await call(client.create_job, import_request(uploaded.hash)) for _ in range(5)]
    await call(client.cancel_job, pb.CancelJobRequest(id=jobs[0].id))

    first.signal(signal.SIGTERM)
    assert await first.wait() == 0, first.output.decode()
    assert b"SIGTERM, shutting down" in first.output

    second = await start_server(nursery, db)
    client = job_client(second.url, ADMIN_TOKEN)
    listed = await call(client.list_jobs, pb.ListJobsRequest())
    assert [j.id for j in listed.jobs] == [j.id for j in reversed(jobs)]
    statuses = {j.id: j.status for j in listed.jobs}
    assert statuses[jobs[0].id] == pb.JOB_STATUS_CANCELED
    assert all(statuses[j.id] == pb.JOB_STATUS_PENDING for j in jobs[1:])
    second.signal(signal.SIGINT)
    assert await second.wait() == 0


async def test_sigkill_right_after_create_keeps_the_job(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    db = tmp_path / "provd.db"
    acknowledged: list[str] = []
    for _ in range(3):
        server = await start_server(nursery, db)
        client = job_client(server.url, ADMIN_TOKEN)
        uploaded = await call(client.upload_file, pb.UploadFileRequest(data=make_tar(MAIN_TF)))
        job = await call(client.create_job, import_request(uploaded.hash))
        acknowledged.append(job.id)
        server.signal(signal.SIGKILL)  # no chance to checkpoint or close anything
        assert await server.wait() == -signal.SIGKILL

    server = await start_server(nursery, db)
    client = job_client(server.url, ADMIN_TOKEN)
    for job_id in acknowledged:
        job = await call(client.get_job, pb.GetJobRequest(id=job_id))
        assert job.status == pb.JOB_STATUS_PENDING
        logs = await call(lambda: list(client.stream_job_logs(pb.StreamJobLogsRequest(id=job_id))))  # noqa: B023
        assert [line.stage for line in logs] == ["Queued", "Queued"]
    server.signal(signal.SIGTERM)
    assert await server.wait() == 0

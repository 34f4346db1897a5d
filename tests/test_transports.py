"""The job API over each wire format provd serves on its one port."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pytest
import trio
from connectrpc.protocol import ProtocolType

from provd.client.connect import call, http2_client, job_client
from provd.gen.provd.v1 import jobs_pb2 as pb
from tests.archives import MAIN_TF, make_tar
from tests.conftest import ADMIN_TOKEN, Server

VARIANTS = [
    pytest.param(ProtocolType.CONNECT, False, False, id="connect-proto-http1"),
    pytest.param(ProtocolType.CONNECT, True, False, id="connect-json-http1"),
    pytest.param(ProtocolType.CONNECT, False, True, id="connect-proto-h2c"),
    pytest.param(ProtocolType.CONNECT, True, True, id="connect-json-h2c"),
    pytest.param(ProtocolType.GRPC, False, True, id="grpc-h2c"),
    pytest.param(ProtocolType.GRPC_WEB, False, False, id="grpc-web-http1"),
    pytest.param(ProtocolType.GRPC_WEB, True, True, id="grpc-web-json-h2c"),
]


@pytest.mark.parametrize(("protocol", "use_json", "http2"), VARIANTS)
async def test_job_api_over_every_protocol(
    server: Server, protocol: ProtocolType, use_json: bool, http2: bool
) -> None:
    client = job_client(
        server.url,
        ADMIN_TOKEN,
        protocol=protocol,
        json=use_json,
        http_client=http2_client() if http2 else None,
    )
    uploaded = await call(client.upload_file, pb.UploadFileRequest(data=make_tar(MAIN_TF)))
    job = await call(
        client.create_job,
        pb.CreateJobRequest(
            provisioner="echo", file_hash=uploaded.hash, template_import=pb.TemplateImportInput()
        ),
    )
    fetched = await call(client.get_job, pb.GetJobRequest(id=job.id))
    assert fetched.id == job.id and fetched.status == pb.JOB_STATUS_PENDING
    logs = await call(lambda: list(client.stream_job_logs(pb.StreamJobLogsRequest(id=job.id))))
    assert [line.stage for line in logs] == ["Queued", "Queued"]


def post_json(
    url: str, body: dict[str, object], token: str | None = ADMIN_TOKEN
) -> tuple[int, dict]:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def test_connect_json_with_plain_http(server: Server) -> None:
    """What a curl user sees: proto3 JSON names in, JSON and Connect error bodies out."""
    base = f"{server.url}/provd.v1.JobService"
    status, uploaded = await trio.to_thread.run_sync(
        post_json, f"{base}/UploadFile", {"data": base64.b64encode(make_tar(MAIN_TF)).decode()}
    )
    assert status == 200 and len(uploaded["hash"]) == 64
    status, job = await trio.to_thread.run_sync(
        post_json,
        f"{base}/CreateJob",
        {
            "provisioner": "echo",
            "fileHash": uploaded["hash"],
            "tags": {"os": "linux"},
            "workspaceBuild": {
                "workspaceName": "ws",
                "metadata": {"workspaceTransition": "DESTROY"},
            },
        },
    )
    assert status == 200, job
    assert job["status"] == "JOB_STATUS_PENDING"
    assert job["type"] == "JOB_TYPE_WORKSPACE_BUILD"
    assert job["workspaceBuild"]["metadata"]["workspaceTransition"] == "DESTROY"
    assert job["queuePosition"] == 1

    status, error = await trio.to_thread.run_sync(post_json, f"{base}/GetJob", {"id": "nope"})
    assert status == 400 and error["code"] == "invalid_argument" and "id:" in error["message"]
    status, error = await trio.to_thread.run_sync(
        post_json, f"{base}/GetJob", {"id": job["id"]}, None
    )
    assert status == 401 and error["code"] == "unauthenticated"
    status, error = await trio.to_thread.run_sync(
        post_json, f"{base}/CreateJob", {"provisioner": "echo", "fileHash": uploaded["hash"]}
    )
    assert status == 400 and error["code"] == "invalid_argument" and "input:" in error["message"]

"""Responses are gzipped only from `COMPRESS_MIN_BYTES` up, for a client that accepts
gzip: a Connect unary answer as a whole, a stream message by message. Read with a
plain HTTP/1.1 client, so the test sees the bytes on the wire."""

from __future__ import annotations

import gzip
import http.client
import struct
from urllib.parse import urlsplit

import trio
from google.protobuf.message import Message

from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.gen.provisionerd import provisionerd_pb2 as pd
from provd.gen.provisionersdk import provisioner_pb2 as sdk
from provd.rpc.compression import COMPRESS_MIN_BYTES
from tests.conftest import ADMIN_TOKEN, Server
from tests.daemon_clients import Jobs, TestDaemon


def _post(
    url: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[dict[str, str], bytes]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        connection.request(
            "POST", path, body=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}", **headers}
        )
        response = connection.getresponse()
        assert response.status == 200, (response.status, response.read())
        return {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


async def _unary(server: Server, method: str, request: Message) -> tuple[str, bytes]:
    headers, body = await trio.to_thread.run_sync(
        _post,
        server.url,
        f"/provd.v1.JobService/{method}",
        request.SerializeToString(),
        {"Content-Type": "application/proto", "Accept-Encoding": "gzip"},
    )
    return headers.get("content-encoding", "identity"), body


async def test_a_small_unary_answer_goes_plain_a_large_one_gzipped(server: Server) -> None:
    jobs = Jobs(server)
    created = [await jobs.create() for _ in range(12)]

    encoding, body = await _unary(server, "GetJob", pb.GetJobRequest(id=created[0].id))
    assert encoding == "identity"
    assert len(body) < COMPRESS_MIN_BYTES
    assert pb.Job.FromString(body).id == created[0].id

    encoding, body = await _unary(server, "ListJobs", pb.ListJobsRequest(limit=12))
    assert encoding == "gzip"
    listed = pb.ListJobsResponse.FromString(gzip.decompress(body))
    assert listed.ByteSize() >= COMPRESS_MIN_BYTES
    assert sorted(job.id for job in listed.jobs) == sorted(job.id for job in created)


def _envelopes(body: bytes) -> list[tuple[int, bytes]]:
    """A Connect stream's envelopes: (flags, payload) each."""
    envelopes, offset = [], 0
    while offset < len(body):
        flags, size = struct.unpack_from(">BI", body, offset)
        envelopes.append((flags, body[offset + 5 : offset + 5 + size]))
        offset += 5 + size
    return envelopes


async def test_stream_messages_are_gzipped_one_by_one_by_size(
    server: Server, nursery: trio.Nursery
) -> None:
    job = await Jobs(server).create()
    daemon = TestDaemon(server, "logger")
    assert (await (await daemon.acquire(nursery)).wait()).job_id == job.id
    big = "x" * (2 * COMPRESS_MIN_BYTES)
    logs = [
        pd.Log(source=pd.PROVISIONER, level=sdk.INFO, stage="Plan", output=output)
        for output in ("small", big, "small again")
    ]
    await daemon.update(job.id, logs=logs)

    request = pb.StreamJobLogsRequest(id=job.id).SerializeToString()
    headers, body = await trio.to_thread.run_sync(
        _post,
        server.url,
        "/provd.v1.JobService/StreamJobLogs",
        struct.pack(">BI", 0, len(request)) + request,
        {"Content-Type": "application/connect+proto", "Connect-Accept-Encoding": "gzip"},
    )
    assert headers["connect-content-encoding"] == "gzip"
    *messages, (end_flags, _end) = _envelopes(body)
    assert end_flags & 0x02  # end of stream
    outputs = []
    for flags, payload in messages:
        compressed = bool(flags & 0x01)
        line = pb.JobLog.FromString(gzip.decompress(payload) if compressed else payload)
        assert compressed == (len(line.SerializeToString()) >= COMPRESS_MIN_BYTES), line.output
        outputs.append(line.output)
    # The long line is cut to the output cap and still over the threshold.
    assert outputs[-3] == "small" and outputs[-1] == "small again"
    assert outputs[-2].startswith("x" * 1000)
    assert [bool(flags & 0x01) for flags, _ in messages[-3:]] == [False, True, False]

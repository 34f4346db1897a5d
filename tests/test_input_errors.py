"""A client's mistakes are `invalid_argument` naming what to fix, on every protocol:
unknown enum names in JSON, forged page tokens, numbers and lists that would overflow
the store or a response, and gRPC sent over HTTP/1.1.

Requests go through raw HTTP clients (tests/test_fuzz.py) so that each protocol and
each JSON path is exercised as other clients use it.
"""

from __future__ import annotations

import base64
import json
import logging
import struct
from typing import Any
from urllib.parse import quote, unquote

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from provd.client.connect import call, job_client
from provd.gen.provd.v1 import jobs_pb2 as pb
from tests.archives import MAIN_TF, make_tar
from tests.conftest import ADMIN_TOKEN, DAEMON_PSK, Server, ServerFactory
from tests.raw_http import GRPC_CODES, Response, http1, http2

ADMIN = [("authorization", f"Bearer {ADMIN_TOKEN}")]
DAEMON = [
    ("provd-daemon-psk", DAEMON_PSK),
    ("provd-daemon-name", "errors"),
    ("provd-daemon-provisioners", "echo"),
    ("provd-api-version", "1.1"),
]


def envelope(payload: bytes) -> bytes:
    return struct.pack(">BI", 0, len(payload)) + payload


async def connect_json(
    server: Server, path: str, body: dict[str, Any], headers: list[tuple[str, str]] = ADMIN
) -> tuple[str, str]:
    """(code, message) of a Connect unary JSON call; code "ok" on success."""
    response = await http1(
        server.url,
        "POST",
        path,
        [*headers, ("content-type", "application/json"), ("connect-protocol-version", "1")],
        json.dumps(body).encode(),
    )
    if response.status == 200:
        return "ok", response.body.decode()
    error = json.loads(response.body)
    return error["code"], error["message"]


async def connect_get(server: Server, path: str, body: dict[str, Any]) -> tuple[str, str]:
    message = quote(json.dumps(body))
    response = await http1(
        server.url, "GET", f"{path}?connect=v1&encoding=json&message={message}", ADMIN, b""
    )
    if response.status == 200:
        return "ok", response.body.decode()
    error = json.loads(response.body)
    return error["code"], error["message"]


def grpc_status(response: Response) -> tuple[str, str]:
    """(code, message) of a gRPC or gRPC-web answer, from trailers, headers or the
    gRPC-web trailer frame."""
    for source in (response.trailers, response.headers):
        if "grpc-status" in source:
            return GRPC_CODES[int(source["grpc-status"])], unquote(source.get("grpc-message", ""))
    at = 0
    while at + 5 <= len(response.body):
        flags, length = struct.unpack_from(">BI", response.body, at)
        frame = response.body[at + 5 : at + 5 + length]
        at += 5 + length
        if flags & 0x80:
            fields = dict(
                line.split(":", 1) for line in frame.decode().split("\r\n") if ":" in line
            )
            fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
            return GRPC_CODES[int(fields["grpc-status"])], unquote(fields.get("grpc-message", ""))
    raise AssertionError(f"no status in {response!r}")


async def grpc_json(server: Server, path: str, body: dict[str, Any], *, web: bool, h2: bool):
    kind = "grpc-web" if web else "grpc"
    headers = [*ADMIN, ("content-type", f"application/{kind}+json")]
    headers.append(("x-grpc-web", "1") if web else ("te", "trailers"))
    payload = envelope(json.dumps(body).encode())
    if h2:
        host = server.url.removeprefix("http://")
        pseudo = [(":method", "POST"), (":scheme", "http"), (":authority", host), (":path", path)]
        return grpc_status(await http2(server.url, pseudo + headers, payload))
    return grpc_status(await http1(server.url, "POST", path, headers, payload))


async def uploaded(server: Server) -> str:
    client = job_client(server.url, ADMIN_TOKEN)
    response = await call(client.upload_file, pb.UploadFileRequest(data=make_tar(MAIN_TF)))
    return response.hash


# -- unknown enum names ----------------------------------------------------------------------

LIST = "/provd.v1.JobService/ListJobs"
CREATE = "/provd.v1.JobService/CreateJob"
BOGUS_STATUS = {"status": "JOB_STATUS_BOGUS"}


async def test_unknown_enum_names_are_refused_on_every_json_path(server: Server) -> None:
    build = {
        "provisioner": "echo",
        "fileHash": await uploaded(server),
        "workspaceBuild": {"metadata": {"workspaceTransition": "DESTORY"}},
    }
    code, message = await connect_json(server, CREATE, build)
    assert code == "invalid_argument"
    assert message.startswith("workspaceBuild.metadata.workspaceTransition: 'DESTORY'")
    assert "DESTROY" in message  # and says what would do

    answers = {
        "connect POST": await connect_json(server, LIST, BOGUS_STATUS),
        "connect GET": await connect_get(server, LIST, BOGUS_STATUS),
        "grpc-web h1": await grpc_json(server, LIST, BOGUS_STATUS, web=True, h2=False),
        "grpc-web h2": await grpc_json(server, LIST, BOGUS_STATUS, web=True, h2=True),
        "grpc h2": await grpc_json(server, LIST, BOGUS_STATUS, web=False, h2=True),
    }
    for path, (code, message) in answers.items():
        assert code == "invalid_argument", (path, message)
        assert message.startswith("status: 'JOB_STATUS_BOGUS' is not a provd.v1.JobStatus"), path

    # Inside repeated messages too, and on the daemons' service.
    update = {"jobId": "00000000-0000-0000-0000-000000000000", "logs": [{"level": "LOUD"}]}
    code, message = await connect_json(
        server, "/provisionerd.ProvisionerDaemon/UpdateJob", update, DAEMON
    )
    assert (code, message.split(":")[0]) == ("invalid_argument", "logs[0].level")

    # Nothing was created on the way.
    code, listed = await connect_json(server, LIST, {})
    assert code == "ok" and json.loads(listed) == {}


async def test_known_names_numbers_and_unknown_fields_still_parse(server: Server) -> None:
    build = {
        "provisioner": "echo",
        "fileHash": await uploaded(server),
        "workspaceBuild": {"metadata": {"workspaceTransition": "DESTROY"}},
        "aFieldFromANewerSchema": {"anything": [1, 2]},
    }
    code, created = await connect_json(server, CREATE, build)
    assert code == "ok", created
    assert json.loads(created)["workspaceBuild"]["metadata"]["workspaceTransition"] == "DESTROY"
    for status in ("JOB_STATUS_PENDING", 1, "1"):
        code, listed = await connect_json(server, LIST, {"status": status, "newField": True})
        assert code == "ok", listed
        assert len(json.loads(listed)["jobs"]) == 1


# -- page tokens ------------------------------------------------------------------------------


def b64(text: bytes) -> str:
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


async def list_page(server: Server, token: str = "", **query: Any) -> tuple[str, dict[str, Any]]:
    code, body = await connect_json(server, LIST, {"limit": 2, "pageToken": token, **query})
    return code, json.loads(body) if code == "ok" else {"message": body}


async def create_jobs(server: Server, count: int) -> None:
    file_hash = await uploaded(server)
    for _ in range(count):
        code, message = await connect_json(
            server, CREATE, {"provisioner": "echo", "fileHash": file_hash, "templateImport": {}}
        )
        assert code == "ok", message


async def test_page_tokens_the_server_did_not_issue_are_invalid_argument(server: Server) -> None:
    await create_jobs(server, 3)
    code, page = await list_page(server)
    assert code == "ok" and page["nextPageToken"]
    real = page["nextPageToken"]
    raw = bytearray(base64.urlsafe_b64decode(real + "=" * (-len(real) % 4)))
    raw[3] ^= 1
    forged = {
        "past SQLite's INTEGER": b64(f"v1:{2**63}".encode()),
        "a plain number": b64(b"v1:5"),
        "negative": b64(b"v1:-1"),
        "one bit changed": b64(bytes(raw)),
        "cut short": real[:-3],
        "not base64": "%%%",
        "long": "A" * 10_000,
    }
    for what, token in forged.items():
        code, answer = await list_page(server, token)
        assert code == "invalid_argument", what
        assert answer["message"].startswith("pageToken: "), what
    # A token is good for the query it came from only.
    code, answer = await list_page(server, real, provisioner="other")
    assert code == "invalid_argument" and answer["message"].startswith("pageToken: ")
    code, page = await list_page(server, real)
    assert code == "ok" and len(page["jobs"]) == 1


async def test_page_tokens_hold_across_processes_on_one_database(
    make_server: ServerFactory,
) -> None:
    first = await make_server()
    await create_jobs(first, 3)
    code, page = await list_page(first)
    assert code == "ok"
    # Another server on the same database (or this one restarted) continues the list.
    second = await make_server(db_path=first.db_path)
    code, rest = await list_page(second, page["nextPageToken"])
    assert code == "ok" and len(rest["jobs"]) == 1
    assert {job["id"] for job in rest["jobs"]}.isdisjoint(job["id"] for job in page["jobs"])
    # One with other credentials did not issue it.
    other = await make_server(db_path=first.db_path, admin_token="another-token")
    response = await http1(
        other.url,
        "POST",
        LIST,
        [("authorization", "Bearer another-token"), ("content-type", "application/json")],
        json.dumps({"limit": 2, "pageToken": page["nextPageToken"]}).encode(),
    )
    assert json.loads(response.body)["code"] == "invalid_argument"


# -- numbers and lists the store or a response cannot hold ------------------------------------


async def test_sizes_that_would_overflow_are_refused_or_saturated(server: Server) -> None:
    quota = "/provd.v1.QuotaService"
    groups = [f"g{i}" for i in range(40_000)]  # more than one SQLite statement takes
    code, message = await connect_json(
        server, f"{quota}/GetUserQuota", {"userId": "u", "groups": groups}
    )
    assert (code, message.split(":")[0]) == ("invalid_argument", "groups")

    build = {
        "provisioner": "echo",
        "fileHash": await uploaded(server),
        "workspaceBuild": {"metadata": {"workspaceOwnerGroups": groups}},
    }
    code, message = await connect_json(server, CREATE, build)
    assert code == "invalid_argument"
    assert message.startswith("workspaceBuild.metadata.workspaceOwnerGroups: ")

    # Two int32 allowances add up past an int32 budget: the answer saturates.
    for subject in ({"userId": "u"}, {"group": "devs"}):
        code, message = await connect_json(
            server, f"{quota}/SetAllowance", {"allowance": {**subject, "allowance": 2**31 - 1}}
        )
        assert code == "ok", message
    code, body = await connect_json(
        server, f"{quota}/GetUserQuota", {"userId": "u", "groups": ["devs"]}
    )
    assert code == "ok", body
    assert json.loads(body)["budget"] == 2**31 - 1

    code, body = await connect_json(server, LIST, {"limit": 2**31 - 1})
    assert code == "ok"


async def test_log_positions_at_the_edges(server: Server) -> None:
    client = job_client(server.url, ADMIN_TOKEN)
    job = await call(
        client.create_job,
        pb.CreateJobRequest(
            provisioner="echo", file_hash=await uploaded(server), template_import={}
        ),
    )

    def logs(after: int) -> list[pb.JobLog]:
        return list(client.stream_job_logs(pb.StreamJobLogsRequest(id=job.id, after=after)))

    assert await call(logs, 2**63 - 1) == []
    with pytest.raises(ConnectError) as caught:
        await call(logs, -(2**63))
    assert caught.value.code == Code.INVALID_ARGUMENT and caught.value.message.startswith("after:")


# -- gRPC needs HTTP/2 ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["application/grpc", "application/grpc+proto", "application/grpc+json", "Application/GRPC"],
)
async def test_grpc_over_http1_is_told_it_needs_http2(
    server: Server, content_type: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for headers in (ADMIN, []):  # before any credentials are checked
        response = await http1(
            server.url,
            "POST",
            LIST,
            [*headers, ("content-type", content_type), ("te", "trailers")],
            envelope(b""),
        )
        assert response.status == 200
        assert response.headers["content-type"] == "application/grpc"
        code, message = grpc_status(response)
        assert code == "unimplemented"
        assert message.startswith("gRPC needs HTTP/2")
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == []
    # gRPC-web over HTTP/1.1 is still served.
    code, message = await grpc_json(server, LIST, {}, web=True, h2=False)
    assert code == "ok", message

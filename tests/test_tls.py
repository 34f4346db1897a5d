"""TLS on the one port: `--tls-cert/--tls-key`, ALPN h2 and http/1.1, https:// URLs.

Clients trust a CA made for the test (tests/certs.py): pyqwest under provd's own
clients (HTTP/2 via ALPN, and HTTP/1.1), grpcio over a secure channel (gRPC needs h2
from ALPN), and the standard library's ssl over HTTP/1.1.
"""

from __future__ import annotations

import json
import signal
import ssl
import sys
import urllib.request
from pathlib import Path

import grpc
import pytest
import trio
from connectrpc.protocol import ProtocolType
from pyqwest import HTTPVersion, SyncClient, SyncHTTPTransport

from provd.client.connect import call, job_client
from provd.gen.provd.v1 import jobs_pb2 as pb
from tests.certs import Certificates, make_certificates
from tests.conftest import ADMIN_TOKEN, ServerFactory
from tests.processes import provd_env, start_server


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


def pyqwest_client(certs: Certificates, http_version: HTTPVersion | None) -> SyncClient:
    transport = SyncHTTPTransport(tls_ca_cert=certs.ca.read_bytes(), http_version=http_version)
    return SyncClient(transport)


@pytest.mark.parametrize(
    ("protocol", "http_version"),
    [
        pytest.param(ProtocolType.CONNECT, None, id="connect-alpn"),
        pytest.param(ProtocolType.CONNECT, HTTPVersion.HTTP1, id="connect-http1.1"),
        pytest.param(ProtocolType.GRPC, HTTPVersion.HTTP2, id="grpc-h2"),
        pytest.param(ProtocolType.GRPC_WEB, HTTPVersion.HTTP1, id="grpc-web-http1.1"),
    ],
)
async def test_job_api_over_tls(
    make_server: ServerFactory,
    certs: Certificates,
    protocol: ProtocolType,
    http_version: HTTPVersion | None,
) -> None:
    server = await make_server(tls_cert=certs.cert, tls_key=certs.key)
    assert server.url.startswith("https://127.0.0.1:")
    client = job_client(
        server.url,
        ADMIN_TOKEN,
        protocol=protocol,
        http_client=pyqwest_client(certs, http_version),
    )
    listed = await call(client.list_jobs, pb.ListJobsRequest())
    assert list(listed.jobs) == []
    logs = client.stream_job_logs(
        pb.StreamJobLogsRequest(id="00000000-0000-0000-0000-000000000000")
    )
    with pytest.raises(Exception, match="no job"):
        await call(lambda: list(logs))


def grpcio_list_jobs(url: str, ca: bytes) -> int:
    """ListJobs over grpcio's secure channel (which insists on h2 from ALPN)."""
    target = url.removeprefix("https://")
    channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=ca))
    with channel:
        list_jobs = channel.unary_unary(
            "/provd.v1.JobService/ListJobs",
            request_serializer=pb.ListJobsRequest.SerializeToString,
            response_deserializer=pb.ListJobsResponse.FromString,
        )
        response = list_jobs(
            pb.ListJobsRequest(),
            metadata=[("authorization", f"Bearer {ADMIN_TOKEN}")],
            timeout=20,
        )
        return len(response.jobs)


async def test_grpcio_secure_channel(make_server: ServerFactory, certs: Certificates) -> None:
    server = await make_server(tls_cert=certs.cert, tls_key=certs.key)
    count = await trio.to_thread.run_sync(grpcio_list_jobs, server.url, certs.ca.read_bytes())
    assert count == 0


def stdlib_post(url: str, ca: Path, body: dict[str, object]) -> tuple[dict, str]:
    """Connect JSON with urllib: HTTP/1.1, no ALPN h2."""
    context = ssl.create_default_context(cafile=str(ca))
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        return json.loads(response.read()), response.version


async def test_http11_over_tls_and_plain_http_refused(
    make_server: ServerFactory, certs: Certificates
) -> None:
    server = await make_server(tls_cert=certs.cert, tls_key=certs.key)
    body, version = await trio.to_thread.run_sync(
        stdlib_post, f"{server.url}/provd.v1.JobService/ListJobs", certs.ca, {}
    )
    assert body == {} and version == 11
    # The port speaks TLS only: a cleartext request gets no HTTP answer.
    plain = server.url.replace("https://", "http://") + "/healthz"
    with pytest.raises(OSError):
        await trio.to_thread.run_sync(lambda: urllib.request.urlopen(plain, timeout=10).read())


@pytest.mark.slow
async def test_serve_prints_https_url(
    tmp_path: Path, nursery: trio.Nursery, certs: Certificates
) -> None:
    env = provd_env(PROVD_TLS_CERT=str(certs.cert), PROVD_TLS_KEY=str(certs.key))
    server = await start_server(nursery, tmp_path / "provd.db", env=env)
    assert server.url.startswith("https://127.0.0.1:")
    client = job_client(server.url, ADMIN_TOKEN, http_client=pyqwest_client(certs, None))
    assert list((await call(client.list_jobs, pb.ListJobsRequest())).jobs) == []
    # provd's own CLI trusts a private CA through SSL_CERT_FILE, as documented.
    result = await trio.run_process(
        [sys.executable, "-m", "provd", "jobs", "list", "--json"],
        env=provd_env(PROVD_URL=server.url, SSL_CERT_FILE=str(certs.ca)),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"jobs": [], "nextPageToken": ""}
    server.signal(signal.SIGTERM)
    assert await server.wait() == 0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--tls-cert", "{cert}"], "--tls-cert and --tls-key go together", id="half"),
        pytest.param(
            ["--tls-cert", "{ca}", "--tls-key", "{key}"], "cannot load", id="key-mismatch"
        ),
    ],
)
async def test_serve_refuses_bad_tls_settings(
    tmp_path: Path, certs: Certificates, args: list[str], message: str
) -> None:
    paths = {"cert": certs.cert, "key": certs.key, "ca": certs.ca}
    result = await trio.run_process(
        [
            sys.executable,
            "-m",
            "provd",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            str(tmp_path / "provd.db"),
            *(arg.format(**paths) for arg in args),
        ],
        env=provd_env(),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr.decode()

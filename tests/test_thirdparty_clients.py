"""Other people's clients against a real provd: the buf CLI (`buf curl`, from npm's
@bufbuild/buf) over Connect, gRPC and gRPC-web, learning the schema by reflection; and
connect-es (@connectrpc/connect-node and connect-web) over every transport it has,
including the server-streamed logs. grpcio is in test_grpcio_interop.py.

The tools are installed by the tests (tests/thirdparty.py) into .cache/; when that is
impossible the tests are skipped with the reason.
"""

from __future__ import annotations

import base64
import json
import signal
from pathlib import Path
from typing import Any

import pytest
import trio

from provd.archive import pack_directory
from tests.certs import Certificates, make_certificates
from tests.conftest import ADMIN_TOKEN, DAEMON_PSK, Server, ServerFactory
from tests.processes import provd_env, start_daemon, start_server
from tests.thirdparty import CLIENTS, ROOT, buf, connect_es_dir, tools_env

pytestmark = pytest.mark.slow

# How many transports tests/clients/connect_matrix.mjs tries.
TRANSPORTS = 9
UNKNOWN_JOB = "00000000-0000-0000-0000-000000000000"
BUF_PROTOCOLS = {
    "connect-http1.1": ["--protocol", "connect"],
    "connect-h2c": ["--protocol", "connect", "--http2-prior-knowledge"],
    "grpc-h2c": ["--protocol", "grpc", "--http2-prior-knowledge"],
    "grpcweb-http1.1": ["--protocol", "grpcweb"],
    "grpcweb-h2c": ["--protocol", "grpcweb", "--http2-prior-knowledge"],
}
SERVICES = {
    "provisionerd.ProvisionerDaemon",
    "provd.v1.JobService",
    "provd.v1.DaemonService",
    "provd.v1.QuotaService",
}


class BufCurl:
    def __init__(self, url: str, flags: list[str], env: dict[str, str] | None = None) -> None:
        self.url = url
        self.flags = flags
        self.env = env or tools_env()

    async def run(self, *args: str, path: str = "") -> tuple[int, str, str]:
        """(exit status, stdout, stderr) of `buf curl FLAGS ARGS URL/PATH`."""
        with trio.fail_after(60):
            result = await trio.run_process(
                [str(buf()), "curl", *self.flags, *args, f"{self.url}{path}"],
                env=self.env,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        return result.returncode, result.stdout.decode(), result.stderr.decode()

    async def call(self, method: str, body: dict[str, Any], *headers: str) -> Any:
        """One call that must succeed; its response, or the list of them for a stream."""
        words = [word for header in headers for word in ("-H", header)]
        status, out, err = await self.run(*words, "-d", json.dumps(body), path=f"/{method}")
        assert status == 0, (method, err)
        decoder, messages, at = json.JSONDecoder(), [], 0
        while at < len(out.strip()):
            message, at = decoder.raw_decode(out, at)
            messages.append(message)
            while at < len(out) and out[at].isspace():
                at += 1
        return messages if method.endswith("StreamJobLogs") else messages[0]

    async def error(self, method: str, body: dict[str, Any], *headers: str) -> tuple[int, dict]:
        """One call that must fail: (exit status, the Connect error JSON)."""
        words = [word for header in headers for word in ("-H", header)]
        status, _, err = await self.run(*words, "-d", json.dumps(body), path=f"/{method}")
        assert status != 0
        return status, json.loads(err)


ADMIN = f"Authorization: Bearer {ADMIN_TOKEN}"
DAEMON = [
    f"Provd-Daemon-Psk: {DAEMON_PSK}",
    "Provd-Daemon-Name: buf-curl",
    "Provd-Daemon-Provisioners: echo",
]


async def exercise_buf(curl: BufCurl) -> None:
    """Reflection (both versions), the job API with a server stream, and daemon errors."""
    for reflection in ("grpc-v1", "grpc-v1alpha"):
        status, out, err = await curl.run("--reflect-protocol", reflection, "--list-services")
        assert status == 0, err
        assert set(out.split()) >= SERVICES
    status, out, err = await curl.run("--list-methods")
    assert "provd.v1.JobService/StreamJobLogs" in out.split(), err

    data = base64.b64encode(pack_directory(ROOT / "examples" / "hello")).decode()
    uploaded = await curl.call("provd.v1.JobService/UploadFile", {"data": data}, ADMIN)
    created = await curl.call(
        "provd.v1.JobService/CreateJob",
        {"provisioner": "echo", "fileHash": uploaded["hash"], "templateImport": {}},
        ADMIN,
    )
    assert created["status"] == "JOB_STATUS_PENDING"
    got = await curl.call("provd.v1.JobService/GetJob", {"id": created["id"]}, ADMIN)
    assert got["id"] == created["id"] and got["type"] == "JOB_TYPE_TEMPLATE_IMPORT"
    listed = await curl.call("provd.v1.JobService/ListJobs", {"limit": 100}, ADMIN)
    assert created["id"] in [job["id"] for job in listed["jobs"]]
    logs = await curl.call("provd.v1.JobService/StreamJobLogs", {"id": created["id"]}, ADMIN)
    assert [log["stage"] for log in logs] == ["Queued", "Queued"]
    assert all(log["output"] for log in logs)

    status, error = await curl.error(
        "provisionerd.ProvisionerDaemon/UpdateJob", {"jobId": UNKNOWN_JOB}, *DAEMON
    )
    assert (status, error["code"]) == (5 * 8, "not_found")  # buf curl: exit = code * 8
    assert UNKNOWN_JOB in error["message"]
    status, error = await curl.error(
        "provisionerd.ProvisionerDaemon/UpdateJob", {"jobId": UNKNOWN_JOB}, *DAEMON[1:]
    )
    assert (status, error["code"]) == (16 * 8, "unauthenticated")
    status, error = await curl.error(
        "provd.v1.JobService/ListJobs", {}, "Authorization: Bearer wrong"
    )
    assert error["code"] == "unauthenticated"
    status, error = await curl.error("provd.v1.JobService/GetJob", {"id": "nope"}, ADMIN)
    assert error["code"] == "invalid_argument" and "id" in error["message"]


@pytest.mark.parametrize("protocol", list(BUF_PROTOCOLS))
async def test_buf_curl(server: Server, protocol: str) -> None:
    await trio.to_thread.run_sync(buf)  # installs, or skips with the reason
    await exercise_buf(BufCurl(server.url, BUF_PROTOCOLS[protocol]))


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.mark.parametrize("protocol", ["connect", "grpc", "grpcweb"])
async def test_buf_curl_over_tls(
    make_server: ServerFactory, certs: Certificates, protocol: str
) -> None:
    """ALPN picks h2 (buf's default over TLS); the CA is trusted with --cacert."""
    await trio.to_thread.run_sync(buf)
    server = await make_server(tls_cert=certs.cert, tls_key=certs.key)
    curl = BufCurl(server.url, ["--protocol", protocol, "--cacert", str(certs.ca)])
    status, out, err = await curl.run("--list-services")
    assert status == 0 and set(out.split()) >= SERVICES, err
    assert await curl.call("provd.v1.JobService/ListJobs", {}, ADMIN) == {}


async def run_connect_matrix(work: Path, url: str, env: dict[str, str]) -> dict[str, Any]:
    with trio.fail_after(180):
        result = await trio.run_process(
            [
                "node",
                "connect_matrix.mjs",
                json.dumps(
                    {"url": url, "token": ADMIN_TOKEN, "psk": DAEMON_PSK, "tar": "hello.tar"}
                ),
            ],
            cwd=work,
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 0, result.stderr.decode()
    results: dict[str, Any] = json.loads(result.stdout)
    return results


def check_connect_matrix(results: dict[str, Any]) -> None:
    assert len(results) == TRANSPORTS
    for transport, seen in results.items():
        assert "error" not in seen, (transport, seen.get("error"))
        assert len(seen["hash"]) == 64 and seen["gotId"] == seen["id"] and seen["listed"]
        outputs = [line["output"] for line in seen["logs"]]
        stages = [line["stage"] for line in seen["logs"]]
        # The stream followed the job from the queue to its end.
        assert stages[0] == "Queued" and "Saying hello" in stages
        assert "Hello from the echo provisioner!" in outputs and "three" in outputs
        assert seen["status"] == "SUCCEEDED", transport
        assert seen["updateUnknownJob"] == "NotFound", transport
        assert seen["getUnknownJob"] == "NotFound", transport
        assert seen["withoutToken"] == "Unauthenticated", transport


async def connect_es_work_dir(tmp_path: Path) -> Path:
    work = await trio.to_thread.run_sync(connect_es_dir, tmp_path / "node")
    (work / "connect_matrix.mjs").write_bytes((CLIENTS / "connect_matrix.mjs").read_bytes())
    (work / "hello.tar").write_bytes(pack_directory(ROOT / "examples" / "hello"))
    return work


async def test_connect_es(tmp_path: Path, nursery: trio.Nursery) -> None:
    """Every connect-es transport against `provd serve`, with `provd daemon` running
    the jobs so that each log stream follows a job to its end."""
    work = await connect_es_work_dir(tmp_path)
    server = await start_server(nursery, tmp_path / "provd.db")
    # Killed with the nursery; runs every transport's job at once.
    await start_daemon(nursery, server.url, "--jobs", str(TRANSPORTS))
    check_connect_matrix(await run_connect_matrix(work, server.url, tools_env()))
    server.signal(signal.SIGTERM)
    assert await server.wait() == 0


async def test_connect_es_over_tls(
    tmp_path: Path, nursery: trio.Nursery, certs: Certificates
) -> None:
    """The same over https:// (Node trusts the test CA through NODE_EXTRA_CA_CERTS)."""
    work = await connect_es_work_dir(tmp_path)
    env = provd_env(PROVD_TLS_CERT=str(certs.cert), PROVD_TLS_KEY=str(certs.key))
    server = await start_server(nursery, tmp_path / "provd.db", env=env)
    assert server.url.startswith("https://")
    # provd's own daemon over TLS too, trusting the CA through SSL_CERT_FILE.
    await start_daemon(
        nursery, server.url, "--jobs", str(TRANSPORTS), env=provd_env(SSL_CERT_FILE=str(certs.ca))
    )
    results = await run_connect_matrix(
        work, server.url, tools_env(NODE_EXTRA_CA_CERTS=str(certs.ca))
    )
    check_connect_matrix(results)

"""provd's clients on a system without a CA store (provd/client/tls_roots.py).

"No store" is made by pointing SSL_CERT_FILE at a file that does not exist and
SSL_CERT_DIR at an empty directory: pyqwest (rustls-native-certs) and OpenSSL then read
only those, find nothing, and behave as on a machine without /etc/ssl/certs (before the
fix, pyqwest refused to build `provd daemon`'s transport even for http://: "No CA
certificates were loaded from the system"). Where `unshare` can hide /etc/ssl itself,
one test does that too. The real CLI and daemon run as subprocesses against a real
`provd serve`: over http:// they need no CA at all; over https:// they trust a private
CA given as the docs say (SSL_CERT_FILE), and without any they fall back to certifi's
bundle instead of failing to start.
"""

from __future__ import annotations

import shutil
import signal
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import trio

from provd.client import tls_roots
from provd.client.connect import call, http_transport, job_client
from provd.gen.provd.v1 import jobs_pb2 as pb
from tests.certs import Certificates, make_certificates
from tests.conftest import ADMIN_TOKEN, ServerFactory
from tests.processes import DaemonProcess, ServerProcess, provd_env, start_daemon, start_server

pytestmark = pytest.mark.slow

HELLO = Path(__file__).resolve().parent.parent / "provd" / "examples" / "hello"
NO_ROOTS_ERROR = "No CA certificates were loaded"
CHECK_PYQWEST = (
    "from pyqwest import SyncHTTPTransport\n"
    "try:\n"
    "    SyncHTTPTransport(tls_include_system_certs=True)\n"
    "except RuntimeError as error:\n"
    "    print(error)\n"
)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def no_roots(tmp_path: Path) -> dict[str, str]:
    """Environment variables under which neither pyqwest nor OpenSSL finds a CA."""
    empty = tmp_path / "no-roots"
    empty.mkdir()
    return {"SSL_CERT_FILE": str(empty / "none.pem"), "SSL_CERT_DIR": str(empty)}


def run_python(code: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_environment_hides_the_system_roots(no_roots: dict[str, str]) -> None:
    """The premise: pyqwest's own system-roots transport fails under `no_roots`."""
    assert NO_ROOTS_ERROR in run_python(CHECK_PYQWEST, provd_env(**no_roots))


async def cli(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    """`python -m provd ARGS` to its end, in `env`."""
    with trio.fail_after(60):
        return await trio.run_process(
            [sys.executable, "-m", "provd", *args],
            env=env,
            cwd=cwd,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


async def import_and_follow(server: ServerProcess, env: dict[str, str]) -> None:
    """An import job from examples/hello, created with the CLI and run by a daemon,
    both in `env`; the CLI's exit status says the job succeeded."""
    result = await cli(
        "jobs", "create", "--type", "import", "--archive", str(HELLO), "--follow", env=env
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
    assert b"succeeded" in result.stderr + result.stdout


async def stop(*processes: ServerProcess | DaemonProcess) -> None:
    for process in processes:
        process.signal(signal.SIGTERM)
        assert await process.wait() == 0


async def test_http_needs_no_roots(
    tmp_path: Path, nursery: trio.Nursery, no_roots: dict[str, str]
) -> None:
    server = await start_server(nursery, tmp_path / "provd.db")
    env = provd_env(PROVD_URL=server.url, **no_roots)
    daemon = await start_daemon(nursery, server.url, env=env)
    await import_and_follow(server, env)
    listed = await cli("daemons", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert NO_ROOTS_ERROR.encode() not in daemon.output
    await stop(daemon, server)


async def test_http_over_websocket_needs_no_roots(
    tmp_path: Path, nursery: trio.Nursery, no_roots: dict[str, str]
) -> None:
    server = await start_server(nursery, tmp_path / "provd.db")
    env = provd_env(PROVD_URL=server.url, **no_roots)
    daemon = await start_daemon(nursery, server.url, "--transport", "websocket", env=env)
    await import_and_follow(server, env)
    await stop(daemon, server)


async def test_https_trusts_the_ca_in_ssl_cert_file(
    tmp_path: Path, nursery: trio.Nursery, certs: Certificates, no_roots: dict[str, str]
) -> None:
    """A private CA, as docs/cli.md says to give it: SSL_CERT_FILE (and no other CA)."""
    server_env = provd_env(PROVD_TLS_CERT=str(certs.cert), PROVD_TLS_KEY=str(certs.key))
    server = await start_server(nursery, tmp_path / "provd.db", env=server_env)
    assert server.url.startswith("https://")
    env = provd_env(PROVD_URL=server.url, **{**no_roots, "SSL_CERT_FILE": str(certs.ca)})
    daemon = await start_daemon(nursery, server.url, env=env)
    await import_and_follow(server, env)
    websocket = await start_daemon(nursery, server.url, "--transport", "websocket", env=env)
    await import_and_follow(server, env)
    await stop(daemon, websocket, server)


async def test_https_without_roots_falls_back_to_the_bundle(
    tmp_path: Path, nursery: trio.Nursery, certs: Certificates, no_roots: dict[str, str]
) -> None:
    """With no CA at all the clients start and verify against certifi's bundle, which
    does not hold the test CA: a clear certificate error, not a crash."""
    server_env = provd_env(PROVD_TLS_CERT=str(certs.cert), PROVD_TLS_KEY=str(certs.key))
    server = await start_server(nursery, tmp_path / "provd.db", env=server_env)
    env = provd_env(PROVD_URL=server.url, **no_roots)
    listed = await cli("jobs", "list", env=env)
    assert listed.returncode == 1
    assert b"certificate verify failed" in listed.stderr, listed.stderr
    daemon = await start_daemon(nursery, server.url, env=env)
    await trio.sleep(1)
    assert daemon.process.returncode is None, daemon.output.decode()
    assert NO_ROOTS_ERROR.encode() not in daemon.output
    await stop(daemon, server)


async def test_the_fallback_bundle_is_what_https_trusts(
    make_server: ServerFactory,
    certs: Certificates,
    no_roots: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without system roots, both client stacks trust exactly the bundled file: with
    the test CA standing in for certifi's bundle, https:// works."""
    server = await make_server(tls_cert=certs.cert, tls_key=certs.key)
    for name, value in no_roots.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(tls_roots, "bundled_ca_file", lambda: str(certs.ca))

    from pyqwest import SyncClient

    transport = http_transport(urls=[server.url])
    try:
        client = job_client(server.url, ADMIN_TOKEN, http_client=SyncClient(transport))
        assert list((await call(client.list_jobs, pb.ListJobsRequest())).jobs) == []
    finally:
        transport.close()

    context = tls_roots.client_ssl_context()
    request = urllib.request.Request(
        f"{server.url}/provd.v1.JobService/ListJobs",
        data=b"{}",
        headers={"content-type": "application/json", "authorization": f"Bearer {ADMIN_TOKEN}"},
    )

    def post() -> bytes:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return bytes(response.read())

    assert await trio.to_thread.run_sync(post) == b"{}"


def test_certifi_is_the_bundle(no_roots: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    import certifi

    assert tls_roots.bundled_ca_file() == certifi.where()
    for name, value in no_roots.items():
        monkeypatch.setenv(name, value)
    assert tls_roots.client_ssl_context().cert_store_stats()["x509_ca"] > 50
    http_transport().close()  # would raise "No CA certificates were loaded" without it
    http_transport(urls=["http://127.0.0.1:1"]).close()


def test_system_roots_are_used_when_present(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bundle is a fallback only: where the system has a store, it is never read."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    paths = ssl.get_default_verify_paths()
    if paths.cafile is None and paths.capath is None:
        pytest.skip("this system has no CA store")
    monkeypatch.setattr(tls_roots, "bundled_ca_file", lambda: pytest.fail("read the bundle"))
    tls_roots.client_ssl_context()
    http_transport().close()


def test_no_etc_ssl_at_all(tmp_path: Path) -> None:
    """The real condition, where a user namespace allows it: /etc/ssl is an empty
    directory and no SSL_CERT_* is set."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("no unshare command")
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in provd_env().items() if not k.startswith("SSL_CERT_")}
    code = (
        CHECK_PYQWEST
        + "from provd.client.connect import http_transport\n"
        + "http_transport(urls=['http://127.0.0.1:1']).close()\n"
        + "http_transport().close()\n"
        + "print('transports made')\n"
    )
    script = 'mount --bind "$1" /etc/ssl && exec "$2" -c "$3"'
    result = subprocess.run(
        [unshare, "-rm", "sh", "-c", script, "sh", str(empty), sys.executable, code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if (
        result.returncode != 0
        and "transports made" not in result.stdout
        and ("unshare" in result.stderr or "mount" in result.stderr)
    ):
        pytest.skip(f"cannot hide /etc/ssl here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Failed to create client: builder error: unexpected error: "
        f"{NO_ROOTS_ERROR} from the system",
        "transports made",
    ]

"""provd.client.connect_lite, the CLI's Connect client (unary and server-streaming calls
over HTTP/1.1 on the standard library), against a real provd and, for what provd does
not send (odd framing, compressed or broken streams, HTTP errors without Connect's
JSON, silence), against a scripted socket.

The client blocks, so the tests call it from worker threads.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any, TypeVar

import pytest
import trio

from provd.client import connect_lite
from provd.client.connect import call, job_client
from provd.client.connect_lite import RpcError, Transport, service_client, snake_case
from provd.gen.provd.v1 import daemons_pb2, jobs_pb2, quota_pb2
from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.gen.provd.v1.daemons_connect_client import DaemonServiceClientSync
from provd.gen.provd.v1.jobs_connect_client import JobServiceClientSync
from provd.gen.provd.v1.quota_connect_client import QuotaServiceClientSync
from provd.gen.provisionerd import provisionerd_pb2 as pd
from provd.gen.provisionersdk import provisioner_pb2 as sdk
from tests.archives import MAIN_TF, make_tar
from tests.certs import Certificates, make_certificates
from tests.conftest import ADMIN_TOKEN, Server, ServerFactory
from tests.daemon_clients import TestDaemon

T = TypeVar("T")
NO_JOB = "00000000-0000-0000-0000-000000000000"
JOB_SERVICE = jobs_pb2.DESCRIPTOR.services_by_name["JobService"]


def jobs_client(url: str, token: str = ADMIN_TOKEN, **kwargs: Any) -> Any:
    return service_client(url, JOB_SERVICE, {"Authorization": f"Bearer {token}"}, **kwargs)


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A blocking call in a worker thread."""
    with trio.fail_after(30):  # a hang guard
        return await trio.to_thread.run_sync(partial(fn, *args, **kwargs), abandon_on_cancel=True)


async def failure(fn: Callable[..., object], *args: Any, **kwargs: Any) -> RpcError:
    """The RpcError that `fn` raises (a stream is read to its end)."""

    def attempt() -> None:
        result = fn(*args, **kwargs)
        if isinstance(result, Iterator):
            list(result)

    with pytest.raises(RpcError) as caught:
        await run(attempt)
    return caught.value


async def new_job(client: Any) -> pb.Job:
    uploaded = await run(client.upload_file, pb.UploadFileRequest(data=make_tar(MAIN_TF)))
    request = pb.CreateJobRequest(
        provisioner="echo", file_hash=uploaded.hash, template_import=pb.TemplateImportInput()
    )
    job: pb.Job = await run(client.create_job, request)
    return job


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- the client's shape ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "service", "generated"),
    [
        (jobs_pb2, "JobService", JobServiceClientSync),
        (daemons_pb2, "DaemonService", DaemonServiceClientSync),
        (quota_pb2, "QuotaService", QuotaServiceClientSync),
    ],
)
def test_the_methods_are_those_of_the_generated_clients(
    module: Any, service: str, generated: type
) -> None:
    """Each service's client has the methods of connectrpc's generated sync client,
    under the same names, so the CLI's code calls either the same way."""
    client = service_client("http://127.0.0.1:1", module.DESCRIPTOR.services_by_name[service])
    ours = {name for name, value in vars(client).items() if callable(value)}
    theirs = {name for name, value in vars(generated).items() if callable(value)}
    assert ours == {name for name in theirs if not name.startswith("_")}
    assert ours  # not vacuous


def test_snake_case() -> None:
    assert snake_case("ListJobs") == "list_jobs"
    assert snake_case("GetUserQuota") == "get_user_quota"
    assert snake_case("AcquireJobWithCancel") == "acquire_job_with_cancel"
    assert snake_case("GetHTTPStatus") == "get_http_status"


def test_a_request_of_the_wrong_type_is_refused() -> None:
    client = jobs_client("http://127.0.0.1:1")
    with pytest.raises(TypeError, match="takes a GetJobRequest, not ListJobsRequest"):
        client.get_job(pb.ListJobsRequest())


# -- against provd -----------------------------------------------------------------------


async def test_unary_calls(server: Server) -> None:
    """Every unary JobService call, with the answers connectrpc's client gets."""
    client = jobs_client(server.url)
    job = await new_job(client)
    assert job.status == pb.JOB_STATUS_PENDING and job.queue_position == 1

    got = await run(client.get_job, pb.GetJobRequest(id=job.id))
    reference = job_client(server.url, ADMIN_TOKEN)
    assert got == await call(reference.get_job, pb.GetJobRequest(id=job.id))
    listing = await run(client.list_jobs, pb.ListJobsRequest(limit=10))
    assert [j.id for j in listing.jobs] == [job.id]
    assert listing == await call(reference.list_jobs, pb.ListJobsRequest(limit=10))

    canceled = await run(client.cancel_job, pb.CancelJobRequest(id=job.id))
    assert canceled.status == pb.JOB_STATUS_CANCELED
    # A message with every kind of field survives the trip.
    daemons = service_client(
        server.url,
        daemons_pb2.DESCRIPTOR.services_by_name["DaemonService"],
        {"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert list((await run(daemons.list_daemons, daemons_pb2.ListDaemonsRequest())).daemons) == []


async def test_errors_carry_the_servers_code_and_message(server: Server) -> None:
    client = jobs_client(server.url)
    wrong = await failure(jobs_client(server.url, "not-the-token").list_jobs, pb.ListJobsRequest())
    assert (wrong.code, wrong.message) == ("unauthenticated", "invalid admin token")
    assert wrong.__cause__ is None

    missing = await failure(client.get_job, pb.GetJobRequest(id=NO_JOB))
    assert (missing.code, missing.message) == ("not_found", f"id: no job {NO_JOB}")
    malformed = await failure(client.get_job, pb.GetJobRequest(id="nope"))
    assert (malformed.code, malformed.message) == (
        "invalid_argument",
        "id: 'nope' is not a job id (a UUID)",
    )
    job = await new_job(client)
    await run(client.cancel_job, pb.CancelJobRequest(id=job.id))
    again = await failure(client.cancel_job, pb.CancelJobRequest(id=job.id))
    assert again.code == "failed_precondition" and "already canceled" in again.message

    # A method provd does not have: 404, which Connect reads as unimplemented.
    transport = Transport(server.url, {"Authorization": f"Bearer {ADMIN_TOKEN}"})
    unknown = await failure(transport.unary, "/provd.v1.JobService/Frobnicate", pb.Job(), pb.Job)
    assert (unknown.code, unknown.message) == ("unimplemented", "HTTP 404 Not Found")


def log(output: str, stage: str = "Plan") -> pd.Log:
    return pd.Log(source=pd.PROVISIONER, level=sdk.INFO, stage=stage, output=output)


async def test_a_followed_stream_yields_each_batch_as_it_arrives(
    server: Server, nursery: trio.Nursery
) -> None:
    client = jobs_client(server.url)
    job = await new_job(client)
    daemon = TestDaemon(server, "d1")
    await (await daemon.acquire(nursery)).wait()

    received: list[pb.JobLog] = []
    done = trio.Event()
    token = trio.lowlevel.current_trio_token()

    def follow() -> None:
        try:
            request = pb.StreamJobLogsRequest(id=job.id, follow=True)
            for line in client.stream_job_logs(request):
                trio.from_thread.run_sync(received.append, line, trio_token=token)
        finally:
            trio.from_thread.run_sync(done.set, trio_token=token)

    nursery.start_soon(partial(trio.to_thread.run_sync, follow, abandon_on_cancel=True))

    async def outputs_end_with(*expected: str) -> None:
        with trio.fail_after(10):
            while tuple(line.output for line in received[-len(expected) :]) != expected:
                await trio.sleep(0.01)

    await daemon.update(job.id, logs=[log("one"), log("two")])
    await outputs_end_with("one", "two")  # before the next batch exists
    await daemon.update(job.id, logs=[log("three", "Apply"), log("four", "Apply")])
    await outputs_end_with("three", "four")
    assert not done.is_set()
    await daemon.complete(job.id)
    with trio.fail_after(10):
        await done.wait()
    outputs = [line.output for line in received]
    assert outputs[-4:] == ["one", "two", "three", "four"]
    assert [line.id for line in received] == sorted(line.id for line in received)
    # Without follow, the same lines, then the end.
    again = await run(lambda: list(client.stream_job_logs(pb.StreamJobLogsRequest(id=job.id))))
    assert [line.output for line in again] == outputs


async def test_a_stream_that_fails_at_its_start(server: Server) -> None:
    client = jobs_client(server.url)
    missing = await failure(client.stream_job_logs, pb.StreamJobLogsRequest(id=NO_JOB))
    assert (missing.code, missing.message) == ("not_found", f"id: no job {NO_JOB}")
    negative = await failure(client.stream_job_logs, pb.StreamJobLogsRequest(id=NO_JOB, after=-1))
    assert negative.code == "invalid_argument"
    wrong = jobs_client(server.url, "nope")
    refused = await failure(wrong.stream_job_logs, pb.StreamJobLogsRequest(id=NO_JOB))
    assert (refused.code, refused.message) == ("unauthenticated", "invalid admin token")


async def test_a_stream_that_fails_after_some_messages(server: Server) -> None:
    """The server's deadline (Connect-Timeout-Ms) ends a follow of a job that waits
    for a daemon: the lines so far arrive, then the server's error."""
    client = jobs_client(server.url)
    job = await new_job(client)
    received: list[pb.JobLog] = []

    def follow() -> None:
        request = pb.StreamJobLogsRequest(id=job.id, follow=True)
        received.extend(client.stream_job_logs(request, timeout_ms=300))

    error = await failure(follow)
    assert error.code == "deadline_exceeded"
    assert error.message and "stopped answering" not in error.message  # the server's
    assert received and received[0].stage == "Queued"


async def test_a_stream_call_sends_nothing_until_it_is_read() -> None:
    client = jobs_client(f"http://127.0.0.1:{closed_port()}")
    stream = client.stream_job_logs(pb.StreamJobLogsRequest(id=NO_JOB))  # no error yet
    error = await failure(lambda: next(stream))
    assert (error.code, error.message) == ("unavailable", "connection refused")


async def test_an_unreachable_server() -> None:
    client = jobs_client(f"http://127.0.0.1:{closed_port()}")
    error = await failure(client.list_jobs, pb.ListJobsRequest())
    assert (error.code, error.message) == ("unavailable", "connection refused")
    assert isinstance(error.__cause__, ConnectionRefusedError)


# -- TLS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


async def test_https(
    make_server: ServerFactory, certs: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await make_server(tls_cert=certs.cert, tls_key=certs.key)
    assert server.url.startswith("https://")
    context = ssl.create_default_context(cafile=str(certs.ca))
    client = jobs_client(server.url, ssl_context=context)
    job = await new_job(client)
    lines = await run(lambda: list(client.stream_job_logs(pb.StreamJobLogsRequest(id=job.id))))
    assert lines and lines[0].stage == "Queued"
    missing = await failure(client.get_job, pb.GetJobRequest(id=NO_JOB))
    assert missing.code == "not_found"

    # The default context trusts SSL_CERT_FILE, as the CLI documents.
    monkeypatch.setattr(connect_lite, "_ssl_context", None)
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))
    listing = await run(jobs_client(server.url).list_jobs, pb.ListJobsRequest())
    assert [j.id for j in listing.jobs] == [job.id]

    # A CA the client does not trust: provd cannot be reached, and the reason says so.
    monkeypatch.setattr(connect_lite, "_ssl_context", None)
    monkeypatch.delenv("SSL_CERT_FILE")
    untrusted = await failure(jobs_client(server.url).list_jobs, pb.ListJobsRequest())
    assert untrusted.code == "unavailable"
    assert untrusted.message.startswith("TLS: certificate verify failed"), untrusted.message
    assert isinstance(untrusted.__cause__, ssl.SSLCertVerificationError)


# -- a scripted server -------------------------------------------------------------------


class Scripted:
    """A socket on 127.0.0.1 that reads each request (headers and Content-Length body)
    and answers with `answer`: bytes are written, a float is a pause; then it closes
    the connection."""

    def __init__(self, answer: Sequence[bytes | float]) -> None:
        self.answer = answer
        self.requests: list[tuple[bytes, bytes]] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            with connection:
                data = b""
                while b"\r\n\r\n" not in data and (chunk := connection.recv(65536)):
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length: *(\d+)", head)
                while length and len(body) < int(length.group(1)):
                    body += connection.recv(65536)
                self.requests.append((head, body))
                try:
                    for piece in self.answer:
                        if isinstance(piece, float):
                            time.sleep(piece)
                        else:
                            connection.sendall(piece)
                except OSError:
                    pass

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self._listener.close()


@pytest.fixture
def scripted() -> Iterator[Callable[..., Scripted]]:
    servers: list[Scripted] = []

    def start(*answer: bytes | float) -> Scripted:
        servers.append(Scripted(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def envelope(data: bytes, flags: int = 0) -> bytes:
    return bytes([flags]) + len(data).to_bytes(4, "big") + data


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def head(status: str, content_type: str, *more: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Type: {content_type}", *more]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


STREAM_HEAD = head("200 OK", "application/connect+proto", "Transfer-Encoding: chunked")
LINES = [pb.JobLog(id=n, output=f"line {n}").SerializeToString() for n in (1, 2)]


async def test_the_requests_on_the_wire(scripted: Callable[..., Scripted]) -> None:
    job = pb.Job(id="j1", provisioner="echo").SerializeToString()
    server = scripted(head("200 OK", "application/proto", f"Content-Length: {len(job)}") + job)
    client = jobs_client(server.url + "/prefix/", "tok")
    request = pb.GetJobRequest(id="j1")
    got = await run(client.get_job, request, headers={"X-Extra": "1"}, timeout_ms=2500)
    assert got.id == "j1" and got.provisioner == "echo"
    sent_head, sent_body = server.requests[-1]
    lines = sent_head.decode().split("\r\n")
    assert lines[0] == "POST /prefix/provd.v1.JobService/GetJob HTTP/1.1"
    headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:])}
    assert headers["host"] == server.url.removeprefix("http://")
    assert headers["content-type"] == "application/proto"
    assert headers["connect-protocol-version"] == "1"
    assert headers["authorization"] == "Bearer tok"
    assert headers["connect-timeout-ms"] == "2500"
    assert headers["x-extra"] == "1"
    assert "accept-encoding" not in headers and "content-encoding" not in headers
    assert sent_body == request.SerializeToString()

    stream = scripted(STREAM_HEAD + chunked(envelope(b"{}", 2)))
    follow = pb.StreamJobLogsRequest(id="j1", follow=True)
    assert await run(lambda: list(jobs_client(stream.url).stream_job_logs(follow))) == []
    sent_head, sent_body = stream.requests[-1]
    assert b"\r\nContent-Type: application/connect+proto\r\n" in sent_head
    assert sent_body == envelope(follow.SerializeToString())


def read_stream(server: Scripted) -> list[str]:
    client = jobs_client(server.url)
    return [line.output for line in client.stream_job_logs(pb.StreamJobLogsRequest(id="j"))]


async def stream_of(server: Scripted) -> list[str]:
    return await run(read_stream, server)


async def test_envelopes_across_chunks_and_without_chunks(
    scripted: Callable[..., Scripted],
) -> None:
    whole = envelope(LINES[0]) + envelope(LINES[1]) + envelope(b"{}", 2)
    # One byte a chunk, with pauses: an envelope's pieces arrive apart.
    pieces = [piece for byte in whole for piece in (chunked(bytes([byte]))[:-5], 0.0)]
    split = scripted(STREAM_HEAD, *pieces, b"0\r\nX-Trailer: 1\r\n\r\n")
    assert await stream_of(split) == ["line 1", "line 2"]
    # One chunk for all of it.
    assert await stream_of(scripted(STREAM_HEAD + chunked(whole))) == ["line 1", "line 2"]
    # No chunks: the body ends with the connection.
    plain = head("200 OK", "application/connect+proto") + whole
    assert await stream_of(scripted(plain)) == ["line 1", "line 2"]
    # Content-Length.
    sized = head("200 OK", "application/connect+proto", f"Content-Length: {len(whole)}") + whole
    assert await stream_of(scripted(sized)) == ["line 1", "line 2"]
    # An informational answer first.
    informational = b"HTTP/1.1 100 Continue\r\n\r\n" + STREAM_HEAD + chunked(whole)
    assert await stream_of(scripted(informational)) == ["line 1", "line 2"]


async def test_an_error_after_some_messages(scripted: Callable[..., Scripted]) -> None:
    end = (
        b'{"error": {"code": "resource_exhausted", "message": "too many",'
        b' "details": [{"type": "x.Y", "value": "AA"}]}}'
    )
    body = chunked(envelope(LINES[0]), envelope(LINES[1]), envelope(end, 2))
    server = scripted(STREAM_HEAD, body)
    received: list[str] = []

    def read() -> None:
        for line in jobs_client(server.url).stream_job_logs(pb.StreamJobLogsRequest(id="j")):
            received.append(line.output)

    error = await failure(read)
    assert received == ["line 1", "line 2"]
    assert (error.code, error.message) == ("resource_exhausted", "too many")
    assert error.details == [{"type": "x.Y", "value": "AA"}]


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        pytest.param(envelope(LINES[0]), "internal", "the stream ended early", id="no-end"),
        pytest.param(envelope(LINES[0])[:7], "internal", "ended inside a message", id="cut"),
        pytest.param(envelope(LINES[0], 1), "internal", "a message is compressed", id="gzip"),
        pytest.param(envelope(b"nope", 2), "internal", "is not JSON", id="bad-end"),
        pytest.param(envelope(b'{"error": {"code": "new"}}', 2), "unknown", "", id="new-code"),
        pytest.param(
            envelope(b"\xff\xff"), "internal", "cannot decode the provd.v1.JobLog", id="bad"
        ),
    ],
)
async def test_a_broken_stream(
    scripted: Callable[..., Scripted], body: bytes, code: str, message: str
) -> None:
    error = await failure(read_stream, scripted(STREAM_HEAD + chunked(body)))
    assert error.code == code and message in error.message


@pytest.mark.parametrize(
    ("answer", "code", "message"),
    [
        pytest.param(
            head("502 Bad Gateway", "text/html", "Content-Length: 5") + b"oops!",
            "unavailable",
            "HTTP 502 Bad Gateway",
            id="502-html",
        ),
        pytest.param(
            head("401 Unauthorized", "application/json", "Content-Length: 2") + b"{}",
            "unauthenticated",
            "",
            id="401-no-code",
        ),
        pytest.param(
            head("200 OK", "text/html", "Content-Length: 2") + b"hi",
            "unknown",
            "invalid content-type: 'text/html'; expecting 'application/proto'",
            id="200-html",
        ),
        pytest.param(
            head("200 OK", "application/proto", "Content-Encoding: gzip", "Content-Length: 0"),
            "internal",
            "the answer is compressed (gzip)",
            id="gzip",
        ),
        pytest.param(
            b"SSH-2.0-OpenSSH\r\n", "unavailable", "does not answer in HTTP/1.1", id="not-http"
        ),
        pytest.param(b"", "unavailable", "the server closed the connection", id="closed"),
        pytest.param(
            head("200 OK", "application/proto", "Content-Length: 10") + b"\x0a",
            "unavailable",
            "the connection broke: the answer ended early",
            id="short-body",
        ),
    ],
)
async def test_unary_answers_that_are_not_messages(
    scripted: Callable[..., Scripted], answer: bytes, code: str, message: str
) -> None:
    server = scripted(answer)
    error = await failure(jobs_client(server.url).get_job, pb.GetJobRequest(id="j"))
    assert error.code == code and message in error.message


async def test_silence_times_out(scripted: Callable[..., Scripted]) -> None:
    server = scripted(5.0)
    started = time.monotonic()
    error = await failure(jobs_client(server.url, timeout=0.3).list_jobs, pb.ListJobsRequest())
    assert error.code == "deadline_exceeded"
    assert error.message == f"no answer from {server.url} within 0.3 s"
    assert time.monotonic() - started < 3
    # A call's own deadline bounds its wait as well (plus the grace for the server's
    # answer): a stream that goes quiet ends.
    quiet = scripted(STREAM_HEAD, chunked(envelope(LINES[0]))[:-5], 5.0)
    client = jobs_client(quiet.url)
    stream = client.stream_job_logs(pb.StreamJobLogsRequest(id="j"), timeout_ms=100)
    error = await failure(lambda: list(stream))
    assert error.code == "deadline_exceeded"

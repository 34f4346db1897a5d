"""A small Connect client for the admin CLI: unary and server-streaming calls, binary
protobuf, HTTP/1.1, written on the standard library's `socket` and `ssl`.

Why it exists: start-up time. Through connectrpc's generated clients, the first call
of `provd jobs list` imported connectrpc's whole stack (asyncio, protobuf-py, its
client and server modules: about 280 ms on the benchmark machine) and pyqwest (44 ms
for its first transport), and the command took 0.59-0.66 s (median of 10); the goal
is 0.3 s. With this client the command imports neither, nor asyncio or trio
(docs/performance.md, "CLI start-up", has the figures). The HTTP layer is a socket
rather than `http.client`, which would add the `email` package's parser and `ssl`
(about 40 ms) to every call over http://.

What it implements, from https://connectrpc.com/docs/protocol:

- Unary: `POST /<package.Service>/<Method>` with `Content-Type: application/proto`,
  `Connect-Protocol-Version: 1` and the client's headers (provd's CLI: `Authorization:
  Bearer <token>`); 200 is the response message, anything else Connect's error JSON
  (`{"code": …, "message": …, "details": […]}`) raised as `RpcError`. Without that
  JSON the code follows from the HTTP status, as Connect's clients do it.
- Server streaming: `Content-Type: application/connect+proto`, the request as one
  envelope (flags byte, 4-byte big-endian length, message); the answer's envelopes
  are read as they arrive and yielded one by one, until the end-of-stream envelope
  (flag 0x02), whose JSON may hold an error.
- http:// and https:// (`ssl.create_default_context()`: the system's CAs, and
  `SSL_CERT_FILE`/`SSL_CERT_DIR`, as pyqwest's clients trust them, or certifi's CAs
  when the system has none, `provd.client.tls_roots`; ALPN `http/1.1`).
- A timeout (`DEFAULT_TIMEOUT`, per socket operation): for connecting, for sending,
  for the answer's headers and for reading a unary answer; a stream's messages may
  take as long as the server takes (a followed job may wait for a daemon for hours).
  A call's `timeout_ms` is sent as `Connect-Timeout-Ms`, the deadline the server
  enforces, and bounds the client's waits too (plus `DEADLINE_GRACE`).
- A client per service built from the generated descriptors (`service_client`): its
  methods have the names of connectrpc's generated sync clients (`ListJobs` ->
  `list_jobs`) and take the request and, optionally, `headers` and `timeout_ms`.

What it does not: compression (requests go plain and answers must be: a compressed
one is an `internal` error), HTTP/2, client and bidirectional streams (a daemon's
`AcquireJobWithCancel`: provd.client.connect, on connectrpc), the JSON codec, GET
for side-effect-free methods (`use_get`), keep-alive (each call opens its own
connection; a command makes one or a few calls), proxies.
"""

from __future__ import annotations

import re
import socket
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar
from urllib.parse import urlsplit

from provd import __version__

if TYPE_CHECKING:
    import ssl

    from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
    from google.protobuf.message import Message

M = TypeVar("M", bound="Message")

# Connect's error codes: the values of `connectrpc.code.Code`.
CODES = frozenset(
    {
        "canceled",
        "unknown",
        "invalid_argument",
        "deadline_exceeded",
        "not_found",
        "already_exists",
        "permission_denied",
        "resource_exhausted",
        "failed_precondition",
        "aborted",
        "out_of_range",
        "unimplemented",
        "internal",
        "unavailable",
        "data_loss",
        "unauthenticated",
    }
)
# An error answer without Connect's JSON: the code from the HTTP status (the protocol's
# table; every other status is `unknown`).
_CODE_OF_HTTP_STATUS = {
    400: "internal",
    401: "unauthenticated",
    403: "permission_denied",
    404: "unimplemented",
    429: "unavailable",
    502: "unavailable",
    503: "unavailable",
    504: "unavailable",
}
DEFAULT_TIMEOUT = 60.0
# A call's own deadline (`timeout_ms`) is the server's to enforce: the client waits this
# much longer, so that the server's `deadline_exceeded` answer arrives first.
DEADLINE_GRACE = 1.0
UNARY_CONTENT_TYPE = "application/proto"
STREAM_CONTENT_TYPE = "application/connect+proto"
_END_STREAM = 0x02
_COMPRESSED = 0x01
# Guards against a broken answer, not limits of provd's.
_MAX_LINE = 65536
_MAX_HEADERS = 200
_MAX_ENVELOPE = 64 * 1024 * 1024
_SEND_CHUNK = 1024 * 1024


class RpcError(Exception):
    """A call that failed. `code` is one of Connect's codes (`CODES`, the string values
    of `connectrpc.code.Code`), `message` the server's message, `details` Connect's
    error details as sent (dicts with `type` and base64 `value`).

    When provd could not be reached at all (no connection, TLS refused, no answer to
    the request) the code is `unavailable`, the message says why in a few words
    ("connection refused", "the host name does not resolve", "timed out"), and
    `__cause__` is the `OSError`."""

    def __init__(self, code: str, message: str, details: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.details = list(details)


def snake_case(name: str) -> str:
    """A method's Python name, as connectrpc's generator makes it: `GetUserQuota` ->
    `get_user_quota`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


class ServiceClient:
    """A client of one Connect service (`service_client`)."""

    def __init__(self, transport: Transport, service: ServiceDescriptor) -> None:
        self.transport = transport
        self.service_name: str = service.full_name
        for method in service.methods:
            if not method.client_streaming:
                setattr(self, snake_case(method.name), _bind(transport, method))

    def __repr__(self) -> str:
        return f"<{self.service_name} client for {self.transport.url}>"


def service_client(
    url: str,
    service: ServiceDescriptor,
    headers: Mapping[str, str] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    ssl_context: ssl.SSLContext | None = None,
) -> ServiceClient:
    """A client of `service` (e.g. `jobs_pb2.DESCRIPTOR.services_by_name["JobService"]`)
    at `url`, sending `headers` with every call: a method for each unary and
    server-streaming method of the service."""
    return ServiceClient(Transport(url, headers, timeout=timeout, ssl_context=ssl_context), service)


def _bind(transport: Transport, method: MethodDescriptor) -> Callable[..., Any]:
    from google.protobuf.message_factory import GetMessageClass

    path = f"/{method.containing_service.full_name}/{method.name}"
    input_class = GetMessageClass(method.input_type)
    output_class = GetMessageClass(method.output_type)
    streams = method.server_streaming

    def call(
        request: Message,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_ms: int | None = None,
    ) -> Any:
        if not isinstance(request, input_class):
            raise TypeError(f"{path} takes a {input_class.__name__}, not {type(request).__name__}")
        if streams:
            return transport.server_stream(
                path, request, output_class, headers=headers, timeout_ms=timeout_ms
            )
        return transport.unary(path, request, output_class, headers=headers, timeout_ms=timeout_ms)

    call.__name__ = snake_case(method.name)
    call.__qualname__ = f"{method.containing_service.name}Client.{call.__name__}"
    kind = "server stream" if streams else "unary"
    call.__doc__ = f"{path} ({kind}): {input_class.__name__} -> {output_class.__name__}"
    return call


class Transport:
    """Connect calls to one server: `url` (`http://` or `https://`, perhaps with a path
    prefix), `headers` sent with every call."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
        self.url = url.rstrip("/")
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        # An ASCII name goes to getaddrinfo as bytes, which spares the idna codec's import.
        self._address: str | bytes = self._host.encode() if self._host.isascii() else self._host
        self._port = parts.port or (443 if self._tls else 80)
        self._authority = parts.netloc.rpartition("@")[2]
        self._prefix = parts.path.rstrip("/")
        self._headers = dict(headers or {})
        self._timeout = timeout
        self._ssl_context = ssl_context

    def unary(
        self,
        path: str,
        request: Message,
        output: type[M],
        *,
        headers: Mapping[str, str] | None = None,
        timeout_ms: int | None = None,
    ) -> M:
        """One unary call: the response message, or an `RpcError`."""
        timeout = self._timeout if timeout_ms is None else timeout_ms / 1000 + DEADLINE_GRACE
        body = request.SerializeToString()
        with self._exchange(path, UNARY_CONTENT_TYPE, body, headers, timeout_ms, timeout) as answer:
            data = answer.read_all()
        if answer.status != 200:
            raise answer.error(data)
        answer.expect(UNARY_CONTENT_TYPE)
        if answer.headers.get("content-encoding", "identity") != "identity":
            raise RpcError(
                "internal", f"the answer is compressed ({answer.headers['content-encoding']})"
            )
        return _decode(output, data)

    def server_stream(
        self,
        path: str,
        request: Message,
        output: type[M],
        *,
        headers: Mapping[str, str] | None = None,
        timeout_ms: int | None = None,
    ) -> Iterator[M]:
        """A server-streaming call: the messages as they arrive. The request is sent
        when the first message is asked for; closing the iterator closes the
        connection, which ends the call."""
        timeout = self._timeout if timeout_ms is None else timeout_ms / 1000 + DEADLINE_GRACE
        payload = request.SerializeToString()
        body = b"\x00" + len(payload).to_bytes(4, "big") + payload
        with self._exchange(
            path, STREAM_CONTENT_TYPE, body, headers, timeout_ms, timeout
        ) as answer:
            if answer.status != 200:
                raise answer.error(answer.read_all())
            answer.expect(STREAM_CONTENT_TYPE)
            # A follow may wait for a daemon indefinitely: no timeout between messages
            # unless the caller asked for one.
            answer.settimeout(None if timeout_ms is None else timeout)
            while True:
                prefix = answer.read(5)
                flags, size = (prefix[0], int.from_bytes(prefix[1:5], "big")) if prefix else (0, 0)
                if len(prefix) < 5 or size > _MAX_ENVELOPE:
                    what = "ended early" if len(prefix) < 5 else f"sent a {size}-byte message"
                    raise RpcError("internal", f"the stream {what}")
                data = answer.read(size)
                if len(data) < size:
                    raise RpcError("internal", "the stream ended inside a message")
                if flags & _END_STREAM:
                    _end_of_stream(data)
                    return
                if flags & _COMPRESSED:
                    raise RpcError("internal", "a message is compressed, and none was asked for")
                yield _decode(output, data)

    def _exchange(
        self,
        path: str,
        content_type: str,
        body: bytes,
        headers: Mapping[str, str] | None,
        timeout_ms: int | None,
        timeout: float,
    ) -> _Answer:
        """Send one request on a new connection; the answer with its headers read."""
        fields = {
            "Host": self._authority,
            "User-Agent": f"provd/{__version__}",
            "Content-Type": content_type,
            "Content-Length": str(len(body)),
            "Connect-Protocol-Version": "1",
            **({"Connect-Timeout-Ms": str(timeout_ms)} if timeout_ms is not None else {}),
            **self._headers,
            **(headers or {}),
            "Connection": "close",
        }
        lines = [f"POST {self._prefix}{path} HTTP/1.1"]
        for name, value in fields.items():
            if any(c in f"{name}{value}" for c in "\r\n\0"):
                raise ValueError(f"the header {name} holds a line break or NUL")
            lines.append(f"{name}: {value}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        sock = self._connect(timeout)
        try:
            _send(sock, head, body)
            return _Answer.receive(sock, self.url)
        except RpcError:
            sock.close()
            raise
        except TimeoutError:
            sock.close()
            raise RpcError(
                "deadline_exceeded", f"no answer from {self.url} within {timeout:g} s"
            ) from None
        except OSError as error:
            sock.close()
            raise RpcError("unavailable", _reason(error)) from error
        except BaseException:  # KeyboardInterrupt
            sock.close()
            raise

    def _connect(self, timeout: float) -> socket.socket:
        address = (self._address, self._port)
        try:
            # typeshed wants a str host; getaddrinfo takes bytes as well.
            sock = socket.create_connection(address, timeout)  # type: ignore[arg-type]
        except OSError as error:
            raise RpcError("unavailable", _reason(error)) from error
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self._tls:
            return sock
        context = self._ssl_context or default_ssl_context()
        try:
            return context.wrap_socket(sock, server_hostname=self._host)
        except OSError as error:  # ssl.SSLError included
            sock.close()
            raise RpcError("unavailable", _reason(error)) from error


_ssl_context: ssl.SSLContext | None = None


def default_ssl_context() -> ssl.SSLContext:
    """The standard library's default client context (system CAs, SSL_CERT_FILE,
    SSL_CERT_DIR; certifi's CAs on a system without any: `tls_roots`), offering
    HTTP/1.1 through ALPN; made once per process."""
    global _ssl_context
    if _ssl_context is None:
        from provd.client.tls_roots import client_ssl_context

        context = client_ssl_context()
        context.set_alpn_protocols(["http/1.1"])
        _ssl_context = context
    return _ssl_context


def _send(sock: socket.socket, head: bytes, body: bytes) -> None:
    """The request, in pieces: the socket's timeout then bounds each piece rather than
    the whole upload (sendall's timeout is for all of it)."""
    if len(body) <= _SEND_CHUNK:
        sock.sendall(head + body)
        return
    sock.sendall(head)
    view = memoryview(body)
    while view:
        view = view[sock.send(view[:_SEND_CHUNK]) :]


def _reason(error: OSError) -> str:
    """Why the connection failed, in a few words."""
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, socket.gaierror):
        return "the host name does not resolve"
    if isinstance(error, TimeoutError):
        return "timed out"
    ssl = sys.modules.get("ssl")  # not imported: not a TLS error
    if ssl is not None and isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS: certificate verify failed: {error.verify_message or error.reason}"
    if ssl is not None and isinstance(error, ssl.SSLError):
        return f"TLS: {error.reason or error}"
    return error.strerror or str(error) or type(error).__name__


def _decode(output: type[M], data: bytes) -> M:
    from google.protobuf.message import DecodeError

    message: M = output()
    try:
        message.ParseFromString(data)
    except DecodeError as error:
        raise RpcError(
            "internal", f"cannot decode the {output.DESCRIPTOR.full_name}: {error}"
        ) from None
    return message


def _end_of_stream(data: bytes) -> None:
    """The end-of-stream message: `{}`, or `{"error": {…}}` raised."""
    import json

    try:
        end = json.loads(data)
    except ValueError:
        raise RpcError("internal", "the end-of-stream message is not JSON") from None
    if isinstance(end, dict) and end.get("error") is not None:
        raise _error_from_json(end["error"], "unknown")


def _error_from_json(data: object, fallback: str) -> RpcError:
    """Connect's error JSON as an `RpcError`; `fallback` is the code when it names none."""
    if not isinstance(data, dict):
        return RpcError(fallback, "")
    code = data.get("code")
    message = data.get("message")
    details = data.get("details")
    return RpcError(
        code if code in CODES else ("unknown" if code else fallback),
        message if isinstance(message, str) else "",
        [d for d in details if isinstance(d, dict)] if isinstance(details, list) else (),
    )


class _Answer:
    """An HTTP/1.1 answer: status and headers read, the body read on demand (by
    Content-Length, chunked, or up to the end of the connection)."""

    def __init__(
        self,
        sock: socket.socket,
        file: BinaryIO,
        url: str,
        status: int,
        reason: str,
        headers: dict[str, str],
    ) -> None:
        self._sock = sock
        # The reader the headers were read through: it may hold the body's start.
        self._file = file
        self.url = url
        self.status = status
        self.reason = reason
        self.headers = headers
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        # Body bytes left: of the current chunk when chunked (None: read the next size
        # line), of the body by Content-Length, or None up to the end of the connection.
        self._left: int | None = None
        self._done = False
        if not self._chunked and "content-length" in headers:
            try:
                self._left = int(headers["content-length"])
            except ValueError:
                raise RpcError("internal", "the answer has a malformed Content-Length") from None

    @classmethod
    def receive(cls, sock: socket.socket, url: str) -> _Answer:
        """Read the status line and the headers (skipping 1xx answers)."""
        reader = sock.makefile("rb")
        try:
            while True:
                line = reader.readline(_MAX_LINE)
                if not line:
                    raise ConnectionResetError(0, "the server closed the connection")
                version, _, rest = line.rstrip(b"\r\n").partition(b" ")
                status, _, reason = rest.partition(b" ")
                if not version.startswith(b"HTTP/1.") or not status.isdigit():
                    raise RpcError("unavailable", f"{url} does not answer in HTTP/1.1: {line!r}")
                headers: dict[str, str] = {}
                for _ in range(_MAX_HEADERS):
                    field = reader.readline(_MAX_LINE)
                    if field in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = field.decode("latin-1").partition(":")
                    name, value = name.strip().lower(), value.strip()
                    headers[name] = f"{headers[name]}, {value}" if name in headers else value
                else:
                    raise RpcError("internal", "the answer has too many headers")
                if not 100 <= int(status) < 200:
                    break
            return cls(sock, reader, url, int(status), reason.decode("latin-1"), headers)
        except BaseException:
            reader.close()
            raise

    def __enter__(self) -> _Answer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def settimeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)

    @property
    def media_type(self) -> str:
        """The Content-Type without its parameters, in lower case."""
        return self.headers.get("content-type", "").partition(";")[0].strip().lower()

    def expect(self, content_type: str) -> None:
        """Fail unless the answer is of `content_type`."""
        found = self.media_type
        if found != content_type:
            raise RpcError(
                "unknown" if not found.startswith("application/") else "internal",
                f"invalid content-type: {found!r}; expecting {content_type!r}",
            )

    def error(self, body: bytes) -> RpcError:
        """A non-200 answer as an `RpcError`: Connect's error JSON if it is one, else
        the code that the HTTP status stands for."""
        import json

        code = _CODE_OF_HTTP_STATUS.get(self.status, "unknown")
        if self.media_type == "application/json":
            try:
                data = json.loads(body)
            except ValueError:
                data = None
            if isinstance(data, dict):
                return _error_from_json(data, code)
        reason = self.reason
        if not reason:
            from http import HTTPStatus

            phrases = {status.value: status.phrase for status in HTTPStatus}
            reason = phrases.get(self.status, "")
        return RpcError(code, f"HTTP {self.status} {reason}".rstrip())

    def read(self, size: int) -> bytes:
        """`size` bytes of the body, fewer only at its end."""
        try:
            return self._read(size)
        except TimeoutError:
            raise RpcError("deadline_exceeded", f"{self.url} stopped answering") from None
        except OSError as error:
            raise RpcError("unavailable", f"the connection broke: {_reason(error)}") from None

    def read_all(self) -> bytes:
        return self.read(-1)

    def _read(self, size: int) -> bytes:
        if self._done:
            return b""
        if not self._chunked:
            if self._left is None:  # up to the end of the connection
                return self._file.read(size if size >= 0 else -1) or b""
            wanted = self._left if size < 0 else min(size, self._left)
            data = self._file.read(wanted) or b""
            self._left -= len(data)
            if len(data) < wanted:
                raise ConnectionResetError(0, "the answer ended early")
            return data
        chunks = []
        count = 0
        while size < 0 or count < size:
            if not self._left:
                if self._left == 0:  # the CRLF after the chunk just read
                    self._line()
                line = self._line()
                try:
                    chunk_size = int(line.partition(b";")[0].strip(), 16)
                except ValueError:
                    raise RpcError("internal", f"a malformed chunk size: {line!r}") from None
                if chunk_size == 0:
                    while self._file.readline(_MAX_LINE) not in (b"", b"\r\n", b"\n"):
                        continue  # a trailer line: read and dropped
                    self._done = True
                    break
                self._left = chunk_size
            wanted = self._left if size < 0 else min(self._left, size - count)
            data = self._file.read(wanted) or b""
            if len(data) < wanted:
                raise ConnectionResetError(0, "the answer ended inside a chunk")
            chunks.append(data)
            count += len(data)
            self._left -= len(data)
        return b"".join(chunks)

    def _line(self) -> bytes:
        line = self._file.readline(_MAX_LINE)
        if not line:
            raise ConnectionResetError(0, "the answer ended early")
        return line

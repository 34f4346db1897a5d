"""The fault drill: every RPC over Connect JSON, Connect binary, gRPC and gRPC-web, with
malformed bodies, envelopes and headers, sent by raw HTTP clients (h11 for HTTP/1.1, h2
for cleartext HTTP/2) so that any framing can be sent.

What must hold, whatever arrives: no 5xx but the protocol's own (a Connect code that
maps to one, such as `unimplemented` or `deadline_exceeded`), never `unknown`,
`internal` or `data_loss`, an answer within a few seconds, no traceback in the server's
log, and the server alive and serving afterwards.

The generator is seeded and deterministic: `PROVD_FUZZ_SEED` replays a run,
`PROVD_FUZZ_REQUESTS` sets the number of requests of the long drill (marked slow).
Each run prints its figures: requests per protocol and outcomes by code.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import logging
import os
import random
import string
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import h11
import pytest
import trio
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message

from provd.gen.provd.v1 import daemons_pb2, jobs_pb2, quota_pb2
from provd.gen.provisionerd import provisionerd_pb2
from tests.conftest import ADMIN_TOKEN, DAEMON_PSK, Server, ServerFactory
from tests.raw_http import GRPC_CODES, Response, address, http1, http2

REQUEST_SECONDS = 10.0  # a request not answered by then is a hang
MAX_TARGET = 6000
HTTP1_MAX_HEAD = 16 * 1024  # hypercorn's h11_max_incomplete_size: past it, 431 and close
# Never the answer to a client's mistake.
SERVER_FAULTS = {"unknown", "internal", "data_loss"}
# The Connect codes whose HTTP status is a 5xx of the protocol's own.
PROTOCOL_5XX = {"unimplemented", "unavailable", "deadline_exceeded"}


# -- raw clients ------------------------------------------------------------------------------


async def raw_bytes(url: str, data: bytes) -> bytes:
    """Send `data` as it is and read whatever comes back until the server closes or
    goes quiet."""
    host, port = address(url)
    stream = await trio.open_tcp_stream(host, port)
    received = b""
    async with stream:
        await stream.send_all(data)
        with trio.move_on_after(2):
            while chunk := await stream.receive_some(65536):
                received += chunk
    return received


# -- what the services are -----------------------------------------------------------------


@dataclass(frozen=True)
class Rpc:
    service: str
    name: str
    input: Descriptor | None  # None: not a provd message (reflection)
    client_streams: bool
    server_streams: bool
    get_allowed: bool

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"

    @property
    def unary(self) -> bool:
        return not self.client_streams and not self.server_streams


def _rpcs() -> list[Rpc]:
    found = []
    for module in (jobs_pb2, daemons_pb2, quota_pb2, provisionerd_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            method: MethodDescriptor
            for method in service.methods:
                found.append(
                    Rpc(
                        service.full_name,
                        method.name,
                        method.input_type,
                        method.client_streaming,
                        method.server_streaming,
                        method.GetOptions().idempotency_level == 1,  # NO_SIDE_EFFECTS
                    )
                )
    for service in (
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ):
        found.append(Rpc(service, "ServerReflectionInfo", None, True, True, False))
    return found


RPCS = _rpcs()
PROTOCOLS = ("connect-json", "connect-proto", "grpc", "grpc-web")
# Streams that never end by themselves (WatchJobs says when jobs change, for as long as
# the client listens): sent with a deadline, as a client that wants its answer in time
# would, so a well-formed call ends `deadline_exceeded` instead of looking like a hang.
ENDLESS = {"/provd.v1.JobService/WatchJobs"}
ENDLESS_DEADLINE = [("connect-timeout-ms", "1000"), ("grpc-timeout", "1S")]


def credentials(rpc: Rpc) -> list[tuple[str, str]]:
    if rpc.service.startswith("provd.v1."):
        return [("authorization", f"Bearer {ADMIN_TOKEN}")]
    if rpc.service.startswith("provisionerd."):
        return [
            ("provd-daemon-psk", DAEMON_PSK),
            ("provd-daemon-name", "fuzz"),
            ("provd-daemon-provisioners", "fuzz"),
            ("provd-api-version", "1.1"),
        ]
    return []


# -- generated messages -------------------------------------------------------------------

_INT_EDGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def random_text(rng: random.Random) -> str:
    kind = rng.randrange(8)
    if kind == 0:
        return ""
    if kind == 1:
        return str(rng.choice(["00000000-0000-0000-0000-000000000000", "echo", "default"]))
    if kind == 2:
        return "x" * rng.choice([65, 257, 1025, 5000])
    if kind == 3:
        return "".join(rng.choice("é漢\u202e\U0001f600\x00\n../") for _ in range(rng.randrange(12)))
    if kind == 4:
        return "../" * rng.randrange(1, 6) + "etc/passwd"
    return "".join(rng.choice(string.printable) for _ in range(rng.randrange(1, 24)))


def fill(message: Message, rng: random.Random, depth: int = 0) -> Message:
    """Set random fields of `message`: extremes, unknown enum numbers, odd text."""
    descriptor: Descriptor = message.DESCRIPTOR
    for fd in descriptor.fields:
        if rng.random() < 0.5:
            continue
        with contextlib.suppress(ValueError, TypeError):  # a value the field cannot hold
            _fill_field(message, fd, rng, depth)
    return message


def _scalar(fd: FieldDescriptor, rng: random.Random) -> Any:
    if fd.type in _INT_EDGES:
        low, high = _INT_EDGES[fd.type]
        return rng.choice([low, high, 0, -1 if low < 0 else 1, rng.randint(low, high)])
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return rng.random() < 0.5
    if fd.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return rng.choice([0.0, -1.5, 1e308, float("inf"), float("nan")])
    if fd.type == FieldDescriptor.TYPE_STRING:
        return random_text(rng)
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return rng.randbytes(rng.choice([0, 1, 16, 300, 5000]))
    if fd.type == FieldDescriptor.TYPE_ENUM:
        numbers = [v.number for v in fd.enum_type.values]
        return rng.choice([*numbers, max(numbers) + 1, -1, 2**31 - 1])
    raise TypeError(fd.type)


def _fill_field(message: Message, fd: FieldDescriptor, rng: random.Random, depth: int) -> None:
    value = getattr(message, fd.name)
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        if fd.message_type.GetOptions().map_entry:
            key_fd = fd.message_type.fields_by_name["key"]
            value_fd = fd.message_type.fields_by_name["value"]
            for _ in range(rng.choice([1, 2, 70])):
                key = _scalar(key_fd, rng)
                if value_fd.type == FieldDescriptor.TYPE_MESSAGE:
                    if depth < 3:
                        fill(value[key], rng, depth + 1)
                else:
                    value[key] = _scalar(value_fd, rng)
            return
        if depth >= 3 or fd.message_type.full_name.startswith("google.protobuf."):
            return
        if fd.is_repeated:
            for _ in range(rng.choice([1, 3])):
                fill(value.add(), rng, depth + 1)
        else:
            fill(value, rng, depth + 1)
        return
    if fd.is_repeated:
        value.extend(_scalar(fd, rng) for _ in range(rng.choice([1, 3, 1100])))
    else:
        setattr(message, fd.name, _scalar(fd, rng))


def message_class(rpc: Rpc) -> type[Message] | None:
    return None if rpc.input is None else message_factory.GetMessageClass(rpc.input)


# -- bodies, envelopes, headers ---------------------------------------------------------------


def json_body(rpc: Rpc, rng: random.Random) -> bytes:
    cls = message_class(rpc)
    document: Any = {}
    if cls is not None and rng.random() < 0.8:
        try:
            document = json.loads(json_format.MessageToJson(fill(cls(), rng)))
        except (ValueError, TypeError, json_format.Error):
            document = {}
    return mutate_json(document, rpc, rng)


def _enum_paths(descriptor: Descriptor, prefix: list[str], depth: int = 0) -> list[list[str]]:
    paths = []
    for fd in descriptor.fields:
        if fd.type == FieldDescriptor.TYPE_ENUM and not fd.is_repeated:
            paths.append([*prefix, fd.json_name])
        elif (
            fd.type == FieldDescriptor.TYPE_MESSAGE
            and not fd.is_repeated
            and depth < 3
            and not fd.message_type.full_name.startswith("google.protobuf.")
        ):
            paths.extend(_enum_paths(fd.message_type, [*prefix, fd.json_name], depth + 1))
    return paths


def mutate_json(document: Any, rpc: Rpc, rng: random.Random) -> bytes:
    choice = rng.randrange(14)
    if choice == 0 and rpc.input is not None:
        paths = _enum_paths(rpc.input, [])
        if paths:
            path = rng.choice(paths)
            target = document if isinstance(document, dict) else {}
            for key in path[:-1]:
                target = target.setdefault(key, {})
                if not isinstance(target, dict):
                    break
            else:
                target[path[-1]] = rng.choice(["DESTORY", "JOB_STATUS_BOGUS", "", "start", "1e3"])
    elif choice == 1 and isinstance(document, dict):
        document[rng.choice(["unknownField", "@type", "__proto__", ""])] = rng.choice(
            [1, "x", None, [], {}]
        )
    elif choice == 2 and isinstance(document, dict) and document:
        key = rng.choice(list(document))
        document[key] = rng.choice([True, 1.5, "x", [1], {"a": 1}, 10**30, -(10**30), None])
    elif choice == 3:
        return rng.choice([b"", b"null", b"[]", b"1", b'"x"', b"{", b"}", b"{}}", b"\xff\xfe{}"])
    elif choice == 4:
        depth = rng.choice([50, 101, 5000])
        return b'{"a":' * depth + b"1" + b"}" * depth
    elif choice == 5:
        return b'{"limit": 1, "limit": 2}'
    elif choice == 6:
        text = json.dumps(document).encode()
        return text[: rng.randrange(len(text) + 1)]
    elif choice == 7:
        return rng.randbytes(rng.randrange(1, 64))
    elif choice == 8:
        return b'{"id": "\\ud800", "limit": "12"}'
    elif choice == 9:
        return b'{"limit": 1' + b"0" * 5000 + b"}"
    return json.dumps(document).encode()


def proto_body(rpc: Rpc, rng: random.Random) -> bytes:
    cls = message_class(rpc)
    data = b""
    if cls is not None:
        data = fill(cls(), rng).SerializeToString()
    return mutate_bytes(data, rng)


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    choice = rng.randrange(10)
    if choice == 0 and data:
        return data[: rng.randrange(len(data))]
    if choice == 1 and data:
        flipped = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        return bytes(flipped)
    if choice == 2:
        return rng.randbytes(rng.randrange(1, 256))
    if choice == 3:
        # Field 1 as a string of invalid UTF-8, a huge length, a wrong wire type.
        return rng.choice([b"\x0a\x02\xff\xfe", b"\x0a\xff\xff\xff\xff\x0f", b"\x0b", b"\x08"])
    if choice == 4:
        return data + rng.randbytes(rng.randrange(1, 16))
    return data


def envelope(payload: bytes, flags: int = 0) -> bytes:
    return struct.pack(">BI", flags, len(payload)) + payload


def mutate_envelope(payload: bytes, rng: random.Random, *, connect: bool) -> bytes:
    choice = rng.randrange(12)
    if choice == 0:
        return struct.pack(">BI", 0, len(payload) + rng.choice([1, 100, 2**31])) + payload
    if choice == 1 and payload:
        return struct.pack(">BI", 0, len(payload) - 1) + payload
    if choice == 2:
        return envelope(payload, 0x01)  # compressed, with no encoding said
    if choice == 3:
        return envelope(payload, rng.choice([0x02, 0x04, 0x7E, 0x80, 0xFF]))
    if choice == 4:
        return envelope(payload) * rng.choice([2, 3])
    if choice == 5:
        return b""
    if choice == 6:
        return envelope(payload)[: rng.randrange(1, 5)]
    if choice == 7:
        return envelope(gzip.compress(payload), 0x01)
    if choice == 8 and connect:
        return envelope(payload) + envelope(b'{"metadata": 5}', 0x02)
    return envelope(payload)


def mutate_headers(headers: list[tuple[str, str]], rng: random.Random) -> list[tuple[str, str]]:
    headers = list(headers)
    for _ in range(rng.choice([0, 0, 1, 2])):
        choice = rng.randrange(13)
        if choice == 0:
            headers = [h for h in headers if h[0] != "authorization"]
            headers.append(("authorization", rng.choice(["Bearer", "Basic x", "Bearer  ", "x"])))
        elif choice == 1:
            headers.append(("connect-timeout-ms", rng.choice(["0", "1", "-5", "abc", "9" * 30])))
        elif choice == 2:
            headers.append(
                ("grpc-timeout", rng.choice(["1n", "1000000000H", "x", "5", "99999999S"]))
            )
        elif choice == 3:
            headers.append(("content-encoding", rng.choice(["gzip", "br", "zz", "identity"])))
        elif choice == 4:
            headers.append(("grpc-encoding", rng.choice(["gzip", "snappy", "", "identity"])))
        elif choice == 5:
            headers.append(("connect-content-encoding", rng.choice(["gzip", "xx"])))
        elif choice == 6:
            headers.append(("accept-encoding", rng.choice(["*", "gzip;q=0", "x" * 300])))
        elif choice == 7:
            headers = [h for h in headers if h[0] != "connect-protocol-version"]
            headers.append(("connect-protocol-version", rng.choice(["2", "", "v1"])))
        elif choice == 8:
            headers = [h for h in headers if h[0] != "content-type"]
            headers.append(
                (
                    "content-type",
                    rng.choice(
                        [
                            "text/plain",
                            "application/json; charset=latin-1",
                            "APPLICATION/JSON",
                            "application/grpc+xml",
                            "application/grpc-web-text",
                            "application/connect+yaml",
                            "application/grpc; x=y",
                            "",
                        ]
                    ),
                )
            )
        elif choice == 9:
            headers = [h for h in headers if not h[0].startswith("provd-daemon")]
            headers.append(("provd-daemon-psk", DAEMON_PSK))
            headers.append(("provd-daemon-tags", rng.choice(["a", "=b", "a=b=c,,", "x" * 600])))
            headers.append(("provd-daemon-provisioners", rng.choice(["", ",,", "échø"])))
        elif choice == 10:
            headers.append(("provd-api-version", rng.choice(["x.y", "99.0", "1.-1", ""])))
        elif choice == 11:
            headers.append(("x-long", "v" * rng.choice([100, 8000])))
        else:
            headers.append(("te", "trailers"))
    return headers


# -- one request, sent and judged ---------------------------------------------------------------


@dataclass
class Case:
    protocol: str  # one of PROTOCOLS, or "grpc-over-http1", "connect-get"
    http2: bool
    rpc: Rpc
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def label(self) -> str:
        return f"{self.protocol}/{'h2' if self.http2 else 'h1'}"


def make_case(rpc: Rpc, rng: random.Random) -> Case:
    protocol = rng.choice([*PROTOCOLS, "connect-get", "grpc-over-http1"])
    if protocol == "connect-get" and not rpc.get_allowed:
        protocol = "connect-json"
    http2 = protocol == "grpc" or (protocol != "grpc-over-http1" and rng.random() < 0.5)
    headers = credentials(rpc)
    json_codec = protocol == "connect-json" or (
        protocol in ("grpc", "grpc-web", "grpc-over-http1") and rng.random() < 0.3
    )
    payload = json_body(rpc, rng) if json_codec else proto_body(rpc, rng)
    method, target, body = "POST", rpc.path, payload
    if protocol == "connect-get":
        params = ["connect=v1", "encoding=json"]
        if rng.random() < 0.3:
            params += ["base64=1", "message=" + base64.urlsafe_b64encode(payload).decode()]
        elif rng.random() < 0.9:
            params.append("message=" + quote(payload.decode("utf-8", "replace")))
        if rng.random() < 0.2:
            params.append(rng.choice(["compression=gzip", "compression=zz", "encoding=yaml"]))
        # Kept under hypercorn's 16 KiB request head, and cheap for h2's pure-Python
        # header compression (it takes seconds for 100 KiB, stalling the test's loop).
        method, target, body = "GET", f"{rpc.path}?{'&'.join(params)}"[:MAX_TARGET], b""
    elif protocol.startswith("connect"):
        codec = "json" if protocol == "connect-json" else "proto"
        if rpc.unary:
            headers += [("content-type", f"application/{codec}"), ("connect-protocol-version", "1")]
        else:
            headers += [("content-type", f"application/connect+{codec}")]
            body = mutate_envelope(payload, rng, connect=True)
    else:
        kind = "grpc-web" if protocol == "grpc-web" else "grpc"
        codec = "+json" if json_codec else rng.choice(["", "+proto"])
        headers += [("content-type", f"application/{kind}{codec}")]
        if kind == "grpc":
            headers.append(("te", "trailers"))
        else:
            headers.append(("x-grpc-web", "1"))
        body = mutate_envelope(payload, rng, connect=False)
    if rng.random() < 0.05:
        method = rng.choice(["PUT", "DELETE", "PATCH", "GET", "OPTIONS"])
    headers = mutate_headers(headers, rng)
    if rpc.path in ENDLESS:  # its deadline, whatever the mutation did to the timeouts
        timeouts = {name for name, _ in ENDLESS_DEADLINE}
        headers = [h for h in headers if h[0] not in timeouts] + ENDLESS_DEADLINE
    return Case(protocol, http2, rpc, method, target, headers, body)


async def send(url: str, case: Case) -> Response:
    host, port = address(url)
    if case.http2:
        pseudo = [
            (":method", case.method),
            (":scheme", "http"),
            (":authority", f"{host}:{port}"),
            (":path", case.target),
        ]
        return await http2(url, pseudo + case.headers, case.body)
    return await http1(url, case.method, case.target, case.headers, case.body)


def _frames(body: bytes) -> list[tuple[int, bytes]]:
    frames, at = [], 0
    while at + 5 <= len(body):
        flags, length = struct.unpack_from(">BI", body, at)
        frames.append((flags, body[at + 5 : at + 5 + length]))
        at += 5 + length
    return frames


def outcome(response: Response) -> str:
    """The code the client was told: a gRPC/Connect code name, or http-<status>."""
    if response.reset and not response.status:
        return "reset"
    for source in (response.trailers, response.headers):
        if "grpc-status" in source:
            return GRPC_CODES[int(source["grpc-status"])]
    content_type = response.headers.get("content-type", "")
    if content_type.startswith("application/grpc-web"):
        for flags, data in _frames(response.body):
            if flags & 0x80:
                for line in data.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "grpc-status":
                        return GRPC_CODES[int(value.strip())]
        return "no-status"
    if content_type.startswith("application/connect+"):
        for flags, data in _frames(response.body):
            if flags & 0x02:
                error = json.loads(data or b"{}").get("error")
                return "ok" if error is None else str(error["code"])
        return "no-end-of-stream" if response.status == 200 else f"http-{response.status}"
    if response.status == 200:
        return "ok"
    if content_type.startswith("application/json"):
        try:
            return str(json.loads(response.body)["code"])
        except (ValueError, KeyError, TypeError):
            pass
    return f"http-{response.status}"


def problem(case: Case, response: Response, code: str) -> str | None:
    """Why this answer breaks the drill's rules, or None."""
    if code in SERVER_FAULTS:
        return f"{code} for a client's mistake"
    if response.status >= 500 and code not in PROTOCOL_5XX:
        return f"HTTP {response.status} ({code})"
    if code in ("no-status", "no-end-of-stream"):
        return f"a {case.protocol} answer without a status"
    head = len(case.target) + sum(len(name) + len(value) + 4 for name, value in case.headers)
    if code == "reset" and not case.http2 and head < HTTP1_MAX_HEAD:
        return "the connection closed without an answer"
    media = dict(case.headers).get("content-type", "").split(";")[0].strip().lower()
    grpc = media == "application/grpc" or media.startswith("application/grpc+")
    if grpc and not case.http2 and case.method == "POST" and code != "unimplemented":
        return f"gRPC over HTTP/1.1 answered {code}, not unimplemented"
    return None


@dataclass
class Figures:
    requests: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    by_protocol: dict[str, Counter[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def record(self, case: Case, code: str, why: str | None) -> None:
        self.requests[case.label] += 1
        self.outcomes[code] += 1
        self.by_protocol.setdefault(case.label, Counter())[code] += 1
        if why is not None and len(self.problems) < 20:
            headers = [(name, value[:60]) for name, value in case.headers]
            self.problems.append(
                f"{why}: {case.label} {case.method} {case.target[:120]}"
                f" headers={headers!r} body={case.body[:120]!r}"
            )

    def report(self) -> str:
        lines = [f"fuzz: {sum(self.requests.values())} requests"]
        for label in sorted(self.by_protocol):
            codes = ", ".join(f"{c} {n}" for c, n in self.by_protocol[label].most_common())
            lines.append(f"  {label}: {self.requests[label]} ({codes})")
        total = ", ".join(f"{c} {n}" for c, n in self.outcomes.most_common())
        lines.append(f"  outcomes: {total}")
        return "\n".join(lines)


async def drill(server: Server, seed: int, requests: int, parallel: int = 4) -> Figures:
    """Send `requests` generated requests, `parallel` at a time."""
    rng = random.Random(seed)
    cases = [make_case(rng.choice(RPCS), rng) for _ in range(requests)]
    figures = Figures()
    queue = iter(cases)

    async def worker() -> None:
        for case in queue:
            try:
                with trio.fail_after(REQUEST_SECONDS):
                    response = await send(server.url, case)
            except trio.TooSlowError:
                figures.record(case, "hang", "no answer within 10 s")
                continue
            except (OSError, trio.BrokenResourceError, h11.RemoteProtocolError) as error:
                figures.record(case, "broken", f"transport error {error!r}")
                continue
            code = outcome(response)
            figures.record(case, code, problem(case, response, code))

    async with trio.open_nursery() as nursery:
        for _ in range(parallel):
            nursery.start_soon(worker)
    return figures


MALFORMED_HTTP = [
    b"\x00\x01\x02garbage\r\n\r\n",
    b"POST /provd.v1.JobService/ListJobs HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /provd.v1.JobService/ListJobs HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /provd.v1.JobService/ListJobs HTTP/1.1\r\n" + b"X: " + b"y" * 70000 + b"\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x04\x09\x00\x00\x00\x00\x01junk",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\xff" * 64,
]


async def assert_alive(server: Server) -> None:
    with trio.fail_after(REQUEST_SECONDS):
        health = await http1(server.url, "GET", "/healthz", [], b"")
        assert health.status == 200
        listed = await http1(
            server.url,
            "POST",
            "/provd.v1.JobService/ListJobs",
            [
                ("authorization", f"Bearer {ADMIN_TOKEN}"),
                ("content-type", "application/json"),
            ],
            b"{}",
        )
        assert listed.status == 200, listed


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the server logged as an error, with its traceback if any."""
    formatter = logging.Formatter()
    return [
        record.getMessage()
        + ("\n" + formatter.formatException(record.exc_info) if record.exc_info else "")
        for record in caplog.records
        if record.levelno >= logging.ERROR or record.exc_info
    ]


async def run_drill(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture, requests: int
) -> Figures:
    caplog.set_level(logging.INFO)
    server = await make_server(unary_acquire_wait_seconds=0.05)
    seed = int(os.environ.get("PROVD_FUZZ_SEED", "20261201"))
    figures = await drill(server, seed, requests)
    for data in MALFORMED_HTTP:
        with trio.fail_after(REQUEST_SECONDS):
            await raw_bytes(server.url, data)
    print(figures.report())
    assert not figures.problems, "\n".join(figures.problems)
    assert set(figures.requests) >= {
        "connect-json/h1",
        "connect-proto/h2",
        "grpc/h2",
        "grpc-web/h1",
    }
    await assert_alive(server)
    errors = tracebacks(caplog)
    assert not errors, "\n".join(errors[:3])
    return figures


async def test_fuzz_every_rpc_briefly(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    await run_drill(make_server, caplog, requests=240)


@pytest.mark.slow
async def test_fuzz_every_rpc_at_length(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    await run_drill(make_server, caplog, int(os.environ.get("PROVD_FUZZ_REQUESTS", "3000")))

"""CORS: `--cors-origin` / PROVD_CORS_ORIGINS, preflights, the headers browsers need,
and the same-origin test the WebSocket origin rule uses (the upgrades themselves are
in tests/test_websocket.py)."""

from __future__ import annotations

import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import trio

from provd.rpc.cors import ALLOWED_HEADERS, EXPOSED_HEADERS, parse_origin, same_origin
from tests.conftest import ADMIN_TOKEN, Server, ServerFactory
from tests.processes import provd_env, start_server

APP = "https://app.example.com"
LIST_JOBS = "/provd.v1.JobService/ListJobs"
# What connect-web and grpc-web send before a call (header names in lower case).
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,connect-protocol-version,content-type",
}


def request(
    url: str, method: str = "POST", headers: dict[str, str] | None = None, body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request: (status, headers with lower-case names, body)."""
    sent = urllib.request.Request(
        url, data=body if method == "POST" else None, method=method, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(sent, timeout=10) as response:
            return response.status, _lower(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        return error.code, _lower(error.headers.items()), error.read()


def _lower(items: object) -> dict[str, str]:
    return {name.lower(): value for name, value in items}  # type: ignore[attr-defined]


async def fetch(
    url: str, method: str = "POST", headers: dict[str, str] | None = None, body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    return await trio.to_thread.run_sync(request, url, method, headers, body)


def names(header: str) -> set[str]:
    return {name.strip().lower() for name in header.split(",")}


async def test_preflight_from_an_allowed_origin(make_server: ServerFactory) -> None:
    server = await make_server(cors_origins=(APP,))
    status, headers, _ = await fetch(
        server.url + LIST_JOBS, "OPTIONS", {"Origin": APP, **PREFLIGHT}
    )
    assert status == 204
    assert headers["access-control-allow-origin"] == APP
    assert names(headers["access-control-allow-methods"]) == {"post", "get"}
    allowed = names(headers["access-control-allow-headers"])
    for header in (
        "content-type",
        "connect-protocol-version",
        "connect-timeout-ms",
        "grpc-timeout",
        "x-grpc-web",
        "x-user-agent",
        "authorization",
        "provd-daemon-psk",
        "provd-daemon-name",
        "provd-daemon-provisioners",
        "provd-daemon-tags",
        "provd-api-version",
    ):
        assert header in allowed
    assert int(headers["access-control-max-age"]) > 0
    assert "origin" in names(headers["vary"])


async def test_calls_from_an_allowed_origin_expose_the_protocol_headers(
    make_server: ServerFactory,
) -> None:
    server = await make_server(cors_origins=(APP, "http://localhost:3000"))
    connect = {"Origin": "http://localhost:3000", "Content-Type": "application/json"}
    status, headers, body = await fetch(
        server.url + LIST_JOBS,
        headers={**connect, "Authorization": f"Bearer {ADMIN_TOKEN}"},
        body=b"{}",
    )
    assert (status, body) == (200, b"{}")
    assert headers["access-control-allow-origin"] == "http://localhost:3000"
    assert headers["vary"] == "Origin"
    # gRPC-web refused before any message: the status is in the headers, which the
    # browser lets the client read only because they are exposed.
    grpc_web = {"Origin": APP, "Content-Type": "application/grpc-web+proto", "X-Grpc-Web": "1"}
    status, headers, _ = await fetch(server.url + LIST_JOBS, headers=grpc_web, body=b"\0" * 5)
    assert status == 200 and headers["access-control-allow-origin"] == APP
    exposed = names(headers["access-control-expose-headers"])
    assert {"grpc-status", "grpc-message", "grpc-status-details-bin"} <= exposed
    assert {"content-encoding", "connect-content-encoding"} <= exposed


async def test_other_origins_get_no_cors(make_server: ServerFactory) -> None:
    server = await make_server(cors_origins=(APP,))
    evil = {"Origin": "https://evil.example"}
    status, headers, body = await fetch(server.url + LIST_JOBS, "OPTIONS", {**evil, **PREFLIGHT})
    assert status == 403 and b"origin not allowed" in body
    assert "access-control-allow-origin" not in headers
    status, headers, _ = await fetch(
        server.url + LIST_JOBS, headers={**evil, "Content-Type": "application/json"}, body=b"{}"
    )
    assert status == 401 and "access-control-allow-origin" not in headers
    # Without an Origin (curl, gRPC clients, daemons) nothing changes.
    status, headers, _ = await fetch(
        server.url + LIST_JOBS, headers={"Content-Type": "application/json"}, body=b"{}"
    )
    assert status == 401 and not any(name.startswith("access-control-") for name in headers)


async def test_no_cors_by_default(server: Server) -> None:
    url = server.url
    status, headers, _ = await fetch(url + LIST_JOBS, "OPTIONS", {"Origin": APP, **PREFLIGHT})
    assert status >= 400
    assert not any(name.startswith("access-control-") for name in headers)
    status, headers, _ = await fetch(
        url + LIST_JOBS,
        headers={"Origin": APP, "Content-Type": "application/json"},
        body=b"{}",
    )
    assert status == 401 and "access-control-allow-origin" not in headers


async def test_any_origin(make_server: ServerFactory) -> None:
    server = await make_server(cors_origins=("*",))
    status, headers, _ = await fetch(
        server.url + LIST_JOBS,
        "OPTIONS",
        {
            "Origin": "https://anything.example",
            **PREFLIGHT,
            "Access-Control-Request-Private-Network": "true",
        },
    )
    assert status == 204 and headers["access-control-allow-origin"] == "*"
    assert headers["access-control-allow-private-network"] == "true"


def test_origins_are_checked() -> None:
    assert parse_origin("HTTPS://App.Example.com/") == "https://app.example.com"
    assert parse_origin("http://localhost:3000") == "http://localhost:3000"
    for bad in ("app.example.com", "https://app.example.com/path", "ftp://x", "https://"):
        with pytest.raises(ValueError, match="origin"):
            parse_origin(bad)
    assert len(set(ALLOWED_HEADERS)) == len(ALLOWED_HEADERS)
    assert len(set(EXPOSED_HEADERS)) == len(EXPOSED_HEADERS)


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [
        ("http://127.0.0.1:8080", "127.0.0.1:8080", True),
        ("HTTP://LocalHost:8080", "localhost:8080", True),
        ("https://provd.example", "provd.example", True),
        ("https://provd.example", "provd.example:443", True),
        ("http://provd.example", "provd.example:80", True),
        # Behind a TLS-terminating proxy: the page is https, the Host has no port.
        ("https://provd.example", "PROVD.example", True),
        ("http://[::1]:8080", "[::1]:8080", True),
        ("http://127.0.0.1:8081", "127.0.0.1:8080", False),
        ("http://127.0.0.1", "127.0.0.1:8080", False),
        ("https://evil.example", "provd.example", False),
        ("https://provd.example.evil.example", "provd.example", False),
        ("null", "provd.example", False),
        ("ftp://provd.example", "provd.example", False),
        ("http://provd.example:x", "provd.example", False),
        ("http://provd.example", "provd.example:99999", False),
        ("http://[::1", "[::1]", False),
    ],
)
def test_same_origin(origin: str, host: str, same: bool) -> None:
    """The server's own origin: the page's host and port are the Host header's, a
    missing port being the page scheme's default; anything unparsable is foreign."""
    assert same_origin(origin.encode(), host.encode()) is same
    assert same_origin(origin.encode(), None) is False


@pytest.mark.slow
async def test_serve_reads_origins_from_the_environment(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    env = provd_env(PROVD_CORS_ORIGINS=f"{APP}, http://localhost:3000")
    server = await start_server(nursery, tmp_path / "provd.db", env=env)
    for origin in (APP, "http://localhost:3000"):
        status, headers, _ = await fetch(
            server.url + LIST_JOBS, "OPTIONS", {"Origin": origin, **PREFLIGHT}
        )
        assert status == 204 and headers["access-control-allow-origin"] == origin
    server.signal(signal.SIGTERM)
    assert await server.wait() == 0
    result = await trio.run_process(
        [
            sys.executable,
            "-m",
            "provd",
            "serve",
            "--db",
            str(tmp_path / "x.db"),
            "--cors-origin",
            "app.example.com",
        ],
        env=provd_env(),
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 2 and b"--cors-origin" in result.stderr

"""Fixtures: a real provd server on 127.0.0.1:0 with a temporary SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import trio

from provd.app import Running, serve
from provd.config import ServerSettings
from provd.jobs import JobLimits, MiB

ADMIN_TOKEN = "test-admin-token"
DAEMON_PSK = "test-daemon-psk"


@dataclass(frozen=True)
class Server:
    url: str
    db_path: Path
    settings: ServerSettings


def server_settings(db_path: Path, **overrides: object) -> ServerSettings:
    defaults: dict[str, object] = {
        "listen": "127.0.0.1:0",
        "db_path": db_path,
        "admin_token": ADMIN_TOKEN,
        "daemon_psk": DAEMON_PSK,
        "limits": JobLimits(upload_max_bytes=1 * MiB, payload_max_bytes=4 * MiB),
        "shutdown_grace_seconds": 0.5,
    }
    defaults.update(overrides)
    return ServerSettings(**defaults)  # type: ignore[arg-type]


@pytest.fixture
async def server(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Server]:
    """provd serving in this test's nursery; cancelled when the test ends."""
    settings = server_settings(tmp_path / "provd.db")
    running: Running = await nursery.start(partial(serve, settings))
    yield Server(url=running.url, db_path=settings.db_path, settings=settings)

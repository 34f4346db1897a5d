"""Fixtures: a real provd server on 127.0.0.1:0 with a temporary SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from provd.app import Running, serve
from provd.config import ServerSettings
from provd.events import JobEvents
from provd.model import Limits
from provd.protocol import MiB
from provd.scheduler import Scheduler
from provd.store import Store
from provd.store.sqlite import open_sqlite_store

ADMIN_TOKEN = "test-admin-token"
DAEMON_PSK = "test-daemon-psk"


@dataclass(frozen=True)
class Server:
    url: str
    db_path: Path
    settings: ServerSettings
    scheduler: Scheduler
    # Its job watchers' wake-ups (log followers, WatchJobs feeds), to look at.
    events: JobEvents | None = None


def server_settings(db_path: Path, **overrides: Any) -> ServerSettings:
    defaults: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "db_path": db_path,
        "admin_token": ADMIN_TOKEN,
        "daemon_psk": DAEMON_PSK,
        "limits": Limits(upload_max_bytes=1 * MiB),
        "shutdown_grace_seconds": 0.5,
    }
    defaults.update(overrides)
    return ServerSettings(**defaults)


ServerFactory = Callable[..., Awaitable[Server]]


@pytest.fixture
async def make_server(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[ServerFactory]:
    """Start provd in this test's nursery with settings overrides; optionally wrap
    its (real) store, e.g. to hold a claim at a chosen moment."""

    async def start(
        *, wrap_store: Callable[[Store], Store] | None = None, **overrides: Any
    ) -> Server:
        # Another server's db_path makes two processes' worth of provd share one file.
        db_path = overrides.pop("db_path", tmp_path / f"provd-{len(started)}.db")
        settings = server_settings(db_path, **overrides)
        if wrap_store is None:
            running: Running = await nursery.start(partial(serve, settings))
        else:
            running = await nursery.start(_serve_wrapped, settings, wrap_store)
        server = Server(running.url, settings.db_path, settings, running.scheduler, running.events)
        started.append(server)
        return server

    started: list[Server] = []
    yield start


async def _serve_wrapped(
    settings: ServerSettings,
    wrap_store: Callable[[Store], Store],
    task_status: trio.TaskStatus[Running],
) -> None:
    """serve() on a wrapped store that outlives it, as serve's own store would."""
    async with open_sqlite_store(settings.db_path) as store:
        await serve(settings, store=wrap_store(store), task_status=task_status)


@pytest.fixture
async def server(make_server: ServerFactory) -> Server:
    """provd with the test defaults, serving in this test's nursery."""
    return await make_server()

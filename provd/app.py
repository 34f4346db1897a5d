"""`serve`: the root of provd's nursery tree.

    serve
    ├── open_sqlite_store ── writer thread (all writes, group commit)
    └── server nursery
        └── hypercorn.trio.serve ── one task per connection and request

Shutdown is cancellation: the shutdown trigger makes hypercorn stop accepting and
give in-flight requests a grace period, then everything below is cancelled and
the store finishes its queued writes before the file is closed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from provd.config import ServerSettings, parse_listen
from provd.events import JobEvents
from provd.jobs import Jobs
from provd.rpc.app import build_app
from provd.store.sqlite import open_sqlite_store

# hypercorn closes a connection after 1,000 requests by default, HTTP/2 included,
# which silently breaks busy daemons' streams. Effectively: never.
KEEP_ALIVE_MAX_REQUESTS = 2**62


@dataclass(frozen=True, slots=True)
class Running:
    """What `serve` reports once it accepts connections."""

    url: str
    db_path: str


def hypercorn_config(settings: ServerSettings) -> Config:
    host, port = parse_listen(settings.listen)
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.keep_alive_max_requests = KEEP_ALIVE_MAX_REQUESTS
    config.graceful_timeout = settings.shutdown_grace_seconds
    config.accesslog = None
    config.errorlog = "-"
    return config


async def serve(
    settings: ServerSettings,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run provd until `shutdown_trigger` returns (or forever, until cancelled)."""
    async with open_sqlite_store(settings.db_path, synchronous=settings.synchronous) as store:  # type: ignore[arg-type]
        jobs = Jobs(store, JobEvents(), settings.limits)
        app = build_app(jobs=jobs, admin_token=settings.admin_token)
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(
                partial(
                    hypercorn_serve,
                    app,  # type: ignore[arg-type]  # hypercorn's ASGI types are stricter than ours
                    hypercorn_config(settings),
                    shutdown_trigger=shutdown_trigger or trio.sleep_forever,
                )
            )
            task_status.started(Running(url=binds[0], db_path=str(store.path)))

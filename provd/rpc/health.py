"""`/healthz`, `/readyz` and `/metrics`: plain HTTP endpoints for load balancers,
init systems and Prometheus. No credentials: they tell nothing but whether provd
serves and what it counts (docs/operations.md, "Health" and "Metrics").

- `/healthz`: 200 while the process serves HTTP at all.
- `/readyz`: 200 only when provd has started, is not draining, and its store answers
  a read and a write within `READY_DEADLINE_SECONDS`; else 503 with the reason.
- `/metrics`: the Prometheus page (`provd.metrics`).

`Health` is shared by the main port and the `--metrics-listen` address. It turns
"draining" on the moment the shutdown trigger fires, before hypercorn starts giving
in-flight requests their grace period.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

import trio

if TYPE_CHECKING:
    from provd.metrics import Metrics
    from provd.registry import DaemonRegistry
    from provd.store import Store

logger = logging.getLogger(__name__)

READY_DEADLINE_SECONDS: Final = 2.0
# The id the readiness probe reads and writes: no key or daemon can have it (theirs
# are UUIDs), so the read finds nothing and the write changes no row, but both go all
# the way through the store (on SQLite the write is a real transaction on the writer).
PROBE_ID: Final = "provd-readiness-probe"

Send = Callable[[dict[str, Any]], Awaitable[None]]
Endpoint = Callable[[Send], Awaitable[None]]


class State(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"


class _Probe:
    """One store check in flight; concurrent /readyz requests share it."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.error: str | None = None


class Health:
    """Whether this server is ready: its state, and a store probe with a deadline.

    The probe runs in a nursery of its own (`run`), not in the request: a write on
    SQLite waits shielded for its outcome, so a request could not give up on it at
    the deadline; instead it stops waiting, and later requests share the probe still
    in flight rather than starting more.
    """

    def __init__(self, store: Store, *, deadline_seconds: float = READY_DEADLINE_SECONDS) -> None:
        self.state = State.STARTING
        self._store = store
        self._deadline = deadline_seconds
        self._probe: _Probe | None = None
        self._nursery: trio.Nursery | None = None

    def ready(self) -> None:
        if self.state is State.STARTING:
            self.state = State.READY

    def draining(self) -> None:
        self.state = State.DRAINING

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the nursery the probes run in, until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    async def check(self) -> str | None:
        """None when ready; else why not, in a line."""
        if self.state is not State.READY:
            return str(self.state)
        if self._nursery is None:
            return str(State.STARTING)
        probe = self._probe
        if probe is None:
            probe = self._probe = _Probe()
            self._nursery.start_soon(self._run_probe, probe)
        with trio.move_on_after(self._deadline):
            await probe.done.wait()
        if not probe.done.is_set():
            return f"the store did not answer within {self._deadline:g} s"
        if self.state is not State.READY:  # the drain began while the probe ran
            return str(self.state)
        return probe.error

    async def _run_probe(self, probe: _Probe) -> None:
        try:
            await self._store.get_key(PROBE_ID)
            await self._store.touch_daemons({PROBE_ID: 0})
        except Exception as error:
            probe.error = f"the store failed: {error}"
        finally:
            self._probe = None
            probe.done.set()

    async def healthz(self, send: Send) -> None:
        await plain(send, 200, b"ok\n")

    async def readyz(self, send: Send) -> None:
        problem = await self.check()
        if problem is None:
            await plain(send, 200, b"ready\n")
        else:
            await plain(send, 503, f"not ready: {problem}\n".encode())


def metrics_endpoint(metrics: Metrics, store: Store, registry: DaemonRegistry) -> Endpoint:
    """The `/metrics` handler of one server."""
    from provd.metrics import CONTENT_TYPE

    async def serve_metrics(send: Send) -> None:
        body = await metrics.render(store, registry)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", CONTENT_TYPE.encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return serve_metrics


class PlainApp:
    """The ASGI app of the `--metrics-listen` address: its endpoints by path, 404 else."""

    def __init__(self, endpoints: Mapping[str, Endpoint]) -> None:
        self._endpoints = endpoints

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        endpoint = self._endpoints.get(scope["path"])
        if endpoint is None:
            await plain(send, 404, b"not found\n")
        else:
            await endpoint(send)


async def plain(send: Send, status: int, body: bytes) -> None:
    """A plain-text answer."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": body})

"""`/healthz` and `/readyz`: over real sockets on a real server, through a drain on
SIGTERM, and `Health`'s store probe on trio's virtual clock."""

from __future__ import annotations

import re
import signal
from pathlib import Path
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from provd.rpc.health import PROBE_ID, READY_DEADLINE_SECONDS, Health, State
from provd.store.memory import MemoryStore
from tests.conftest import Server
from tests.daemon_clients import TestDaemon
from tests.plain_http import http_get
from tests.processes import start_server


async def test_healthz_and_readyz_answer_200_while_serving(server: Server) -> None:
    assert await http_get(server.url + "/healthz") == (200, "ok\n")
    assert await http_get(server.url + "/readyz") == (200, "ready\n")


class _SlowStore(MemoryStore):
    """A store whose key look-ups wait for `answer` (or fail, with `broken`)."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = trio.Event()
        self.broken = False
        self.looked_up = 0

    async def get_key(self, key_id: str) -> Any:
        assert key_id == PROBE_ID
        self.looked_up += 1
        await self.answer.wait()
        if self.broken:
            raise OSError("disk on fire")
        return await super().get_key(key_id)


async def test_readyz_is_503_until_started_and_from_the_drain_on(nursery: trio.Nursery) -> None:
    store = _SlowStore()
    store.answer.set()
    health = Health(store)
    assert await health.check() == "starting"
    await nursery.start(health.run)
    assert await health.check() == "starting"
    health.ready()
    assert await health.check() is None
    health.draining()
    assert await health.check() == "draining"
    health.ready()  # a server that drains never becomes ready again
    assert health.state is State.DRAINING


async def test_readyz_gives_up_on_a_store_at_the_deadline(
    nursery: trio.Nursery, autojump_clock: MockClock
) -> None:
    store = _SlowStore()
    health = Health(store)
    await nursery.start(health.run)
    health.ready()
    started = trio.current_time()
    results: list[str | None] = []

    async def check() -> None:
        results.append(await health.check())

    async with trio.open_nursery() as checks:
        for _ in range(3):
            checks.start_soon(check)
    assert trio.current_time() - started == pytest.approx(READY_DEADLINE_SECONDS)
    assert results == [f"the store did not answer within {READY_DEADLINE_SECONDS:g} s"] * 3
    assert store.looked_up == 1  # one probe in flight, shared
    store.broken = True
    store.answer.set()
    await trio.testing.wait_all_tasks_blocked()
    assert (await health.check() or "").startswith("the store failed: disk on fire")
    store.broken = False
    assert await health.check() is None
    assert store.looked_up == 3


@pytest.mark.slow
async def test_readyz_turns_503_when_the_drain_begins(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """SIGTERM with a request in flight: /readyz (on the metrics address, which keeps
    serving through the drain) answers 503 while the request is still running, and the
    server exits once it ends."""
    process = await start_server(
        nursery,
        tmp_path / "provd.db",
        "--metrics-listen",
        "127.0.0.1:0",
        "--shutdown-grace",
        "60",
    )
    with trio.fail_after(15):
        while (found := re.search(rb"metrics on (http://\S+)/metrics", process.output)) is None:
            await trio.sleep(0.01)
    metrics_url = found.group(1).decode()
    assert await http_get(metrics_url + "/readyz") == (200, "ready\n")
    assert await http_get(process.url + "/readyz") == (200, "ready\n")
    # An acquire stream with no job to take: in flight until the daemon cancels it.
    server = Server(process.url, tmp_path / "provd.db", None, None)  # type: ignore[arg-type]
    daemon = TestDaemon(server, "in-flight")
    acquisition = await daemon.acquire(nursery)
    with trio.fail_after(15):
        while await _waiting_daemons(metrics_url) < 1:
            await trio.sleep(0.01)
    process.signal(signal.SIGTERM)
    with trio.fail_after(15):
        while (answer := await http_get(metrics_url + "/readyz"))[0] == 200:
            await trio.sleep(0.01)
    assert answer == (503, "not ready: draining\n")
    assert await http_get(metrics_url + "/healthz") == (200, "ok\n")
    assert not acquisition.ended.is_set() and process.process.returncode is None
    assert acquisition.requests is not None
    acquisition.requests.cancel()
    with trio.fail_after(15):
        await acquisition.ended.wait()
    assert await process.wait() == 0


async def _waiting_daemons(metrics_url: str) -> float:
    """How many RPC streams the server holds open (acquire streams: the daemons known
    and connected)."""
    status, body = await http_get(metrics_url + "/metrics")
    assert status == 200
    match = re.search(r'^provd_daemons\{state="connected"\} (\S+)$', body, re.MULTILINE)
    return float(match.group(1)) if match else 0

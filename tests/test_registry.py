"""Who is connected and who is stale, on trio's virtual clock over the in-memory
store: three heartbeat intervals of silence make a daemon stale; an open acquire
stream or regular calls keep it live; last-seen times reach the store in batches."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from provd.model import JobUpdate
from provd.registry import DaemonRegistry, DaemonView
from provd.store.memory import MemoryStore
from tests.store.support import make_running
from tests.test_scheduler import at, daemon, virtual_now

HEARTBEAT_SECONDS = 10
FLUSH_SECONDS = 5


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore(now=virtual_now)


@pytest.fixture
def registry(store: MemoryStore) -> DaemonRegistry:
    return DaemonRegistry(
        store, heartbeat_interval=HEARTBEAT_SECONDS, flush_interval=FLUSH_SECONDS, now=virtual_now
    )


async def view(registry: DaemonRegistry, name: str) -> DaemonView:
    (found,) = [v for v in await registry.list() if v.daemon.name == name]
    return found


def live_names(registry: DaemonRegistry) -> list[str]:
    return sorted(d.name for d in registry.live_daemons())


async def test_a_daemon_is_stale_after_three_silent_heartbeat_intervals(
    registry: DaemonRegistry, autojump_clock: MockClock
) -> None:
    """Seen once: live for 30 s, stale from then on; a new call makes it live again."""
    await registry.seen(daemon("quiet"))
    await trio.sleep_until(3 * HEARTBEAT_SECONDS)
    assert live_names(registry) == ["quiet"]
    listed = await view(registry, "quiet")
    assert (listed.connected, listed.stale, listed.last_seen_at) == (False, False, at(0))
    await trio.sleep_until(3 * HEARTBEAT_SECONDS + 1)
    assert live_names(registry) == []
    assert (await view(registry, "quiet")).stale
    await registry.seen(daemon("quiet"))
    assert live_names(registry) == ["quiet"]
    assert not (await view(registry, "quiet")).stale


async def test_an_open_acquire_stream_keeps_a_daemon_connected(
    registry: DaemonRegistry, autojump_clock: MockClock
) -> None:
    """While a stream is open the daemon is connected, never stale, however long it
    waits (ten minutes here); once it closes, the three intervals count from then."""
    waiting = daemon("waiting")
    await registry.seen(waiting)
    with registry.connected(waiting):
        await trio.sleep_until(600)
        assert live_names(registry) == ["waiting"]
        listed = await view(registry, "waiting")
        assert (listed.connected, listed.stale, listed.last_seen_at) == (True, False, at(600))
    await trio.sleep_until(600 + 3 * HEARTBEAT_SECONDS)
    assert live_names(registry) == ["waiting"]
    assert (await view(registry, "waiting")).last_seen_at == at(600)
    await trio.sleep_until(600 + 3 * HEARTBEAT_SECONDS + 1)
    assert live_names(registry) == []
    assert (await view(registry, "waiting")).stale


async def test_a_daemon_running_a_job_and_reporting_stays_live(
    store: MemoryStore, registry: DaemonRegistry, autojump_clock: MockClock
) -> None:
    """A daemon that left its stream to run a job, and calls UpdateJob every heartbeat
    interval, is live and not stale for the whole run (five minutes), and is listed
    with its job; when its calls stop it goes stale like any other."""
    worker = daemon("worker")
    await registry.seen(worker)
    job = await make_running(store, worker.id)
    while trio.current_time() < 300:
        await trio.sleep(HEARTBEAT_SECONDS)
        await registry.seen(worker)  # what every UpdateJob call does first
        await store.update_job(job.id, worker.id, JobUpdate())
        assert live_names(registry) == ["worker"]
    listed = await view(registry, "worker")
    assert (listed.connected, listed.stale) == (False, False)
    assert listed.current_job_id == job.id
    await trio.sleep_until(300 + 3 * HEARTBEAT_SECONDS + 1)
    assert live_names(registry) == []
    assert (await view(registry, "worker")).stale


async def test_last_seen_times_reach_the_store_once_per_flush_interval(
    store: MemoryStore, registry: DaemonRegistry, autojump_clock: MockClock
) -> None:
    """A call costs no write of its own: its time is written at the next flush, and a
    connected daemon's at every flush; the last flush happens on the way out."""

    async def stored_last_seen() -> dict[str, int]:
        return {r.daemon.name: r.last_seen_at for r in await store.list_daemons()}

    caller, streaming = daemon("caller"), daemon("streaming")
    async with trio.open_nursery() as flushing:
        await flushing.start(registry.run)
        await registry.seen(caller)  # new: stored at once, seen now
        await registry.seen(streaming)
        await trio.sleep_until(3)
        await registry.seen(caller)
        assert await stored_last_seen() == {"caller": at(0), "streaming": at(0)}
        with registry.connected(streaming):
            await trio.sleep_until(FLUSH_SECONDS + 1)
            assert await stored_last_seen() == {"caller": at(3), "streaming": at(FLUSH_SECONDS)}
            await trio.sleep_until(2 * FLUSH_SECONDS + 1)
            assert (await stored_last_seen())["streaming"] == at(2 * FLUSH_SECONDS)
            await trio.sleep_until(2 * FLUSH_SECONDS + 3)
        # Left the stream at 13 s; stopped at 14 s, before the flush due at 15 s.
        await trio.sleep_until(2 * FLUSH_SECONDS + 4)
        assert (await stored_last_seen())["streaming"] == at(2 * FLUSH_SECONDS)
        flushing.cancel_scope.cancel()
    assert (await stored_last_seen())["streaming"] == at(2 * FLUSH_SECONDS + 3)

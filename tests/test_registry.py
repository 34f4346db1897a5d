"""Who is connected and who is stale, on trio's virtual clock over the in-memory
store: three heartbeat intervals of silence make a daemon stale; an open acquire
stream or regular calls keep it live; a daemon is connected while it holds a stream
or runs a job and reports on it, never while stale; last-seen times reach the store
in batches."""

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


async def test_a_daemon_running_a_job_and_reporting_stays_connected(
    store: MemoryStore, registry: DaemonRegistry, autojump_clock: MockClock
) -> None:
    """A daemon that left its stream with a job, and calls UpdateJob every heartbeat
    interval, is live, connected and not stale for the whole run (five minutes), and is
    listed with its job; when its calls stop it stays connected for three intervals,
    then is stale and no longer connected, though it still holds the job."""
    worker = daemon("worker")
    await registry.seen(worker)
    with registry.connected(worker):  # the acquire stream that handed it the job
        job = await make_running(store, worker.id)
    listed = await view(registry, "worker")
    assert (listed.connected, listed.stale, listed.current_job_id) == (True, False, job.id)
    while trio.current_time() < 300:
        await trio.sleep(HEARTBEAT_SECONDS)
        await registry.seen(worker)  # what every UpdateJob call does first
        await store.update_job(job.id, worker.id, JobUpdate())
        assert live_names(registry) == ["worker"]
        listed = await view(registry, "worker")
        assert (listed.connected, listed.stale) == (True, False), trio.current_time()
    assert listed.current_job_id == job.id
    await trio.sleep_until(300 + 3 * HEARTBEAT_SECONDS)
    assert (await view(registry, "worker")).connected
    await trio.sleep_until(300 + 3 * HEARTBEAT_SECONDS + 1)
    assert live_names(registry) == []
    listed = await view(registry, "worker")
    assert (listed.connected, listed.stale, listed.current_job_id) == (False, True, job.id)


async def test_connected_and_stale_are_never_both_true(
    store: MemoryStore, registry: DaemonRegistry, autojump_clock: MockClock
) -> None:
    """Every second of ten minutes, for a daemon that streams, one that runs a job and
    reports for a while, and one that called once: never connected and stale at
    once; connected exactly while it streams, or holds a job and was seen within the
    stale interval; stale exactly while it neither streams nor was seen within it."""
    streamer, runner, caller = daemon("streamer"), daemon("runner"), daemon("caller")
    for each in (streamer, runner, caller):
        await registry.seen(each)
    job = await make_running(store, runner.id)
    seen_at = {name: 0.0 for name in ("streamer", "runner", "caller")}
    with registry.connected(streamer):
        while trio.current_time() < 600:
            await trio.sleep(1)
            now = trio.current_time()
            if now <= 200 and now % HEARTBEAT_SECONDS == 0:
                await registry.seen(runner)
                seen_at["runner"] = now
            for listed in await registry.list():
                name = listed.daemon.name
                quiet = now - seen_at[name] > 3 * HEARTBEAT_SECONDS
                streaming = name == "streamer"
                holds_job = listed.current_job_id == job.id
                assert not (listed.connected and listed.stale), (name, now)
                assert listed.connected == (streaming or (holds_job and not quiet)), (name, now)
                assert listed.stale == (not streaming and quiet), (name, now)


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

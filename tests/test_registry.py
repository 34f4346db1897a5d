"""Who is connected and who is stale, on trio's virtual clock over the in-memory
store: three heartbeat intervals of silence make a daemon stale; an open acquire
stream or regular calls keep it live; a daemon is connected while it holds a stream
or runs a job and reports on it, never while stale; last-seen times reach the store
in batches; and a daemon streaming to one process is seen by the others, through its
stream lease."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from provd.errors import StoreClosed
from provd.model import JobUpdate
from provd.registry import DaemonRegistry, DaemonView
from provd.store.memory import MemoryDatabase, MemoryStore
from tests.store.support import daemon, make_running
from tests.virtual_clock import at, virtual_now

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


# -- several processes on one database ---------------------------------------------


def process_on(
    database: MemoryDatabase, heartbeat_seconds: float = HEARTBEAT_SECONDS
) -> DaemonRegistry:
    """The registry of one process serving `database` (a store of its own on it)."""
    return DaemonRegistry(
        MemoryStore(database, now=virtual_now),
        heartbeat_interval=heartbeat_seconds,
        flush_interval=FLUSH_SECONDS,
        now=virtual_now,
    )


async def two_processes(
    nursery: trio.Nursery, heartbeat_seconds: float = HEARTBEAT_SECONDS
) -> tuple[DaemonRegistry, DaemonRegistry]:
    """Two processes serving one database: A flushes at 5 s, 10 s, …; B half a second
    after A, so that the order of their flushes is known."""
    database = MemoryDatabase()
    a, b = process_on(database, heartbeat_seconds), process_on(database, heartbeat_seconds)
    await nursery.start(a.run)
    await trio.sleep_until(0.5)
    await nursery.start(b.run)
    return a, b


async def state(registry: DaemonRegistry, name: str) -> tuple[bool, bool]:
    """(connected, stale) as `registry` lists the daemon."""
    listed = await view(registry, name)
    return listed.connected, listed.stale


async def test_a_stream_on_one_process_is_seen_by_another_until_its_lease_ends(
    nursery: trio.Nursery, autojump_clock: MockClock
) -> None:
    """A daemon streams to A for ten minutes. After A's next flush, B lists it as
    connected and counts it live; that lasts as long as the stream. When the stream
    closes, A knows at once; B lists it connected until the lease A last renewed ends
    (three flush intervals after that renewal), then idle, then stale and not live
    once the stale interval has passed since it was last seen."""
    a, b = await two_processes(nursery)
    streamer = daemon("streamer")
    await trio.sleep_until(1)
    await a.seen(streamer)
    with a.connected(streamer):
        await trio.sleep_until(2)  # stored, but A has not flushed yet
        assert (await state(b, "streamer"), live_names(b)) == ((False, False), [])
        await trio.sleep_until(FLUSH_SECONDS + 1)  # A flushed at 5 s, B re-read at 5.5 s
        assert (await state(b, "streamer"), live_names(b)) == ((True, False), ["streamer"])
        for moment in range(13, 600, 7):
            await trio.sleep_until(moment)
            assert await state(b, "streamer") == (True, False), moment
            assert live_names(b) == ["streamer"], moment
        await trio.sleep_until(600.2)
    assert await state(a, "streamer") == (False, False)
    await trio.sleep_until(600 + b.lease_ms / 1000 - 0.1)  # A's last lease: from 600 s
    assert await state(b, "streamer") == (True, False)
    await trio.sleep_until(600 + b.lease_ms / 1000 + 0.1)
    assert (await state(b, "streamer"), live_names(b)) == ((False, False), ["streamer"])
    await trio.sleep_until(600.2 + 3 * HEARTBEAT_SECONDS + 1)
    assert (await state(b, "streamer"), live_names(b)) == ((False, True), [])


async def test_a_daemon_streaming_to_two_processes_stays_connected_on_both(
    nursery: trio.Nursery, autojump_clock: MockClock
) -> None:
    """A daemon with a stream to each process (two slots, say) whose stream to A
    closes is still connected as A lists it, through B's lease; a lease A wrote itself
    never counts on A, which knows its own streams. (The stream to A closes after B
    renewed its lease past A's last one: until B does, A's lease hides B's from A.)"""
    a, b = await two_processes(nursery)
    slots = daemon("slots")
    await a.seen(slots)
    await b.seen(slots)
    with b.connected(slots):
        with a.connected(slots):
            await trio.sleep_until(102)  # A renewed at 100 s, B at 100.5 s
        for moment in (102.1, 130, 300):
            await trio.sleep_until(moment)
            assert await state(a, "slots") == (True, False), moment
            assert live_names(a) == ["slots"]
    await trio.sleep_until(300 + b.lease_ms / 1000 + 1)
    assert await state(a, "slots") == (False, False)


async def test_a_stream_elsewhere_keeps_a_daemon_live_with_a_short_stale_interval(
    nursery: trio.Nursery, autojump_clock: MockClock
) -> None:
    """Heartbeats every 0.5 s (stale after 1.5 s, shorter than a flush interval): the
    last-seen times A stores every 5 s are too old for B to go by, the lease is not.
    B counts the daemon streaming to A live and connected, never stale, every second."""
    a, b = await two_processes(nursery, heartbeat_seconds=0.5)
    streamer = daemon("streamer")
    await a.seen(streamer)
    with a.connected(streamer):
        await trio.sleep_until(FLUSH_SECONDS + 1)
        while trio.current_time() < 120:
            assert live_names(b) == ["streamer"], trio.current_time()
            assert await state(b, "streamer") == (True, False), trio.current_time()
            await trio.sleep(1)


class Unreachable(MemoryStore):
    """A store whose database cannot be reached while `down` is set, as PostgreSQL's
    StoreUnreachable (a StoreClosed) says."""

    down = False

    def _refuse(self) -> None:
        if self.down:
            raise StoreClosed("lost the PostgreSQL database at host=db")

    async def touch_daemons(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self._refuse()
        return await super().touch_daemons(*args, **kwargs)

    async def daemon_presence(self):  # type: ignore[no-untyped-def]
        self._refuse()
        return await super().daemon_presence()


async def test_a_lost_database_costs_the_registry_flushes_not_its_life(
    nursery: trio.Nursery, autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The database is out of reach from 1 s to 16 s: the flushes at 5, 10 and 15 s
    fail and are logged, the registry goes on, and the flush at 20 s writes what they
    could not."""
    store = Unreachable(now=virtual_now)
    registry = DaemonRegistry(
        store, heartbeat_interval=HEARTBEAT_SECONDS, flush_interval=FLUSH_SECONDS, now=virtual_now
    )
    await nursery.start(registry.run)
    streaming = daemon("streaming")
    await registry.seen(streaming)
    with registry.connected(streaming):
        await trio.sleep_until(1)
        store.down = True
        await trio.sleep_until(16)
        store.down = False
        await trio.sleep_until(21)
    assert sum("could not reach the database" in r.message for r in caplog.records) == 3
    assert sum("could not read the stored daemons" in r.message for r in caplog.records) == 3
    (stored,) = await store.daemon_presence()
    assert (stored.record.last_seen_at, stored.connected_until) == (
        at(4 * FLUSH_SECONDS),
        at(4 * FLUSH_SECONDS) + registry.lease_ms,
    )

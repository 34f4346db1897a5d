"""JobService.WatchJobs: "jobs changed" pushed to a client (the dashboard's live view).

Over a real server and a raw HTTP/1.1 Connect stream (as the browser reads it): a
message at once, then one after each kind of change (a job created, claimed by a
daemon, canceled, completed), never two within the coalescing interval; across two
servers on one database with their backup polls at an hour (only a relayed wake-up
can tell); a client that leaves is forgotten within the connection's close grace (one
that resets its HTTP/2 stream, at the next keep-alive).
On trio's virtual clock with a MemoryStore: the coalescing, the cap on ids and the
keep-alive, to the millisecond.
"""

from __future__ import annotations

import itertools
import json
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import h2.events
import h11
import pytest
import trio
import trio.testing

from provd.app import Running, serve
from provd.events import FEED_MAX_IDS, Changes, JobEvents
from provd.job_service import (
    WATCH_KEEP_ALIVE_SECONDS,
    WATCH_MIN_INTERVAL_SECONDS,
    JobsChanged,
    JobService,
)
from provd.rpc.connections import ConnectionLimits
from provd.store.memory import open_memory_store
from provd.wakeups import JobAvailable, JobChanged, Rescan, Wakeups
from tests.conftest import ADMIN_TOKEN, Server, ServerFactory, server_settings
from tests.daemon_clients import Jobs, TestDaemon, wait_until
from tests.raw_h2 import RawH2
from tests.raw_http import address

WATCH = "/provd.v1.JobService/WatchJobs"
HOUR = 3600.0
END_STREAM = 0x02
# How long a departed watcher may live on: the close grace, then its cancellation.
GONE_WITHIN = ConnectionLimits().close_grace_seconds + 5


@dataclass
class Message:
    """One JobsChanged as the client got it (JSON), and when (trio's clock)."""

    at: float
    body: dict[str, Any]

    @property
    def job_ids(self) -> list[str]:
        return list(self.body.get("jobIds", []))

    @property
    def many(self) -> bool:
        return bool(self.body.get("many"))

    @property
    def keep_alive(self) -> bool:
        return bool(self.body.get("keepAlive"))

    @property
    def read_at(self) -> datetime:
        return datetime.fromisoformat(self.body["readAt"].replace("Z", "+00:00"))


@dataclass
class Watch:
    """A WatchJobs stream read as it comes: its messages, its end."""

    messages: list[Message] = field(default_factory=list)
    status: int = 0
    end: dict[str, Any] | None = None  # the end-stream message, once it came
    closed: trio.Event = field(default_factory=trio.Event)

    def since(self, count: int) -> list[Message]:
        return self.messages[count:]

    async def wait_for(self, job_id: str, after: int, timeout: float = 10) -> Message:
        """The first message past the `after` first ones that names `job_id` (or says
        `many`); a hang guard, not a timing assertion."""
        with trio.fail_after(timeout):
            while True:
                for message in self.since(after):
                    if job_id in message.job_ids or message.many:
                        return message
                await trio.sleep(0.01)


def envelope(flags: int, body: bytes) -> bytes:
    return struct.pack(">BI", flags, len(body)) + body


async def _read(stream: trio.SocketStream, watch: Watch, token: str) -> None:
    host, port = stream.socket.getpeername()[:2]
    body = envelope(0, b"{}")
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="POST",
        target=WATCH,
        headers=[
            ("host", f"{host}:{port}"),
            ("content-type", "application/connect+json"),
            ("connect-protocol-version", "1"),
            ("authorization", f"Bearer {token}"),
            ("content-length", str(len(body))),
        ],
    )
    await stream.send_all(conn.send(request) + conn.send(h11.Data(data=body)))
    await stream.send_all(conn.send(h11.EndOfMessage()))
    buffer = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
            continue
        if isinstance(event, h11.Response):
            watch.status = event.status_code
        elif isinstance(event, h11.Data):
            buffer += bytes(event.data)
            while len(buffer) >= 5:
                flags, length = struct.unpack(">BI", buffer[:5])
                if len(buffer) < 5 + length:
                    break
                message = json.loads(buffer[5 : 5 + length])
                buffer = buffer[5 + length :]
                if flags & END_STREAM:
                    watch.end = message
                else:
                    watch.messages.append(Message(trio.current_time(), message))
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            return


@asynccontextmanager
async def watching(url: str, token: str = ADMIN_TOKEN) -> AsyncIterator[Watch]:
    """A WatchJobs stream on its own HTTP/1.1 connection, read in the background until
    the block ends, which closes the connection (the client leaves)."""
    host, port = address(url)
    watch = Watch()
    async with trio.open_nursery() as nursery:
        stream = await trio.open_tcp_stream(host, port)

        async def read() -> None:
            try:
                await _read(stream, watch, token)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                watch.closed.set()

        nursery.start_soon(read)
        try:
            yield watch
        finally:
            nursery.cancel_scope.cancel()
            # Shielded: a Cancelled from this cancelled scope would hide the body's error.
            with trio.CancelScope(shield=True):
                await stream.aclose()


def gaps(messages: list[Message]) -> list[float]:
    """Seconds between consecutive messages, by the server's clock (`readAt`)."""
    times = [message.read_at for message in messages]
    return [(b - a).total_seconds() for a, b in itertools.pairwise(times)]


# `readAt` is in whole milliseconds: two of them may each be up to 1 ms short.
SPACED = WATCH_MIN_INTERVAL_SECONDS - 0.002


async def first_message(watch: Watch) -> Message:
    await wait_until(lambda: len(watch.messages) >= 1 or watch.closed.is_set())
    assert watch.messages, (watch.status, watch.end)
    return watch.messages[0]


# -- over a real server -----------------------------------------------------------------


async def test_a_message_at_once_then_one_after_each_change(
    server: Server, nursery: trio.Nursery
) -> None:
    """The first message says "live, re-read everything"; then a job created, claimed
    by a daemon (pending → running, nothing else changes it), canceled, and another
    completed each bring a message naming it."""
    jobs = Jobs(server)
    async with watching(server.url) as watch:
        first = await first_message(watch)
        assert watch.status == 200
        assert first.many and not first.keep_alive and first.job_ids == []

        seen = len(watch.messages)
        job = await jobs.create()
        await watch.wait_for(job.id, seen)

        seen = len(watch.messages)
        daemon = TestDaemon(server, "watched")
        assert (await (await daemon.acquire(nursery)).wait()).job_id == job.id
        claimed = await watch.wait_for(job.id, seen)
        assert not claimed.many  # named: the claim itself was announced

        seen = len(watch.messages)
        pending = await jobs.create()
        await watch.wait_for(pending.id, seen)
        seen = len(watch.messages)
        await jobs.cancel(pending.id)
        canceled = await watch.wait_for(pending.id, seen)
        assert not canceled.many

        seen = len(watch.messages)
        await daemon.complete(job.id)
        completed = await watch.wait_for(job.id, seen)
        assert not completed.many

        # Never two messages within the interval (the server's clock says when).
        spacing = gaps(watch.messages)
        assert all(gap >= SPACED for gap in spacing), spacing
        assert all(not message.keep_alive for message in watch.messages)
        assert watch.end is None  # it does not end by itself


async def test_a_burst_of_changes_is_coalesced(server: Server) -> None:
    """Jobs created as fast as the API takes them: every id arrives, in messages at
    least the interval apart (so the creations within one interval shared one)."""
    jobs = Jobs(server)
    await jobs.file_hash()
    async with watching(server.url) as watch:
        await first_message(watch)
        created = [(await jobs.create()).id for _ in range(12)]
        named: set[str] = set()

        def all_named() -> bool:
            named.update(i for m in watch.messages for i in m.job_ids)
            return named >= set(created)

        await wait_until(all_named)
        spacing = gaps(watch.messages)
        assert all(gap >= SPACED for gap in spacing), spacing
        assert not any(message.keep_alive for message in watch.messages)


async def test_needs_the_admin_token(server: Server) -> None:
    async with watching(server.url, token="not-the-token") as watch:
        await wait_until(watch.closed.is_set)
    assert watch.messages == []
    assert watch.end is not None or watch.status == 401
    if watch.end is not None:
        assert watch.end["error"]["code"] == "unauthenticated"


async def test_a_job_created_through_one_server_is_pushed_by_the_other(
    make_server: ServerFactory, nursery: trio.Nursery
) -> None:
    """Two servers on one database, their backup polls at an hour: a watcher of B hears
    of a job created through A (its queue's wake-up), claimed through A (the claim's
    relayed change, naming it) and canceled through A."""
    slow = {"poll_interval_seconds": HOUR, "log_poll_interval_seconds": HOUR}
    a = await make_server(**slow)
    b = await make_server(db_path=a.db_path, **slow)
    jobs_a = Jobs(a)
    async with watching(b.url) as watch:
        await first_message(watch)
        seen = len(watch.messages)
        job = await jobs_a.create()
        created = await watch.wait_for(job.id, seen)
        assert created.many or job.id in created.job_ids

        seen = len(watch.messages)
        daemon = TestDaemon(a, "on-a")
        assert (await (await daemon.acquire(nursery)).wait()).job_id == job.id
        claimed = await watch.wait_for(job.id, seen)
        assert job.id in claimed.job_ids

        seen = len(watch.messages)
        await jobs_a.cancel(job.id)
        canceled = await watch.wait_for(job.id, seen)
        assert job.id in canceled.job_ids
    assert b.scheduler.statistics().polls == 0


@pytest.fixture
async def running(tmp_path: Path, nursery: trio.Nursery) -> Running:
    """provd serving in this test's nursery, with its JobEvents in view."""
    settings = server_settings(tmp_path / "provd.db")
    started: Running = await nursery.start(partial(serve, settings))
    return started


async def test_a_client_that_leaves_is_forgotten(running: Running) -> None:
    """A watcher whose connection closes is gone from JobEvents within the close grace,
    though nothing changes meanwhile (no send fails to tell)."""
    events = running.events
    assert events is not None
    async with watching(running.url) as watch:
        await first_message(watch)
        async with watching(running.url) as other:
            await first_message(other)
            assert events.statistics().feeds == 2
        # The other one left: this one stays.
        with trio.fail_after(GONE_WITHIN):
            while events.statistics().feeds != 1:
                await trio.sleep(0.05)
    with trio.fail_after(GONE_WITHIN):
        while events.statistics().feeds:
            await trio.sleep(0.05)


@pytest.mark.slow
async def test_a_stream_reset_over_http2_is_forgotten_at_the_next_keep_alive(
    running: Running,
) -> None:
    """Over HTTP/2 a client may reset the stream and keep the connection: nothing is
    cancelled then, and the watcher ends when its next message cannot be sent (a
    keep-alive, at the latest)."""
    events = running.events
    assert events is not None
    raw = RawH2(running.url)
    await raw.connect()
    try:
        stream_id = raw.open_stream(
            WATCH,
            [
                ("content-type", "application/connect+proto"),
                ("authorization", f"Bearer {ADMIN_TOKEN}"),
            ],
        )
        raw.conn.send_data(stream_id, envelope(0, b""), end_stream=True)
        await raw.flush()
        with trio.fail_after(10):
            await raw.receive_until(lambda e: isinstance(e, h2.events.DataReceived))
        assert events.statistics().feeds == 1
        raw.conn.reset_stream(stream_id)
        await raw.flush()
        async with trio.open_nursery() as nursery:

            async def keep_reading() -> None:
                while not raw.closed:
                    await raw.receive()

            nursery.start_soon(keep_reading)
            with trio.fail_after(WATCH_KEEP_ALIVE_SECONDS + 10):
                while events.statistics().feeds:
                    await trio.sleep(0.05)
            assert not raw.closed  # the connection lived on; only the stream went
            nursery.cancel_scope.cancel()
    finally:
        await raw.aclose()


# -- on the virtual clock ----------------------------------------------------------------


@asynccontextmanager
async def watched_service() -> AsyncIterator[tuple[JobEvents, list[tuple[float, JobsChanged]]]]:
    """A JobService's watch_jobs run on a MemoryStore; what it sends, with when."""
    events = JobEvents()
    got: list[tuple[float, JobsChanged]] = []
    async with open_memory_store() as store, trio.open_nursery() as nursery:
        service = JobService(store, events)

        async def watch() -> None:
            async for message in service.watch_jobs():
                got.append((trio.current_time(), message))

        nursery.start_soon(watch)
        await trio.testing.wait_all_tasks_blocked()
        yield events, got
        nursery.cancel_scope.cancel()
    assert events.statistics().feeds == 0


async def test_coalesces_to_one_message_per_interval(autojump_clock: trio.abc.Clock) -> None:
    interval = WATCH_MIN_INTERVAL_SECONDS
    async with watched_service() as (events, got):
        start = trio.current_time()
        assert [(t - start, m.many, m.job_ids) for t, m in got] == [(0, True, ())]

        await trio.sleep(10)
        events.notify("a")  # after a quiet spell: at once
        await trio.testing.wait_all_tasks_blocked()
        events.notify("c")  # right behind it: they wait out the interval together
        events.wake("b")
        await trio.sleep(interval / 5)
        events.created("d")
        await trio.sleep(interval)
        messages = [(round(t - start, 3), m.job_ids, m.many) for t, m in got[1:]]
        assert messages == [(10, ("a",), False), (10 + interval, ("b", "c", "d"), False)]

        # Past the cap, or a change of a job nobody can name: "many", no ids.
        del got[:]
        for n in range(FEED_MAX_IDS + 1):
            events.notify(f"job-{n}")
        await trio.sleep(interval)
        events.some_job_changed()
        await trio.sleep(interval)
        events.wake_all()
        await trio.sleep(interval)
        assert [(m.job_ids, m.many) for _, m in got] == [((), True)] * 3


async def test_sends_a_keep_alive_while_nothing_changes(autojump_clock: trio.abc.Clock) -> None:
    async with watched_service() as (events, got):
        start = trio.current_time()
        await trio.sleep(WATCH_KEEP_ALIVE_SECONDS * 2.5)
        keep_alives = [(round(t - start, 3), m.keep_alive, m.job_ids) for t, m in got[1:]]
        assert keep_alives == [
            (WATCH_KEEP_ALIVE_SECONDS, True, ()),
            (WATCH_KEEP_ALIVE_SECONDS * 2, True, ()),
        ]
        # A change resets the count: the next keep-alive is a full period after it.
        events.notify("x")
        changed_at = trio.current_time()
        await trio.sleep(WATCH_KEEP_ALIVE_SECONDS - 1)
        assert [m.job_ids for _, m in got[3:]] == [("x",)]
        await trio.sleep(2)
        (at, last), *_ = got[4:]
        assert last.keep_alive and at == changed_at + WATCH_KEEP_ALIVE_SECONDS


async def test_wakeups_from_other_processes_reach_the_watchers(
    autojump_clock: trio.abc.Clock,
) -> None:
    """What another process relays wakes WatchJobs here too: a job available (which
    job is not said: "many"), a job changed (named), a rescan ("many")."""
    from provd.model import Queue

    async with open_memory_store() as store:
        wakeups = Wakeups(store)
        with wakeups.events.subscribe() as feed:
            wakeups._deliver([JobAvailable(Queue("default", "echo", {}))])
            assert feed.take() == Changes((), many=True)
            wakeups._deliver([JobChanged("j-1")])
            assert feed.pending and feed.take().job_ids == ("j-1",)
            wakeups._deliver([Rescan()])
            assert feed.take().many

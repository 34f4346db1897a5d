"""One wake-up path across processes: two provd servers on one SQLite file, over real
sockets, each with its backup polls set to an hour, so that only a wake-up relayed
between them can deliver in time (every wait below has a generous timeout)."""

from __future__ import annotations

import json
import logging
import os
import socket
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from provd.model import Queue
from provd.store import Store
from provd.wakeups import (
    MAGIC,
    MAX_MESSAGE_BYTES,
    DatagramRelay,
    JobAvailable,
    JobChanged,
    KeyRevoked,
    Malformed,
    Rescan,
    Wakeup,
    decode,
    encode,
    notify_directory,
)
from tests.claim_gate import ClaimGate, lock_a_job
from tests.conftest import Server, ServerFactory
from tests.daemon_clients import Follower, Jobs, TestDaemon, log, wait_until, waiting_on
from tests.raw_h2 import VanishingDaemon

HOUR = 3600.0


@pytest.fixture
def slow_polls() -> dict[str, float]:
    """Servers whose scheduler and log followers re-read on their own only once an
    hour: only a wake-up can deliver in time."""
    return {"poll_interval_seconds": HOUR, "log_poll_interval_seconds": HOUR}


async def two_servers(make_server: ServerFactory, **overrides: object) -> tuple[Server, Server]:
    a = await make_server(**overrides)
    b = await make_server(db_path=a.db_path, **overrides)
    return a, b


# -- across two servers ----------------------------------------------------------------


async def test_a_job_created_on_one_server_wakes_a_daemon_waiting_on_the_other(
    make_server: ServerFactory, slow_polls: dict[str, float], nursery: trio.Nursery
) -> None:
    a, b = await two_servers(make_server, **slow_polls)
    acquisition = await waiting_on(b, TestDaemon(b, "on-b"), nursery)
    job = await Jobs(a).create()
    acquired = await acquisition.wait(timeout=10)  # type: ignore[attr-defined]
    assert acquired.job_id == job.id
    assert b.scheduler.statistics().polls == 0


async def test_a_job_given_back_on_one_server_wakes_a_daemon_waiting_on_the_other(
    make_server: ServerFactory, slow_polls: dict[str, float], nursery: trio.Nursery
) -> None:
    """A's scheduler hands a new job to a daemon that vanishes before it is sent: the
    job goes back to pending on A, and the daemon waiting on B gets it at once."""
    gates: list[ClaimGate] = []

    def gated(store: Store) -> Store:
        gates.append(ClaimGate(store, only_jobs=True))
        return gates[0]  # type: ignore[return-value]

    a = await make_server(wrap_store=gated, **slow_polls)
    b = await make_server(db_path=a.db_path, **slow_polls)
    acquisition = await waiting_on(b, TestDaemon(b, "on-b"), nursery)
    ghost = VanishingDaemon(a.url, "ghost")
    _, job_id = await lock_a_job(a, gates[0], Jobs(a), nursery, "hand-over", ghost.open_acquire)
    await ghost.vanish()
    await wait_until(lambda: a.scheduler.statistics().cancels_during_claim == 1)
    gates[0].opened.set()
    acquired = await acquisition.wait(timeout=10)  # type: ignore[attr-defined]
    assert acquired.job_id == job_id
    assert a.scheduler.statistics().released == 1
    assert b.scheduler.statistics().polls == 0


async def test_a_queue_too_long_for_a_message_is_found_by_a_rescan(
    make_server: ServerFactory, slow_polls: dict[str, float], nursery: trio.Nursery
) -> None:
    """Tags longer than a datagram: the wake-up becomes "re-read", which still works."""
    a, b = await two_servers(make_server, **slow_polls)
    tags = {f"key{i}": "v" * 250 for i in range(12)}  # about 3 KB of tags
    acquisition = await waiting_on(b, TestDaemon(b, "tagged", tags=tags), nursery)
    job = await Jobs(a).create(tags=tags)
    acquired = await acquisition.wait(timeout=10)  # type: ignore[attr-defined]
    assert acquired.job_id == job.id


async def test_log_followers_and_cancel_cross_servers(
    make_server: ServerFactory, slow_polls: dict[str, float], nursery: trio.Nursery
) -> None:
    a, b = await two_servers(make_server, **slow_polls)
    jobs_a = Jobs(a)
    daemon = TestDaemon(b, "on-b")
    job = await jobs_a.create()
    acquired = await (await daemon.acquire(nursery)).wait()
    assert acquired.job_id == job.id

    on_a = Follower(Jobs(a), job.id, nursery)
    on_b = Follower(Jobs(b), job.id, nursery)
    await wait_until(lambda: "Queued" in on_a.stages() and "Queued" in on_b.stages())

    # Lines sent through B reach the follower on A (its own poll is an hour).
    await daemon.update(job.id, logs=[log("hello from B")])
    await wait_until(lambda: "hello from B" in on_a.outputs())

    # A cancel through A reaches the follower on B, and the daemon on B hears of it.
    await jobs_a.cancel(job.id)
    await wait_until(lambda: "Cancel" in on_b.stages())
    assert (await daemon.update(job.id)).canceled

    # The daemon stops the job through B: the follower on A ends.
    await daemon.fail(job.id)
    with trio.fail_after(10):
        await on_a.ended.wait()
        await on_b.ended.wait()
    assert on_a.stages()[-1] == "Failed" and on_b.stages()[-1] == "Failed"


@pytest.mark.slow
async def test_latency_from_create_on_a_to_a_daemon_on_b(
    make_server: ServerFactory, slow_polls: dict[str, float], nursery: trio.Nursery
) -> None:
    """200 jobs to a daemon on B, then 200 to one on A itself for comparison."""
    a, b = await two_servers(make_server, **slow_polls)
    jobs_a = Jobs(a)
    await jobs_a.file_hash()
    for server, where in ((b, "another server (B)"), (a, "the same server (A)")):
        daemon = TestDaemon(server, f"daemon-{where}")
        latencies: list[float] = []
        for _ in range(200):
            acquisition = await waiting_on(server, daemon, nursery)
            started = time.perf_counter()
            job = await jobs_a.create()
            acquired = await acquisition.wait(timeout=10)  # type: ignore[attr-defined]
            latencies.append(time.perf_counter() - started)
            assert acquired.job_id == job.id
        print(
            f"\nCreateJob on A -> acquired by a daemon on {where}, 200 jobs:"
            f" p50 {_ms(latencies, 50)}, p99 {_ms(latencies, 99)}"
        )
    assert a.scheduler.statistics().polls == b.scheduler.statistics().polls == 0


# -- the relay's sockets ------------------------------------------------------------


def _dead_socket(path: Path) -> None:
    """A socket file that nobody listens on, as a killed process leaves it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.close()


async def test_a_dead_process_socket_is_removed(
    make_server: ServerFactory, tmp_path: Path, nursery: trio.Nursery
) -> None:
    db_path = tmp_path / "shared.db"
    directory = notify_directory(db_path)
    directory.mkdir(mode=0o700)
    # Left by a process killed before this server started: its greeting finds it.
    before = directory / "4000001-deadbeef.sock"
    _dead_socket(before)
    a = await make_server(db_path=db_path)
    await wait_until(lambda: not before.exists())

    # A process that greeted the server, then died: the next wake-up finds it.
    after = directory / "4000002-deadbeef.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(after))
    for peer in directory.iterdir():
        if peer != after:
            sock.sendto(MAGIC + b'[["h"]]', str(peer))  # hello
    sock.close()
    jobs = Jobs(a)
    await jobs.create()
    await wait_until(lambda: not after.exists())
    # The server's own socket is there while it runs.
    assert len(list(directory.iterdir())) == 1


async def test_the_socket_directory_is_private_and_emptied_on_shutdown(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    relay = DatagramRelay(tmp_path / "x.db")
    with trio.CancelScope() as scope:
        nursery.start_soon(_cancel_after_start, relay, scope)
        await relay.run(lambda wakeups: None)
    assert relay.directory is not None
    assert relay.directory.stat().st_mode & 0o777 == 0o700
    assert list(relay.directory.iterdir()) == []


async def _cancel_after_start(relay: DatagramRelay, scope: trio.CancelScope) -> None:
    await wait_until(lambda: bool(relay.path))
    assert await trio.Path(relay.path).exists()
    scope.cancel()


async def test_malformed_datagrams_are_ignored(
    make_server: ServerFactory,
    slow_polls: dict[str, float],
    nursery: trio.Nursery,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="provd.wakeups")
    a, b = await two_servers(make_server, **slow_polls)
    directory = notify_directory(a.db_path)
    garbage = [
        b"",
        b"hello",
        MAGIC + b"{not json",
        MAGIC + b'{"q": 1}',
        MAGIC + b'[["q", 1, 2, 3]]',
        MAGIC + b'[["j", "ok"], ["nope"]]',
        MAGIC + b"[" + b'"x",' * MAX_MESSAGE_BYTES + b'"x"]',
        MAGIC + b"\xff\xfe[]",
    ]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        for path in directory.iterdir():
            for message in garbage:
                sender.sendto(message, str(path))
    await wait_until(
        lambda: (
            sum("malformed wake-up" in r.getMessage() for r in caplog.records) >= 2 * len(garbage)
        )
    )
    # Both still work.
    acquisition = await waiting_on(b, TestDaemon(b, "on-b"), nursery)
    job = await Jobs(a).create()
    assert (await acquisition.wait(timeout=10)).job_id == job.id  # type: ignore[attr-defined]


async def test_relay_latency_between_two_processes_sockets(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """The relay alone: one wake-up from A's relay to B's delivery, 200 times."""
    db_path = tmp_path / "relay.db"
    received: list[Sequence[Wakeup]] = []
    arrived = trio.Event()

    def deliver(wakeups: Sequence[Wakeup]) -> None:
        received.append(wakeups)
        arrived.set()

    sender = DatagramRelay(db_path)
    receiver = DatagramRelay(db_path)
    await nursery.start(sender.run, lambda wakeups: None)
    await nursery.start(receiver.run, deliver)
    await wait_until(lambda: sender.statistics().peers == 1)  # B greeted A
    latencies: list[float] = []
    for i in range(200):
        arrived = trio.Event()
        started = time.perf_counter()
        sender.send(JobChanged(f"job-{i}"))
        with trio.fail_after(10):
            await arrived.wait()
        latencies.append(time.perf_counter() - started)
    assert [w for batch in received for w in batch] == [JobChanged(f"job-{i}") for i in range(200)]
    assert sender.statistics().messages_dropped == 0
    print(f"\nrelay A -> B, 200 wake-ups: p50 {_ms(latencies, 50)}, p99 {_ms(latencies, 99)}")


async def test_a_lone_process_tells_a_peer_that_joins_later(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """Alone, a relay drops its wake-ups (nobody to tell); a process that joins
    greets it and gets every wake-up sent after that."""
    db_path = tmp_path / "alone.db"
    sender = DatagramRelay(db_path)
    await nursery.start(sender.run, lambda wakeups: None)
    sender.send(JobChanged("nobody-listens"))
    await wait_all_tasks_blocked()
    directory = notify_directory(db_path)
    joiner = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    joiner_path = directory / f"{os.getpid()}-0a1b2c3d.sock"
    joiner.bind(str(joiner_path))
    try:
        joiner.sendto(MAGIC + b'[["h"]]', sender.path)
        await wait_until(lambda: sender.statistics().peers == 1)
        sender.send(JobChanged("after-the-greeting"))
        with trio.fail_after(10):  # a hang guard, not a timing assertion
            await trio.lowlevel.wait_readable(joiner)
        message = joiner.recv(MAX_MESSAGE_BYTES + 1)
        received = [w for w in decode(message) if isinstance(w, Wakeup)]
        assert received == [JobChanged("after-the-greeting")]
    finally:
        joiner.close()
        joiner_path.unlink()


async def test_a_burst_is_batched_and_a_full_queue_is_made_up_by_a_rescan(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    db_path = tmp_path / "burst.db"
    received: list[Wakeup] = []
    sender = DatagramRelay(db_path)
    await nursery.start(sender.run, lambda wakeups: None)
    # A peer that greets, then does not read for a while: its queue fills up.
    directory = notify_directory(db_path)
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stuck_path = directory / f"{os.getpid()}-0badcafe.sock"
    stuck.bind(str(stuck_path))
    stuck.sendto(MAGIC + b'[["h"]]', sender.path)
    await wait_until(lambda: sender.statistics().peers == 1)
    try:
        # Each burst is one message (batched); far more bursts than the queue holds.
        for i in range(200):
            for j in range(50):
                sender.send(JobChanged(f"job-{i}-{j}"))
            await trio.lowlevel.checkpoint()
        await wait_until(lambda: sender.statistics().messages_dropped > 0)
        # Now read: a Rescan comes once there is room.
        stuck.setblocking(False)

        async def drain() -> None:
            while True:
                await trio.lowlevel.wait_readable(stuck)
                while True:
                    try:
                        message = stuck.recv(MAX_MESSAGE_BYTES + 1)
                    except BlockingIOError:
                        break
                    received.extend(w for w in decode(message) if isinstance(w, Wakeup))

        nursery.start_soon(drain)
        await wait_until(lambda: Rescan() in received)
    finally:
        stuck.close()
        stuck_path.unlink()


# -- the encoding --------------------------------------------------------------------


def test_encoding_round_trips_and_batches() -> None:
    queue = Queue("org", "echo", {"scope": "organization", "owner": ""})
    wakeups: list[Wakeup] = [JobAvailable(queue), JobChanged("j1"), Rescan()]
    messages = encode(wakeups)
    assert len(messages) == 1
    assert decode(messages[0]) == wakeups
    # A job given back, as provd sent it before 2026-12: a rescan finds it.
    assert decode(MAGIC + b'[["r","j2"]]') == [Rescan()]

    many = [JobChanged(f"{i:036d}") for i in range(500)]
    messages = encode(many)
    assert len(messages) > 1
    assert all(len(message) <= MAX_MESSAGE_BYTES for message in messages)
    assert [w for message in messages for w in decode(message)] == many


def test_key_revocations_travel_in_messages_of_their_own() -> None:
    """A provd older than daemon keys refuses a whole message holding a `k` item it
    does not know; so `k` items never share a message with other kinds, and such a
    peer loses only them. Everything still round-trips, the others first."""
    queue = Queue("org", "echo", {"scope": "organization", "owner": ""})
    wakeups: list[Wakeup] = [
        JobChanged("j1"),
        KeyRevoked("k1"),
        JobAvailable(queue),
        KeyRevoked("k2"),
        Rescan(),
    ]
    messages = encode(wakeups)
    assert len(messages) == 2
    for message in messages:
        kinds = {item[0] for item in json.loads(message[len(MAGIC) :])}
        assert kinds == {"k"} or "k" not in kinds, kinds
    assert [w for message in messages for w in decode(message)] == [
        JobChanged("j1"),
        JobAvailable(queue),
        Rescan(),
        KeyRevoked("k1"),
        KeyRevoked("k2"),
    ]
    assert encode([JobChanged("j1")]) == [MAGIC + b'[["j","j1"]]']


def test_a_wakeup_too_long_for_a_message_becomes_a_rescan() -> None:
    huge = JobAvailable(Queue("org", "echo", {f"k{i}": "v" * 250 for i in range(12)}))
    assert [w for m in encode([JobChanged("a"), huge]) for w in decode(m)] == [
        JobChanged("a"),
        Rescan(),
    ]


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"[]",
        MAGIC + b"[",
        MAGIC + b"{}",
        MAGIC + b'[["q","o","p",{"k":1}]]',
        MAGIC + b"[[]]",
        MAGIC + b'[["k",1]]',
    ],
)
def test_decode_refuses_what_is_not_a_wakeup(message: bytes) -> None:
    with pytest.raises(Malformed):
        decode(message)


def _ms(values: list[float], percentile: int) -> str:
    ordered = sorted(values)
    if percentile == 50:
        return f"{statistics.median(ordered) * 1000:.2f} ms"
    index = min(len(ordered) - 1, round(len(ordered) * percentile / 100) - 1)
    return f"{ordered[index] * 1000:.2f} ms"


async def test_a_directory_open_to_others_keeps_wake_ups_local(
    make_server: ServerFactory,
    tmp_path: Path,
    nursery: trio.Nursery,
    caplog: pytest.LogCaptureFixture,
) -> None:
    db_path = tmp_path / "open.db"
    directory = notify_directory(db_path)
    directory.mkdir()
    directory.chmod(0o755)
    server = await make_server(db_path=db_path)  # serves all the same
    assert any("will not reach other provd processes" in r.getMessage() for r in caplog.records)
    assert list(directory.iterdir()) == []
    acquisition = await waiting_on(server, TestDaemon(server, "local"), nursery)
    job = await Jobs(server).create()
    assert (await acquisition.wait()).job_id == job.id  # type: ignore[attr-defined]

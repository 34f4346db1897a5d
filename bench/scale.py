"""Scale: the memory 2,000 idle acquire streams cost, and claim time with 1k versus
1M pending jobs.

    .venv/bin/python bench/scale.py [--connections 20] [--streams 100]
                                    [--small 1000] [--large 1000000] [--claims 500]

Streams. One `provd serve` subprocess (127.0.0.1:0, a new SQLite file, durable
defaults). This process opens `--connections` cleartext HTTP/2 connections with the
`h2` library over trio sockets and `--streams` AcquireJobWithCancel streams on each
(Connect, binary; hypercorn allows 100 concurrent streams per connection), each
stream a daemon of its own (`scale-<n>`), then sends nothing more. Once
ListDaemons shows every one of them connected, the server's VmRSS is read from
/proc/PID/status, and its CPU over a few idle seconds. Then every stream is
half-closed (the protocol's cancel); each must get exactly one answer, an empty
AcquiredJob, and end.

Claims. Two SQLite files are made with provd's schema (`open_sqlite_store` runs the
migrations) and filled directly with plain sqlite3 `executemany`: `--small` and
`--large` pending jobs in one queue (one file row, one queue row). Each is then
opened with `open_sqlite_store` (synchronous=full) and `--claims` jobs are claimed
one after another through the store API (`Store.claim_job`: the writer thread, one
UPDATE … RETURNING, one fsync), each timed; the figure is the median. The same
claims are also timed as bare SQL (`_sql_jobs.claim_job` on a connection, no
commit), which is what the index has to answer. Last, the queue position of the
newest pending job (`_sql_jobs.queue_positions`, from the queue's counters), which
GetJob and CreateJob compute for every pending job, is timed too.

    ratio = median claim with 1M pending ÷ median claim with 1k pending   (goal ≤ 1.5)

The last line printed is one JSON object with the results.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import h2.config
import h2.connection
import h2.events
import trio
from _common import (
    ADMIN_TOKEN,
    DAEMON_PSK,
    Server,
    emit,
    goal,
    log,
    machine,
    provd_server,
    table,
)

from provd.client.connect import daemon_service_client
from provd.gen.provd.v1 import daemons_pb2 as dpb
from provd.model import JobType, Queue, normalize_tags, tags_key
from provd.store import _sql_jobs as jobs_sql
from provd.store.sqlite import open_sqlite_store

GOAL_RSS_MB = 250.0
GOAL_CLAIM_RATIO = 1.5
ACQUIRE = "/provisionerd.ProvisionerDaemon/AcquireJobWithCancel"
# Hang guards, not measurements.
OPEN_TIMEOUT = 120.0
CLOSE_TIMEOUT = 60.0

# -- idle streams ------------------------------------------------------------------


class StreamConnection:
    """One HTTP/2 connection carrying many idle acquire streams."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.socket: trio.SocketStream | None = None
        self.open: set[int] = set()
        self.answers: dict[int, int] = {}  # stream id → DATA bytes received
        self.ended = 0
        self.reset = 0
        self.closed = trio.Event()

    async def connect(self) -> None:
        self.socket = await trio.open_tcp_stream(self.host, self.port)
        self.conn.initiate_connection()
        await self.flush()

    async def flush(self) -> None:
        assert self.socket is not None
        data = self.conn.data_to_send()
        if data:
            await self.socket.send_all(data)

    async def open_streams(self, names: list[str]) -> None:
        for name in names:
            stream_id = self.conn.get_next_available_stream_id()
            self.conn.send_headers(
                stream_id,
                [
                    (":method", "POST"),
                    (":scheme", "http"),
                    (":authority", f"{self.host}:{self.port}"),
                    (":path", ACQUIRE),
                    ("content-type", "application/connect+proto"),
                    ("connect-protocol-version", "1"),
                    ("provd-daemon-psk", DAEMON_PSK),
                    ("provd-daemon-name", name),
                    ("provd-daemon-provisioners", "echo"),
                    ("provd-api-version", "1.1"),
                ],
            )
            self.open.add(stream_id)
            self.answers[stream_id] = 0
        await self.flush()

    async def half_close_all(self) -> None:
        """End our side of every stream: the protocol's "stop waiting"."""
        for stream_id in sorted(self.open):
            self.conn.end_stream(stream_id)
        await self.flush()

    async def read(self) -> None:
        """Feed the connection until the server closes it or every stream ended."""
        assert self.socket is not None
        while True:
            data = await self.socket.receive_some(65536)
            if not data:
                break
            for event in self.conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    self.answers[event.stream_id] += len(event.data)
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
                elif isinstance(event, h2.events.StreamEnded):
                    self.ended += 1
                    self.open.discard(event.stream_id)
                elif isinstance(event, h2.events.StreamReset):
                    self.reset += 1
                    self.open.discard(event.stream_id)
            await self.flush()
            if not self.open and self.ended + self.reset == len(self.answers):
                break
        self.closed.set()

    async def aclose(self) -> None:
        if self.socket is not None:
            await self.socket.aclose()


def connected_daemons(url: str, prefix: str) -> int:
    client = daemon_service_client(url, ADMIN_TOKEN)
    response = client.list_daemons(dpb.ListDaemonsRequest())
    return sum(1 for d in response.daemons if d.connected and d.name.startswith(prefix))


async def idle_streams(server: Server, connections: int, streams: int) -> dict[str, float]:
    parts = urlsplit(server.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    total = connections * streams
    rss_before = server.rss_mb()
    conns = [StreamConnection(host, port) for _ in range(connections)]
    figures: dict[str, float] = {"rss_before_mb": rss_before}
    async with trio.open_nursery() as nursery:
        started = time.perf_counter()
        for index, conn in enumerate(conns):
            await conn.connect()
            nursery.start_soon(conn.read)
            names = [f"scale-{index * streams + n}" for n in range(streams)]
            await conn.open_streams(names)
        with trio.fail_after(OPEN_TIMEOUT):
            while (
                seen := await trio.to_thread.run_sync(connected_daemons, server.url, "scale-")
            ) < total:
                await trio.sleep(0.2)
        figures["open_s"] = time.perf_counter() - started
        figures["connected"] = seen
        await trio.sleep(1.0)  # let the allocator settle
        figures["rss_mb"] = server.rss_mb()
        cpu_before = server.cpu_s()
        await trio.sleep(3.0)
        figures["idle_cpu_pct"] = (server.cpu_s() - cpu_before) / 3.0 * 100
        started = time.perf_counter()
        with trio.fail_after(CLOSE_TIMEOUT):
            for conn in conns:
                await conn.half_close_all()
            for conn in conns:
                await conn.closed.wait()
        figures["close_s"] = time.perf_counter() - started
        for conn in conns:
            await conn.aclose()
    figures["answered"] = sum(conn.ended for conn in conns)
    figures["reset"] = sum(conn.reset for conn in conns)
    # An empty AcquiredJob is a 5-byte envelope, then the end-of-stream message.
    figures["answered_with_data"] = sum(
        1 for conn in conns for size in conn.answers.values() if size > 0
    )
    figures["peak_rss_mb"] = server.peak_rss_mb()
    return figures


# -- claims --------------------------------------------------------------------------

QUEUE = Queue("default", "echo", normalize_tags({}))
FILE_HASH = "0" * 64


async def make_store(path: Path) -> None:
    async with open_sqlite_store(path):
        pass  # creates the file and runs the migrations


def fill(path: Path, pending: int) -> float:
    """`pending` jobs in QUEUE, inserted directly; returns the seconds it took."""
    started = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    conn.execute(
        "INSERT INTO files (hash, size, mimetype, data, created_at) VALUES (?, 0, ?, ?, 0)",
        (FILE_HASH, "application/x-tar", b""),
    )
    key = tags_key(QUEUE.tags)
    conn.execute(
        "INSERT INTO queues (organization, provisioner, tags) VALUES (?, ?, ?)",
        (QUEUE.organization, QUEUE.provisioner, key),
    )
    now = int(time.time() * 1000) - pending
    rows = (
        (
            str(uuid.UUID(int=n + 1, version=4)),
            JobType.TEMPLATE_IMPORT.value,
            QUEUE.provisioner,
            QUEUE.organization,
            key,
            FILE_HASH,
            "",
            "bench",
            0,
            b"",
            "{}",
            now + n,
            now + n,
            n + 1,
        )
        for n in range(pending)
    )
    conn.executemany(
        "INSERT INTO jobs (id, type, provisioner, organization, tags, file_hash, initiator_id,"
        " initiator_name, priority, input, trace_metadata, created_at, updated_at,"
        " queue_ordinal) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    # The queue-position counters (provd/store/_ranks.py) of those jobs.
    conn.execute(
        "INSERT INTO queue_levels (organization, provisioner, tags, priority, last, head,"
        " pending, marks) VALUES (?, ?, ?, 0, ?, 0, ?, 0)",
        (QUEUE.organization, QUEUE.provisioner, key, pending, pending),
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - started


async def time_claims(path: Path, claims: int) -> list[float]:
    seconds = []
    async with open_sqlite_store(path) as store:
        for n in range(claims):
            started = time.perf_counter()
            job = await store.claim_job([QUEUE], f"worker-{n % 8}")
            seconds.append(time.perf_counter() - started)
            assert job is not None, "ran out of pending jobs"
    return seconds


def time_sql_claims(path: Path, claims: int) -> list[float]:
    """The claim statement alone, in one open transaction (rolled back)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    seconds = []
    now = int(time.time() * 1000)
    conn.execute("BEGIN IMMEDIATE")
    try:
        for n in range(claims):
            started = time.perf_counter()
            job = jobs_sql.claim_job(conn, [QUEUE], f"worker-{n % 8}", now)
            seconds.append(time.perf_counter() - started)
            assert job is not None
    finally:
        conn.execute("ROLLBACK")
        conn.close()
    return seconds


def time_queue_position(path: Path, repeats: int = 5) -> float:
    """Median seconds for the queue position of the newest pending job, which GetJob
    and CreateJob report for every pending job."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        job = jobs_sql.job_from_row(
            conn.execute(
                f"SELECT {jobs_sql.JOB_COLUMNS} FROM jobs ORDER BY seq DESC LIMIT 1"
            ).fetchone()
        )
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            jobs_sql.queue_positions(conn, [job])
            seconds.append(time.perf_counter() - started)
        return statistics.median(seconds)
    finally:
        conn.close()


def pending_count(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        (count,) = conn.execute(
            f"SELECT COUNT(*) FROM jobs INDEXED BY jobs_pending WHERE {jobs_sql.PENDING}"
            " AND organization = ? AND provisioner = ? AND tags = ?",
            (QUEUE.organization, QUEUE.provisioner, tags_key(QUEUE.tags)),
        ).fetchone()
        return int(count)
    finally:
        conn.close()


def claim_figures(tmp: Path, sizes: list[int], claims: int) -> dict[int, dict[str, float]]:
    figures: dict[int, dict[str, float]] = {}
    for size in sizes:
        path = tmp / f"claims-{size}.db"
        trio.run(make_store, path)
        log(f"scale: filling a store with {size:,} pending jobs")
        fill_s = fill(path, size)
        assert pending_count(path) == size
        # Warm the page cache the same way for both: one pass of bare-SQL claims.
        sql = time_sql_claims(path, claims)
        position = time_queue_position(path)
        log(f"scale: {claims} claims through the store API with {size:,} pending")
        api = trio.run(time_claims, path, claims)
        figures[size] = {
            "fill_s": fill_s,
            "db_mb": path.stat().st_size / 1e6,
            "claim_ms": statistics.median(api) * 1000,
            "claim_p90_ms": statistics.quantiles(api, n=10)[8] * 1000,
            "sql_ms": statistics.median(sql) * 1000,
            "position_ms": position * 1000,
        }
        path.unlink()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--streams", type=int, default=100, help="per connection (≤ 100)")
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--claims", type=int, default=500)
    args = parser.parse_args()
    started = time.perf_counter()
    total = args.connections * args.streams

    with tempfile.TemporaryDirectory(prefix="provd-bench-") as tmp:
        with provd_server(Path(tmp) / "provd.db") as server:
            log(f"scale: opening {total} acquire streams on {args.connections} connections")
            streams = trio.run(idle_streams, server, args.connections, args.streams)
        claims = claim_figures(Path(tmp), [args.small, args.large], args.claims)

    small, large = claims[args.small], claims[args.large]
    ratio = large["claim_ms"] / small["claim_ms"]
    sql_ratio = large["sql_ms"] / small["sql_ms"]
    rss = streams["rss_mb"]
    per_stream_kb = (rss - streams["rss_before_mb"]) * 1024 / total
    table(
        f"scale: {total:,} idle AcquireJobWithCancel streams on {args.connections} HTTP/2"
        " connections",
        ["figure", "value"],
        [
            ["RSS idle, no streams (MB)", streams["rss_before_mb"]],
            [f"RSS with {total:,} streams (MB)", rss],
            ["per stream (KB)", per_stream_kb],
            ["server CPU while they wait (% of a core)", streams["idle_cpu_pct"]],
            ["time to open and register them all (s)", streams["open_s"]],
            ["answered with one empty AcquiredJob", f"{int(streams['answered']):,}"],
        ],
    )
    print(f"RSS {rss:.1f} MB (goal ≤ {GOAL_RSS_MB:.0f} MB: {goal(rss <= GOAL_RSS_MB)})")
    table(
        f"scale: claim time, median of {args.claims} claims (ms)",
        ["pending jobs", "store API", "p90", "SQL alone", "queue position", "fill (s)", "file MB"],
        [
            [
                f"{size:,}",
                c["claim_ms"],
                c["claim_p90_ms"],
                c["sql_ms"],
                c["position_ms"],
                c["fill_s"],
                c["db_mb"],
            ]
            for size, c in claims.items()
        ],
    )
    print(
        f"ratio {args.large:,} ÷ {args.small:,} = {ratio:.2f} (SQL alone {sql_ratio:.2f});"
        f" goal ≤ {GOAL_CLAIM_RATIO}: {goal(ratio <= GOAL_CLAIM_RATIO)}"
    )
    if streams["answered"] != total or streams["answered_with_data"] != total or streams["reset"]:
        raise SystemExit(f"streams: {streams} — every stream must get exactly one answer")
    emit(
        {
            "bench": "scale",
            "streams": total,
            "connections": args.connections,
            "rss_before_mb": round(streams["rss_before_mb"], 1),
            "rss_mb": round(rss, 1),
            "peak_rss_mb": round(streams["peak_rss_mb"], 1),
            "per_stream_kb": round(per_stream_kb, 1),
            "idle_cpu_pct": round(streams["idle_cpu_pct"], 2),
            "open_s": round(streams["open_s"], 2),
            "answered": int(streams["answered"]),
            "goal_rss_mb": GOAL_RSS_MB,
            "goal_rss_met": rss <= GOAL_RSS_MB,
            "claim_ms": {str(size): round(c["claim_ms"], 3) for size, c in claims.items()},
            "claim_sql_ms": {str(size): round(c["sql_ms"], 4) for size, c in claims.items()},
            "queue_position_ms": {
                str(size): round(c["position_ms"], 3) for size, c in claims.items()
            },
            "claim_ratio": round(ratio, 3),
            "claim_sql_ratio": round(sql_ratio, 3),
            "goal_claim_ratio": GOAL_CLAIM_RATIO,
            "goal_claim_met": ratio <= GOAL_CLAIM_RATIO,
            "machine": machine(),
            "wall_s": round(time.perf_counter() - started, 2),
        }
    )


if __name__ == "__main__":
    main()

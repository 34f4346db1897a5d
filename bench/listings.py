"""Listings: GetJob and a ListJobs page of pending jobs with 1k versus 1M jobs pending.

    .venv/bin/python bench/listings.py [--small 1000] [--large 1000000] [--rounds 5]
                                       [--gets 100] [--lists 20] [--page 500]

For each size, a new SQLite file gets provd's schema from a real `provd serve`
(127.0.0.1:0, durable defaults; it runs the migrations of `PROVD_BENCH_SRC` or this
checkout, stopped again at once), then is filled with plain SQL in bulk: one file,
one queue, `size` pending jobs (a recursive CTE, one INSERT; the queue-position
counters of provd/store/_ranks.py are filled the same way when the schema has them,
so the same script also measures a provd from before them). Then a server is started
on each (both at once) and this process calls them with the Connect client
(connectrpc, binary, HTTP/2), one call at a time, taking turns in `--rounds` rounds so
that both sizes see the same moments of a shared machine:

- GetJob of the newest pending job (last in its queue: the position a count would
  have to walk the whole queue for), `--gets` times;
- ListJobs with status=PENDING and limit=`--page` (the newest jobs: a page of the
  last `--page` positions), `--lists` times (`--lists 0`: none, for an old provd
  that takes minutes a page).

Each figure is the median wall time of its calls, as the client sees it.

    ratio = median with 1M pending ÷ median with 1k pending    (goal ≤ 1.5, each call)

The last line printed is one JSON object with the results.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ADMIN_TOKEN, emit, goal, log, machine, provd_server, rounded, table

from provd.client.connect import http2_client, job_client
from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.model import Queue, normalize_tags, tags_key

GOAL_RATIO = 1.5
QUEUE = Queue("bench", "echo", normalize_tags({}))
FILE_HASH = "0" * 64


def job_id(n: int) -> str:
    """The id of the n-th job (1-based): a valid UUID, as GetJob requires."""
    return f"00000000-0000-4000-8000-{n:012x}"


def make_schema(path: Path) -> None:
    """Let the server (the version under test) create the file and its schema."""
    with provd_server(path):
        pass


def fill(path: Path, pending: int) -> float:
    """`pending` jobs in QUEUE in one INSERT … SELECT; returns the seconds it took."""
    started = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
    ranked = "queue_ordinal" in columns
    key = tags_key(QUEUE.tags)
    now = int(time.time() * 1000) - pending
    conn.execute("BEGIN")
    conn.execute(
        "INSERT INTO files (hash, size, mimetype, data, created_at) VALUES (?, 0, ?, ?, 0)",
        (FILE_HASH, "application/x-tar", b""),
    )
    conn.execute(
        "INSERT INTO queues (organization, provisioner, tags) VALUES (?, ?, ?)",
        (QUEUE.organization, QUEUE.provisioner, key),
    )
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count)"
        " INSERT INTO jobs (id, type, provisioner, organization, tags, file_hash,"
        " initiator_id, initiator_name, priority, input, trace_metadata, created_at,"
        f" updated_at{', queue_ordinal' if ranked else ''})"
        " SELECT printf('00000000-0000-4000-8000-%012x', i), 'template_import', :prov,"
        " :org, :tags, :file, '', 'bench', 0, x'', '{}', :now + i, :now + i"
        f"{', i' if ranked else ''} FROM n",
        {
            "count": pending,
            "prov": QUEUE.provisioner,
            "org": QUEUE.organization,
            "tags": key,
            "file": FILE_HASH,
            "now": now,
        },
    )
    if ranked:
        conn.execute(
            "INSERT INTO queue_levels (organization, provisioner, tags, priority, last, head,"
            " pending, marks) VALUES (?, ?, ?, 0, ?, 0, ?, 0)",
            (QUEUE.organization, QUEUE.provisioner, key, pending, pending),
        )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - started


def timed(call: Callable[[], object], repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return seconds


class Target:
    """One running server with `pending` jobs, and the calls measured on it."""

    def __init__(self, url: str, pending: int, page: int) -> None:
        self.pending = pending
        self.client = job_client(url, ADMIN_TOKEN, http_client=http2_client())
        self.get = pb.GetJobRequest(id=job_id(pending))  # the newest: last in its queue
        self.listing = pb.ListJobsRequest(status=pb.JOB_STATUS_PENDING, limit=page)
        self.get_s: list[float] = []
        self.list_s: list[float] = []

    def check(self, lists: bool) -> None:
        job = self.client.get_job(self.get)
        assert (job.queue_position, job.queue_size) == (self.pending, self.pending), job
        if lists:
            jobs = self.client.list_jobs(self.listing).jobs
            assert len(jobs) == min(self.listing.limit, self.pending)
            assert jobs[-1].queue_position == self.pending - len(jobs) + 1

    def round(self, gets: int, lists: int) -> None:
        self.get_s += timed(lambda: self.client.get_job(self.get), gets)
        self.list_s += timed(lambda: self.client.list_jobs(self.listing), lists)

    def figures(self) -> dict[str, float]:
        figures = {"get_ms": statistics.median(self.get_s) * 1000}
        if self.list_s:
            figures["list_ms"] = statistics.median(self.list_s) * 1000
            figures["list_per_job_ms"] = figures["list_ms"] / min(self.listing.limit, self.pending)
        return figures


def measure(
    paths: dict[int, Path], gets: int, lists: int, page: int, rounds: int
) -> dict[int, dict[str, float]]:
    """Both servers run at once and take turns, round by round, so that both sizes
    see the same moments of a shared machine; one unmeasured round warms them."""
    with contextlib.ExitStack() as stack:
        targets = [
            Target(stack.enter_context(provd_server(path)).url, size, page)
            for size, path in paths.items()
        ]
        for target in targets:
            target.check(lists > 0)
            target.round(5, 1 if lists else 0)
            target.get_s, target.list_s = [], []
        for n in range(rounds):
            log(f"listings: round {n + 1}/{rounds}")
            for target in targets:
                target.round(-(-gets // rounds), -(-lists // rounds))
        return {target.pending: target.figures() for target in targets}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--gets", type=int, default=100)
    parser.add_argument("--lists", type=int, default=20)
    parser.add_argument("--page", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    figures: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="provd-listings-") as tmp:
        paths = {}
        for size in (args.small, args.large):
            paths[size] = path = Path(tmp) / f"listings-{size}.db"
            make_schema(path)
            log(f"listings: filling a store with {size:,} pending jobs")
            figures[size] = {"fill_s": fill(path, size), "db_mb": path.stat().st_size / 1e6}
        log(f"listings: {args.gets} GetJob, {args.lists} ListJobs per size, {args.rounds} rounds")
        for size, measured in measure(paths, args.gets, args.lists, args.page, args.rounds).items():
            figures[size].update(measured)
    small, large = figures[args.small], figures[args.large]
    get_ratio = large["get_ms"] / small["get_ms"]
    list_ratio = large.get("list_ms", 0.0) / small.get("list_ms", 1.0)
    table(
        f"listings: median ms over the Connect client ({args.small:,} vs {args.large:,} pending)",
        ["call", f"{args.small:,}", f"{args.large:,}", "ratio", f"goal ≤ {GOAL_RATIO}"],
        [
            [
                "GetJob, newest pending",
                small["get_ms"],
                large["get_ms"],
                get_ratio,
                goal(get_ratio <= GOAL_RATIO),
            ],
            [
                f"ListJobs, {args.page} pending",
                small.get("list_ms", "-"),
                large.get("list_ms", "-"),
                list_ratio if args.lists else "-",
                goal(list_ratio <= GOAL_RATIO) if args.lists else "",
            ],
            ["fill (s)", small["fill_s"], large["fill_s"], "", ""],
        ],
    )
    emit(
        {
            "bench": "listings",
            "machine": machine(),
            "sizes": {str(size): rounded(f, 3) for size, f in figures.items()},
            "get_ratio": round(get_ratio, 3),
            "list_ratio": round(list_ratio, 3),
            "goal_ratio": GOAL_RATIO,
            "met": get_ratio <= GOAL_RATIO and list_ratio <= GOAL_RATIO and args.lists > 0,
        }
    )


if __name__ == "__main__":
    main()

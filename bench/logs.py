"""Log throughput: durable log lines/s through UpdateJob in batches of 100 lines.

    .venv/bin/python bench/logs.py [--daemons 8] [--seconds 10] [--lines 100]

One `provd serve` subprocess (127.0.0.1:0, a new SQLite file, durable defaults:
synchronous=full, so a line counts once its UpdateJob answered, i.e. once its
transaction was fsynced). `--daemons` threads in this process, each a daemon holding
its own running jobs, send UpdateJob with `--lines` lines to them as fast as the
server answers, through provd.client's sync Connect client (protobuf over cleartext
HTTP/2, what `provd daemon` uses). Each job gets at most 0.9 MB of log text, under
provd's 1 MiB per-job log cap, so no line is dropped or replaced by the truncation
marker.

For scale, the same threads then send UpdateJob with no lines to the same jobs: the
same RPC, the same checks and the same write, minus the lines. Their ratio shows what
the lines themselves cost. After the server stopped, the lines are counted in its
SQLite file and must all be there. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DAEMON_PSK,
    emit,
    goal,
    log,
    machine,
    profiled,
    provd_server,
    rounded,
    table,
)
from _logload import LoadResult, count_lines, provd_held_jobs, run_load

from provd.client.connect import daemon_client

GOAL_LINES_PER_S = 100_000


def cpu_columns(result: LoadResult) -> list[object]:
    s = result.server_cpu
    return [
        sum(s.values()),
        s.get("main", 0.0),
        s.get("writer", 0.0),
        s.get("workers", 0.0),
        result.client_cpu,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--daemons", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--lines", type=int, default=100)
    parser.add_argument("--jobs-per-daemon", type=int, default=16)
    parser.add_argument("--profile", help="py-spy the server during the measured run")
    args = parser.parse_args()
    started = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="provd-bench-") as tmp:
        db_path = Path(tmp) / "provd.db"
        with provd_server(db_path) as server:
            log(f"logs: {args.daemons} daemons acquire {args.jobs_per_daemon} jobs each")
            held = provd_held_jobs(server.url, args.daemons, args.jobs_per_daemon)
            clients = [
                daemon_client(server.url, DAEMON_PSK, name=f"bench-{i}")
                for i in range(args.daemons)
            ]
            senders = [client.update_job for client in clients]
            used: list[dict[str, int]] = [{} for _ in clients]
            log("logs: warm-up")
            warmup = run_load(server.pid, senders, held, 1.0, args.lines, used)
            log(f"logs: {args.seconds} s of UpdateJob with {args.lines} lines")
            with profiled(server.pid, args.profile):
                loaded = run_load(server.pid, senders, held, args.seconds, args.lines, used)
            log(f"logs: {args.seconds / 2} s of UpdateJob with no lines")
            empty = run_load(server.pid, senders, held, args.seconds / 2, 0, used)
            rss_mb = server.rss_mb()
        stored = count_lines(db_path)

    expected = warmup.lines + loaded.lines
    lines_per_s = loaded.lines_per_s
    header = ["run", "UpdateJob/s", "lines/s", "server cpu", "main", "writer", "workers", "client"]
    table(
        f"logs: UpdateJob from {args.daemons} daemons, synchronous=full (cpu in cores)",
        header,
        [
            [f"{args.lines} lines each", loaded.updates_per_s, lines_per_s, *cpu_columns(loaded)],
            ["no lines", empty.updates_per_s, 0, *cpu_columns(empty)],
        ],
    )
    print(
        f"durable lines/s = {lines_per_s:,.0f} (goal ≥ {GOAL_LINES_PER_S:,}:"
        f" {goal(lines_per_s >= GOAL_LINES_PER_S)}); stored {stored:,} of {expected:,} lines sent;"
        f" {args.lines} lines cost {1 - loaded.updates_per_s / empty.updates_per_s:.0%} of the"
        " UpdateJob rate"
    )
    if stored != expected:
        raise SystemExit(f"lines lost: {expected} sent and acknowledged, {stored} stored")
    if loaded.ran_out:
        log(f"logs: {loaded.ran_out} threads ran out of jobs; raise --jobs-per-daemon")
    emit(
        {
            "bench": "logs",
            "daemons": args.daemons,
            "lines_per_update": args.lines,
            "seconds": round(loaded.seconds, 2),
            "lines_per_s": round(lines_per_s),
            "updates_per_s": round(loaded.updates_per_s, 1),
            "empty_updates_per_s": round(empty.updates_per_s, 1),
            "goal_lines_per_s": GOAL_LINES_PER_S,
            "goal_met": lines_per_s >= GOAL_LINES_PER_S,
            "lines_stored": stored,
            "lines_sent": expected,
            "server_cpu_cores": rounded(loaded.server_cpu),
            "client_cpu_cores": round(loaded.client_cpu, 2),
            "server_rss_mb": round(rss_mb, 1),
            "machine": machine(),
            "wall_s": round(time.perf_counter() - started, 2),
        }
    )


if __name__ == "__main__":
    main()

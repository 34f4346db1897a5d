"""Log throughput: durable log lines/s through UpdateJob, in the reference daemon's
largest batches, with one and with two `--workers`.

    .venv/bin/python bench/logs.py [--daemons 8] [--seconds 10] [--lines 1000]
                                   [--workers 1,2] [--jobs-per-daemon 32] [--profile F]

One `provd serve` subprocess per entry of `--workers` (127.0.0.1:0, a new SQLite file
each, durable defaults: synchronous=full, so a line counts once its UpdateJob
answered, i.e. once its transaction was fsynced), all started before the load. The
load is bench/peer.py's: `--daemons` threads in this process, each a daemon holding
its own running jobs, send UpdateJob with `--lines` lines to them as fast as the
server answers, over grpcio, one HTTP/2 connection per daemon, pinned half to each
worker. `--lines` defaults to the reference daemon's largest batch
(provd/client/daemon/reporting.py: what `provd daemon` sends when a provisioner
writes fast). Each job gets at most 0.9 MB of log text, under provd's 1 MiB per-job
log budget, so no line is dropped or replaced by the truncation marker.

The servers take turns (1 worker, 2 workers, 1, 2; `--seconds` in all per server) so
drift on a shared machine hits all alike. Afterwards every job's lines are read back
through provd.v1's StreamJobLogs (ids increasing, none missing), and, once the
servers stopped, counted in their files: both must equal what was acknowledged.

CPU is in cores, summed over the server's processes (the supervisor and its
workers), by thread: the trio loop (main), the SQLite writer, the reader threads.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    emit,
    goal,
    log,
    machine,
    process_tree,
    profiled,
    provd_server,
    rounded,
    table,
)
from _logload import (
    LoadResult,
    combine,
    count_provd_lines,
    provd_held_jobs,
    read_back,
    run_turn,
)

from provd.client.daemon.reporting import ReportingSettings

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
    parser.add_argument("--seconds", type=float, default=10.0, help="per server, in 2 turns")
    parser.add_argument("--lines", type=int, default=ReportingSettings().max_batch_lines)
    parser.add_argument("--workers", default="1,2", help="comma-separated: one server each")
    parser.add_argument("--jobs-per-daemon", type=int, default=32)
    parser.add_argument("--profile", help="py-spy the first server during its first turn")
    args = parser.parse_args()
    # run_turn's options: a connection per daemon, pinned half to each worker.
    args.connections, args.kernel_spread = "per-daemon", False
    counts = [int(n) for n in args.workers.split(",")]
    started_at = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="provd-bench-") as tmp:
        paths = {n: Path(tmp) / f"provd-{n}.db" for n in counts}
        with contextlib.ExitStack() as stack:
            servers = {
                n: stack.enter_context(provd_server(paths[n], "--workers", str(n))) for n in counts
            }
            held, used, workers = {}, {}, {}
            for n, server in servers.items():
                workers[n] = process_tree(server.pid)[1:]
                log(f"logs: --workers {n}: {args.daemons} daemons acquire {args.jobs_per_daemon}")
                held[n] = provd_held_jobs(server.url, args.daemons, args.jobs_per_daemon)
                used[n] = [{} for _ in range(args.daemons)]

            def turn(n: int, seconds: float) -> LoadResult:
                server = servers[n]
                pids = workers[n] if n > 1 else []
                result, _, _ = run_turn(
                    server.pid, server.target, held[n], seconds, args, used[n], pids
                )
                return result

            log(f"logs: warm-up, UpdateJob with {args.lines} lines")
            warm = {n: turn(n, 1.0) for n in counts}
            runs: dict[int, list[LoadResult]] = {n: [] for n in counts}
            for k in range(2):
                log(f"logs: turn {k + 1}, {args.seconds / 2} s per server")
                for n in counts:
                    # --profile records the first server's first turn.
                    path = args.profile if (k, n) == (0, counts[0]) else None
                    with profiled(servers[n].pid, path):
                        runs[n].append(turn(n, args.seconds / 2))
            results = {n: combine(r) for n, r in runs.items()}
            log("logs: reading every line back through StreamJobLogs")
            read = {n: sum(read_back(servers[n].url, held[n]).values()) for n in counts}
        stored = {n: count_provd_lines(path) for n, path in paths.items()}

    sent = {n: warm[n].lines + results[n].lines for n in counts}
    table(
        f"logs: UpdateJob with {args.lines} lines from {args.daemons} daemons,"
        " synchronous=full (cpu in cores)",
        ["server", "UpdateJob/s", "lines/s", "server cpu", "main", "writer", "readers", "client"],
        [
            [f"--workers {n}", r.updates_per_s, r.lines_per_s, *cpu_columns(r)]
            for n, r in results.items()
        ],
    )
    best = max(r.lines_per_s for r in results.values())
    for n in counts:
        print(
            f"--workers {n}: durable lines/s = {results[n].lines_per_s:,.0f};"
            f" acknowledged {sent[n]:,}, read back {read[n]:,}, in the file {stored[n]:,}"
        )
    if len(counts) > 1:
        base = results[counts[0]].lines_per_s
        print(
            ", ".join(
                f"--workers {n} ÷ {counts[0]} = {results[n].lines_per_s / base:.2f}"
                for n in counts[1:]
            )
        )
    print(
        f"best {best:,.0f} lines/s (goal ≥ {GOAL_LINES_PER_S:,}: {goal(best >= GOAL_LINES_PER_S)})"
    )
    for n in counts:
        if not sent[n] == read[n] == stored[n]:
            raise SystemExit(
                f"--workers {n}: lines lost: {sent[n]} acknowledged,"
                f" {read[n]} read back, {stored[n]} stored"
            )
        if results[n].ran_out:
            log(f"logs: --workers {n}: {results[n].ran_out} threads ran out of jobs")
    emit(
        {
            "bench": "logs",
            "daemons": args.daemons,
            "lines_per_update": args.lines,
            "seconds_per_server": round(args.seconds, 2),
            "lines_per_s": {n: round(r.lines_per_s) for n, r in results.items()},
            "updates_per_s": {n: round(r.updates_per_s, 1) for n, r in results.items()},
            "goal_lines_per_s": GOAL_LINES_PER_S,
            "goal_met": best >= GOAL_LINES_PER_S,
            "lines_sent": sent,
            "lines_read_back": read,
            "lines_stored": stored,
            "server_cpu_cores": {n: rounded(r.server_cpu) for n, r in results.items()},
            "client_cpu_cores": {n: round(r.client_cpu, 2) for n, r in results.items()},
            "machine": machine(),
            "wall_s": round(time.perf_counter() - started_at, 2),
        }
    )


if __name__ == "__main__":
    main()

"""provd against the hand-rolled alternative, on the same UpdateJob log load.

    .venv/bin/python bench/peer.py [--daemons 8] [--seconds 12] [--lines 100]
                                   [--workers N|auto] [--connections auto|shared|per-daemon]
                                   [--kernel-spread]

Two servers run side by side as subprocesses on 127.0.0.1, each with a new SQLite
file in WAL mode with synchronous=FULL:

    provd      `python -m provd serve` (durable defaults; `--workers N|auto` is passed
               on: N worker processes on one port and the one file, `auto` one per core)
    baseline   bench/peer_server.py: grpc.aio + sqlite3, UpdateJob only, appends the
               lines in one transaction per call and answers canceled=false

The load is bench/logs.py's (UpdateJob with `--lines` lines, `--daemons` threads,
each to its own jobs) sent by the same client to both: grpcio (C core), one channel
per daemon, over cleartext HTTP/2 with provd's daemon metadata. provd speaks gRPC,
so neither server gets a client the other lacks. The servers take turns (provd,
baseline, provd, baseline; `--seconds` in all per server) so drift on a shared
machine hits both alike; only one is loaded at a time. Afterwards the lines are
counted in both files.

Connections: grpcio's channels to one target share one TCP connection (its global
subchannel pool), so by default the daemons' calls are streams of one HTTP/2
connection, as this benchmark always measured (`--connections shared`). One
connection goes to one `--workers` process, so with more than one worker each
channel gets a connection of its own (`--connections per-daemon`, for both servers),
pinned half to each worker: /proc tells which worker accepted a connection, and it
is reopened until it lands on the wanted one; `--kernel-spread` leaves it to the
kernel's SO_REUSEPORT hash and prints the split. `--connections auto` (the default)
is `shared` with one worker, `per-daemon` with more. Channels are opened anew for
each turn (provd closes a connection idle for 5 s). The server's CPU is that of all
its processes (the supervisor and its workers).

    ratio = provd lines/s ÷ baseline lines/s      (goal ≥ 0.75)

CPU is in cores: the server's, this process's (the client), and "other", the whole
machine's busy CPU (/proc/stat) minus those two: other work on a shared machine, and
the idle server. On 2 cores, what the client and other work take the servers lack.

The last line printed is one JSON object with the results.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    emit,
    goal,
    log,
    machine,
    process_tree,
    provd_server,
    rounded,
    started,
    status_kb,
    table,
)
from _logload import (
    LoadResult,
    combine,
    count_lines,
    count_provd_lines,
    provd_held_jobs,
    run_turn,
    worker_count,
)

GOAL_RATIO = 0.75


def row(name: str, result: LoadResult, busy: float) -> list[object]:
    server = sum(result.server_cpu.values())
    return [
        name,
        result.updates_per_s,
        result.lines_per_s,
        server,
        result.client_cpu,
        busy - server - result.client_cpu,
        busy,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--daemons", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=12.0, help="per server, in 2 turns")
    parser.add_argument("--lines", type=int, default=100)
    parser.add_argument("--jobs-per-daemon", type=int, default=16)
    parser.add_argument(
        "--workers",
        type=worker_count,
        default="1",
        help="provd serve --workers: processes on the one port and file (auto: one per core)",
    )
    parser.add_argument(
        "--connections",
        choices=["auto", "shared", "per-daemon"],
        default="auto",
        help="one connection for all daemons, or one each (auto: shared with one worker)",
    )
    parser.add_argument(
        "--kernel-spread",
        action="store_true",
        help="with several workers, let the kernel spread the connections (default: half each)",
    )
    args = parser.parse_args()
    if args.connections == "auto":
        args.connections = "shared" if args.workers == "1" else "per-daemon"
    started_at = time.perf_counter()
    turn = args.seconds / 2
    serve_args = [] if args.workers == "1" else ["--workers", args.workers]

    with tempfile.TemporaryDirectory(prefix="provd-bench-") as tmp:
        provd_db, peer_db = Path(tmp) / "provd.db", Path(tmp) / "peer.db"
        peer_command = [
            sys.executable,
            str(Path(__file__).with_name("peer_server.py")),
            str(peer_db),
        ]
        with provd_server(provd_db, *serve_args) as provd, started(peer_command) as peer:
            workers = process_tree(provd.pid)[1:]
            if serve_args:
                log(f"peer: provd --workers {args.workers}: worker pids {workers}")
            log(f"peer: {args.daemons} daemons acquire {args.jobs_per_daemon} provd jobs each")
            provd_jobs = provd_held_jobs(provd.url, args.daemons, args.jobs_per_daemon)
            peer_jobs = [
                [str(uuid.uuid4()) for _ in range(args.jobs_per_daemon)]
                for _ in range(args.daemons)
            ]
            provd_used: list[dict[str, int]] = [{} for _ in range(args.daemons)]
            peer_used: list[dict[str, int]] = [{} for _ in range(args.daemons)]

            def provd_turn(seconds: float) -> tuple[LoadResult, list[int], float]:
                return run_turn(
                    provd.pid, provd.target, provd_jobs, seconds, args, provd_used, workers
                )

            def peer_turn(seconds: float) -> tuple[LoadResult, list[int], float]:
                return run_turn(peer.pid, peer.target, peer_jobs, seconds, args, peer_used)

            log(f"peer: warm-up ({args.connections} connections)")
            sent = {"provd": provd_turn(1.0)[0].lines, "baseline": peer_turn(1.0)[0].lines}
            runs: dict[str, list[LoadResult]] = {"provd": [], "baseline": []}
            busy = {"provd": 0.0, "baseline": 0.0}
            splits: list[list[int]] = []
            for n in range(2):
                log(f"peer: turn {n + 1}: provd, then baseline, {turn} s each")
                for name, take_turn in (("provd", provd_turn), ("baseline", peer_turn)):
                    result, split, busy_s = take_turn(turn)
                    runs[name].append(result)
                    busy[name] += busy_s
                    if split:
                        splits.append(split)
            rss = {
                "provd": sum(status_kb(pid, "VmRSS") for pid in process_tree(provd.pid)) / 1024,
                "baseline": peer.rss_mb(),
            }
        results = {name: combine(turns) for name, turns in runs.items()}
        for name, result in results.items():
            sent[name] += result.lines
        stored = {"provd": count_provd_lines(provd_db), "baseline": count_lines(peer_db)}

    ratio = results["provd"].lines_per_s / results["baseline"].lines_per_s
    table(
        f"peer: UpdateJob with {args.lines} lines from {args.daemons} grpcio daemons,"
        f" provd --workers {args.workers}, {args.connections} connections (cpu in cores)",
        ["server", "UpdateJob/s", "lines/s", "server cpu", "client cpu", "other", "machine"],
        [row(name, result, busy[name] / result.seconds) for name, result in results.items()],
    )
    if splits:
        spread = "kernel" if args.kernel_spread else "pinned"
        print(f"connections per provd worker, per turn ({spread}): {splits}")
    print(f"ratio provd/baseline = {ratio:.2f} (goal ≥ {GOAL_RATIO}: {goal(ratio >= GOAL_RATIO)})")
    for name in results:
        if stored[name] != sent[name]:
            raise SystemExit(f"{name}: {sent[name]} lines acknowledged, {stored[name]} stored")
    emit(
        {
            "bench": "peer",
            "daemons": args.daemons,
            "lines_per_update": args.lines,
            "client": "grpcio",
            "workers": args.workers,
            "worker_pids": workers,
            "connections": args.connections,
            "connection_splits": splits,
            "provd_lines_per_s": round(results["provd"].lines_per_s),
            "baseline_lines_per_s": round(results["baseline"].lines_per_s),
            "provd_updates_per_s": round(results["provd"].updates_per_s, 1),
            "baseline_updates_per_s": round(results["baseline"].updates_per_s, 1),
            "ratio": round(ratio, 3),
            "goal_ratio": GOAL_RATIO,
            "goal_met": ratio >= GOAL_RATIO,
            "provd_server_cpu_cores": rounded(results["provd"].server_cpu),
            "baseline_server_cpu_cores": round(sum(results["baseline"].server_cpu.values()), 2),
            "client_cpu_cores": {name: round(r.client_cpu, 2) for name, r in results.items()},
            "machine_busy_cores": {
                name: round(busy[name] / r.seconds, 2) for name, r in results.items()
            },
            "rss_mb": rounded(rss, 1),
            "lines_stored": stored,
            "machine": machine(),
            "wall_s": round(time.perf_counter() - started_at, 2),
        }
    )


if __name__ == "__main__":
    main()

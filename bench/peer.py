"""provd against the hand-rolled alternative, on the same UpdateJob log load.

    .venv/bin/python bench/peer.py [--daemons 8] [--seconds 12] [--lines 100]

Two servers run side by side as subprocesses on 127.0.0.1, each with a new SQLite
file in WAL mode with synchronous=FULL:

    provd      `python -m provd serve` (durable defaults)
    baseline   bench/peer_server.py: grpc.aio + sqlite3, UpdateJob only, appends the
               lines in one transaction per call and answers canceled=false

The load is bench/logs.py's (UpdateJob with `--lines` lines, `--daemons` threads,
each to its own jobs) sent by the same client to both: grpcio (C core), one channel
per daemon, over cleartext HTTP/2 with provd's daemon metadata. provd speaks gRPC,
so neither server gets a client the other lacks. The servers take turns (provd,
baseline, provd, baseline; `--seconds` in all per server) so drift on a shared
machine hits both alike; only one is loaded at a time. Afterwards the lines are
counted in both files.

    ratio = provd lines/s ÷ baseline lines/s      (goal ≥ 0.75)

The last line printed is one JSON object with the results.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import grpc
from _common import (
    emit,
    goal,
    log,
    machine,
    provd_server,
    rounded,
    started,
    table,
)
from _logload import (
    LoadResult,
    Send,
    combine,
    count_lines,
    daemon_metadata,
    provd_held_jobs,
    run_load,
)

from provd.gen.provisionerd import provisionerd_pb2 as pd

GOAL_RATIO = 0.75
UPDATE_JOB = "/provisionerd.ProvisionerDaemon/UpdateJob"


def grpc_senders(target: str, daemons: int) -> tuple[list[grpc.Channel], list[Send]]:
    channels, senders = [], []
    for index in range(daemons):
        channel = grpc.insecure_channel(target)
        call = channel.unary_unary(
            UPDATE_JOB,
            request_serializer=pd.UpdateJobRequest.SerializeToString,
            response_deserializer=pd.UpdateJobResponse.FromString,
        )
        metadata = daemon_metadata(f"bench-{index}")

        def send(
            request: pd.UpdateJobRequest,
            call: grpc.UnaryUnaryMultiCallable = call,
            metadata: Sequence[tuple[str, str]] = metadata,
        ) -> pd.UpdateJobResponse:
            return call(request, metadata=metadata, timeout=60)

        channels.append(channel)
        senders.append(send)
    return channels, senders


def row(name: str, result: LoadResult) -> list[object]:
    return [
        name,
        result.updates_per_s,
        result.lines_per_s,
        sum(result.server_cpu.values()),
        result.client_cpu,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--daemons", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=12.0, help="per server, in 2 turns")
    parser.add_argument("--lines", type=int, default=100)
    parser.add_argument("--jobs-per-daemon", type=int, default=16)
    args = parser.parse_args()
    started_at = time.perf_counter()
    turn = args.seconds / 2

    with tempfile.TemporaryDirectory(prefix="provd-bench-") as tmp:
        provd_db, peer_db = Path(tmp) / "provd.db", Path(tmp) / "peer.db"
        peer_command = [
            sys.executable,
            str(Path(__file__).with_name("peer_server.py")),
            str(peer_db),
        ]
        with provd_server(provd_db) as provd, started(peer_command) as peer:
            log(f"peer: {args.daemons} daemons acquire {args.jobs_per_daemon} provd jobs each")
            provd_jobs = provd_held_jobs(provd.url, args.daemons, args.jobs_per_daemon)
            peer_jobs = [
                [str(uuid.uuid4()) for _ in range(args.jobs_per_daemon)]
                for _ in range(args.daemons)
            ]
            provd_channels, provd_send = grpc_senders(provd.target, args.daemons)
            peer_channels, peer_send = grpc_senders(peer.target, args.daemons)
            provd_used: list[dict[str, int]] = [{} for _ in range(args.daemons)]
            peer_used: list[dict[str, int]] = [{} for _ in range(args.daemons)]
            log("peer: warm-up")
            sent = {
                "provd": run_load(
                    provd.pid, provd_send, provd_jobs, 1.0, args.lines, provd_used
                ).lines,
                "baseline": run_load(
                    peer.pid, peer_send, peer_jobs, 1.0, args.lines, peer_used
                ).lines,
            }
            runs: dict[str, list[LoadResult]] = {"provd": [], "baseline": []}
            for n in range(2):
                log(f"peer: turn {n + 1}: provd, then baseline, {turn} s each")
                runs["provd"].append(
                    run_load(provd.pid, provd_send, provd_jobs, turn, args.lines, provd_used)
                )
                runs["baseline"].append(
                    run_load(peer.pid, peer_send, peer_jobs, turn, args.lines, peer_used)
                )
            for channel in provd_channels + peer_channels:
                channel.close()
            rss = {"provd": provd.rss_mb(), "baseline": peer.rss_mb()}
        results = {name: combine(turns) for name, turns in runs.items()}
        for name, result in results.items():
            sent[name] += result.lines
        stored = {"provd": count_lines(provd_db), "baseline": count_lines(peer_db)}

    ratio = results["provd"].lines_per_s / results["baseline"].lines_per_s
    table(
        f"peer: UpdateJob with {args.lines} lines from {args.daemons} grpcio daemons"
        " (cpu in cores)",
        ["server", "UpdateJob/s", "lines/s", "server cpu", "client cpu"],
        [row(name, result) for name, result in results.items()],
    )
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
            "provd_lines_per_s": round(results["provd"].lines_per_s),
            "baseline_lines_per_s": round(results["baseline"].lines_per_s),
            "provd_updates_per_s": round(results["provd"].updates_per_s, 1),
            "baseline_updates_per_s": round(results["baseline"].updates_per_s, 1),
            "ratio": round(ratio, 3),
            "goal_ratio": GOAL_RATIO,
            "goal_met": ratio >= GOAL_RATIO,
            "provd_server_cpu_cores": rounded(results["provd"].server_cpu),
            "baseline_server_cpu_cores": round(sum(results["baseline"].server_cpu.values()), 2),
            "rss_mb": rounded(rss, 1),
            "lines_stored": stored,
            "machine": machine(),
            "wall_s": round(time.perf_counter() - started_at, 2),
        }
    )


if __name__ == "__main__":
    main()

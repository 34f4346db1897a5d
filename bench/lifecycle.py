"""Lifecycle throughput: jobs/s through create → acquire → UpdateJob → complete, and
how close that comes to the RPC layer's own ceiling.

    .venv/bin/python bench/lifecycle.py [--daemons 8] [--jobs 1000] [--rounds 5]
                                        [--ceiling-seconds 10] [--profile out.svg]

One `provd serve` subprocess (127.0.0.1:0, a new SQLite file, durable defaults:
synchronous=full). `--daemons` worker threads in this process each loop: CreateJob
(JobService), open AcquireJobWithCancel and take the job it answers with, UpdateJob
with 10 log lines, CompleteJob. That is 4 RPCs per job, the acquire being a bidi
stream. Every call uses provd.client's sync Connect clients (protobuf) over cleartext
HTTP/2, the only transport a daemon can use for its stream, so the whole run is one
client stack.

The ceiling is the same workers on the same clients calling the cheapest real RPC:
GetJob on a completed job (one primary-key read on a reader thread; no write, no
fsync, no queue position, no pending reason). Every RPC provd serves touches the
store at least once; this one does the least. The two alternate in `--rounds`
rounds (ceiling, then jobs), so drift on a shared machine hits both alike.
UpdateJob with no logs (the write path: the writer thread and one group commit) is
shown beside them.

    ratio = lifecycle_jobs_per_s x 4 ÷ ceiling_rpcs_per_s      (goal ≥ 0.8)

The same ratio is also given in server CPU (ms per GetJob x 4 ÷ ms per job), which
other load on the machine disturbs much less than rates. CPU is read from /proc: the
server per thread (trio's main thread, the SQLite writer, the worker threads), and
this client process. The clients are threads in this one process: if it stays well
below one core while the server uses about one (its threads share one GIL), the
server is the limit, not the client's GIL. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ADMIN_TOKEN,
    DAEMON_PSK,
    Server,
    diff,
    emit,
    goal,
    log,
    machine,
    profiled,
    provd_server,
    rounded,
    table,
    template_tar,
)

from provd.client.connect import AcquireRequests, daemon_client, http2_client, job_client
from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.gen.provisionerd import provisionerd_pb2 as pd
from provd.gen.provisionersdk import provisioner_pb2 as sdk

RPCS_PER_JOB = 4
LOG_LINES = 10
GOAL_RATIO = 0.8


class Worker:
    """One daemon (and the admin client that creates its share of the jobs)."""

    def __init__(self, url: str, index: int) -> None:
        self.daemon = daemon_client(url, DAEMON_PSK, name=f"bench-{index}")
        self.jobs = job_client(url, ADMIN_TOKEN, http_client=http2_client())

    def acquire(self) -> str:
        requests = AcquireRequests()
        job_id = ""
        for acquired in self.daemon.acquire_job_with_cancel(requests):
            job_id = acquired.job_id
        requests.close()
        assert job_id, "the acquire stream ended without a job"
        return job_id

    def lifecycle(self, create: pb.CreateJobRequest) -> None:
        self.jobs.create_job(create)
        job_id = self.acquire()
        now = int(time.time() * 1000)
        logs = [
            pd.Log(
                source=pd.PROVISIONER,
                level=sdk.INFO,
                created_at=now,
                stage="Applying",
                output=f"null_resource.example[{n}]: Creation complete after 0s [id=42{n}]",
            )
            for n in range(LOG_LINES)
        ]
        response = self.daemon.update_job(pd.UpdateJobRequest(job_id=job_id, logs=logs))
        assert not response.canceled
        self.daemon.complete_job(
            pd.CompletedJob(job_id=job_id, template_import=pd.CompletedJob.TemplateImport())
        )


def run_threads(count: int, body: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            body(index)
        except BaseException as error:  # report it from the main thread
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


class Measured:
    """Wall time, server CPU per thread kind and this process's CPU over one phase."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def __enter__(self) -> Measured:
        self.threads0 = self.server.threads_cpu_s()
        self.client0 = sum(os.times()[:2])
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
        self.server_cpu = {
            k: v / self.seconds for k, v in diff(self.server.threads_cpu_s(), self.threads0).items()
        }
        self.client_cpu = (sum(os.times()[:2]) - self.client0) / self.seconds

    @staticmethod
    def combine(phases: list[Measured]) -> Measured:
        """Several phases as one: total time, time-weighted CPU."""
        combined = Measured(phases[0].server)
        combined.seconds = sum(p.seconds for p in phases)
        kinds = {k for p in phases for k in p.server_cpu}
        combined.server_cpu = {
            k: sum(p.server_cpu.get(k, 0.0) * p.seconds for p in phases) / combined.seconds
            for k in kinds
        }
        combined.client_cpu = sum(p.client_cpu * p.seconds for p in phases) / combined.seconds
        return combined

    def cpu_columns(self) -> list[object]:
        s = self.server_cpu
        total = sum(s.values())
        return [
            total,
            s.get("main", 0.0),
            s.get("writer", 0.0),
            s.get("workers", 0.0),
            self.client_cpu,
        ]


def lifecycle_phase(
    server: Server, workers: list[Worker], create: pb.CreateJobRequest, jobs: int
) -> Measured:
    remaining = [jobs]
    lock = threading.Lock()

    def take() -> bool:
        with lock:
            remaining[0] -= 1
            return remaining[0] >= 0

    def body(index: int) -> None:
        while take():
            workers[index].lifecycle(create)

    with Measured(server) as measured:
        run_threads(len(workers), body)
    return measured


def rpc_phase(
    server: Server,
    workers: list[Worker],
    make_call: Callable[[Worker], Callable[[], object]],
    seconds: float,
) -> tuple[Measured, int]:
    calls = [make_call(worker) for worker in workers]
    counts = [0] * len(workers)
    deadline = time.perf_counter() + seconds

    def body(index: int) -> None:
        call = calls[index]
        n = 0
        while time.perf_counter() < deadline:
            call()
            n += 1
        counts[index] = n

    with Measured(server) as measured:
        run_threads(len(workers), body)
    return measured, sum(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--daemons", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=40, help="jobs run first, not counted")
    parser.add_argument("--ceiling-seconds", type=float, default=10.0, help="in all rounds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--profile", help="py-spy the server during the first lifecycle round (.svg or raw)"
    )
    args = parser.parse_args()
    started = time.perf_counter()

    with (
        tempfile.TemporaryDirectory(prefix="provd-bench-") as tmp,
        provd_server(Path(tmp) / "provd.db") as server,
    ):
        workers = [Worker(server.url, i) for i in range(args.daemons)]
        file_hash = workers[0].jobs.upload_file(pb.UploadFileRequest(data=template_tar())).hash
        create = pb.CreateJobRequest(
            provisioner="echo", file_hash=file_hash, template_import=pb.TemplateImportInput()
        )
        log(f"lifecycle: warming up with {args.warmup} jobs")
        lifecycle_phase(server, workers, create, args.warmup)
        completed = workers[0].jobs.create_job(create)
        held_job = workers[0].acquire()  # stays running: the target of empty UpdateJobs
        assert held_job == completed.id
        done_job = (
            workers[0]
            .jobs.list_jobs(pb.ListJobsRequest(status=pb.JOB_STATUS_SUCCEEDED, limit=1))
            .jobs[0]
            .id
        )

        def get_job(worker: Worker) -> Callable[[], object]:
            request = pb.GetJobRequest(id=done_job)
            return lambda: worker.jobs.get_job(request)

        def empty_update(worker: Worker) -> Callable[[], object]:
            # Every daemon sends the holder's name, so the server sees the holder.
            daemon = workers[0].daemon
            request = pd.UpdateJobRequest(job_id=held_job)
            return lambda: daemon.update_job(request)

        ceilings: list[tuple[Measured, int]] = []
        lives: list[Measured] = []
        per_round = max(1, args.jobs // args.rounds)
        for n in range(args.rounds):
            log(
                f"lifecycle: round {n + 1}/{args.rounds}: GetJob for"
                f" {args.ceiling_seconds / args.rounds:.1f} s, then {per_round} jobs"
            )
            ceilings.append(rpc_phase(server, workers, get_job, args.ceiling_seconds / args.rounds))
            with profiled(server.pid, args.profile if n == 0 else None):
                lives.append(lifecycle_phase(server, workers, create, per_round))
        log("lifecycle: UpdateJob without logs")
        update, update_calls = rpc_phase(server, workers, empty_update, 3.0)
        rss_mb = server.rss_mb()

    jobs = per_round * args.rounds
    life = Measured.combine(lives)
    ceiling = Measured.combine([measured for measured, _ in ceilings])
    ceiling_calls = sum(calls for _, calls in ceilings)
    jobs_per_s = jobs / life.seconds
    ceiling_rps = ceiling_calls / ceiling.seconds
    update_rps = update_calls / update.seconds
    ratio = jobs_per_s * RPCS_PER_JOB / ceiling_rps
    # The same comparison in server CPU per RPC, which other load on the machine
    # disturbs far less than it disturbs rates.
    cpu_per_job = sum(life.server_cpu.values()) * life.seconds / jobs
    cpu_per_call = sum(ceiling.server_cpu.values()) * ceiling.seconds / ceiling_calls
    cpu_ratio = cpu_per_call * RPCS_PER_JOB / cpu_per_job
    header = ["phase", "rate", "server ms", "server cpu", "main", "writer", "workers", "client"]
    table(
        f"lifecycle: {jobs} jobs, {args.daemons} daemons, {args.rounds} rounds (rate per s;"
        " server CPU ms per job or call; cpu in cores)",
        header,
        [
            ["lifecycle jobs/s", jobs_per_s, cpu_per_job * 1000, *life.cpu_columns()],
            [
                "  = RPCs/s (x4)",
                jobs_per_s * RPCS_PER_JOB,
                cpu_per_job * 1000 / RPCS_PER_JOB,
                "",
                "",
                "",
                "",
                "",
            ],
            ["ceiling: GetJob/s", ceiling_rps, cpu_per_call * 1000, *ceiling.cpu_columns()],
            [
                "UpdateJob/s, no logs",
                update_rps,
                sum(update.server_cpu.values()) * update.seconds / update_calls * 1000,
                *update.cpu_columns(),
            ],
        ],
    )
    rounds = [
        f"{per_round / life_round.seconds * RPCS_PER_JOB / (calls / measured.seconds):.2f}"
        for life_round, (measured, calls) in zip(lives, ceilings, strict=True)
    ]
    print(f"ratio per round: {', '.join(rounds)}")
    print(
        f"ratio = {jobs_per_s:.1f} jobs/s x {RPCS_PER_JOB} ÷ {ceiling_rps:.0f} RPC/s"
        f" = {ratio:.2f} (goal ≥ {GOAL_RATIO}: {goal(ratio >= GOAL_RATIO)});"
        f" by server CPU: {cpu_ratio:.2f}"
    )
    emit(
        {
            "bench": "lifecycle",
            "daemons": args.daemons,
            "jobs": jobs,
            "rounds": args.rounds,
            "lifecycle_jobs_per_s": round(jobs_per_s, 2),
            "rpcs_per_job": RPCS_PER_JOB,
            "ceiling_rpc": "GetJob(completed job)",
            "ceiling_rpcs_per_s": round(ceiling_rps, 1),
            "update_job_empty_rpcs_per_s": round(update_rps, 1),
            "ratio": round(ratio, 3),
            "ratio_by_server_cpu": round(cpu_ratio, 3),
            "server_cpu_ms_per_job": round(cpu_per_job * 1000, 2),
            "server_cpu_ms_per_ceiling_rpc": round(cpu_per_call * 1000, 3),
            "goal_ratio": GOAL_RATIO,
            "goal_met": ratio >= GOAL_RATIO,
            "lifecycle_server_cpu_cores": rounded(life.server_cpu),
            "lifecycle_client_cpu_cores": round(life.client_cpu, 2),
            "ceiling_server_cpu_cores": rounded(ceiling.server_cpu),
            "server_rss_mb": round(rss_mb, 1),
            "machine": machine(),
            "wall_s": round(time.perf_counter() - started, 2),
        }
    )


if __name__ == "__main__":
    main()

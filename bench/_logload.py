"""The UpdateJob log load that bench/logs.py and bench/peer.py share.

Each of `daemons` threads holds its own jobs and sends UpdateJob with `lines` log lines
to them round-robin, as fast as the server answers. A job takes at most
`JOB_LOG_BUDGET` bytes of log text (under provd's 1 MiB per-job cap, so no line is
dropped or replaced by the truncation marker), after which the thread moves on to
its next job; a thread that runs out of jobs stops early and is reported.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
from _common import (
    ADMIN_TOKEN,
    DAEMON_PSK,
    connection_split,
    diff,
    grpc_channel,
    machine_busy_s,
    pinned_channel,
    template_tar,
    threads_cpu_s,
    tree_threads_cpu_s,
)

from provd.client.connect import AcquireRequests, daemon_client, http2_client, job_client
from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.gen.provisionerd import provisionerd_pb2 as pd
from provd.gen.provisionersdk import provisioner_pb2 as sdk

LINES = 100
STAGE = "Applying"
UPDATE_JOB = "/provisionerd.ProvisionerDaemon/UpdateJob"
JOB_LOG_BUDGET = 900_000  # bytes of stage + output text per job


def log_batch(lines: int = LINES) -> list[pd.Log]:
    """`lines` lines like a terraform apply writes (~70 bytes of text each)."""
    now = int(time.time() * 1000)
    return [
        pd.Log(
            source=pd.PROVISIONER,
            level=sdk.INFO,
            created_at=now,
            stage=STAGE,
            output=f"null_resource.example[{n}]: Creation complete after 0s [id=8675309{n:04d}]",
        )
        for n in range(lines)
    ]


def daemon_metadata(name: str) -> list[tuple[str, str]]:
    """gRPC metadata for a provd daemon (lower-case header names)."""
    return [
        ("provd-daemon-psk", DAEMON_PSK),
        ("provd-daemon-name", name),
        ("provd-daemon-provisioners", "echo"),
        ("provd-api-version", "1.1"),
    ]


Send = Callable[[pd.UpdateJobRequest], pd.UpdateJobResponse]


@dataclass
class LoadResult:
    updates: int
    lines: int
    seconds: float
    server_cpu: dict[str, float]  # cores, per thread kind
    client_cpu: float  # cores
    ran_out: int  # threads that ran out of jobs before the end

    @property
    def lines_per_s(self) -> float:
        return self.lines / self.seconds

    @property
    def updates_per_s(self) -> float:
        return self.updates / self.seconds


def run_load(
    server_pid: int,
    senders: Sequence[Send],
    jobs: Sequence[Sequence[str]],
    seconds: float,
    lines: int = LINES,
    used: list[dict[str, int]] | None = None,
) -> LoadResult:
    """Send UpdateJob from one thread per sender, to its jobs, for `seconds`.

    `used` (one dict per sender, job id → batches sent) carries over between calls,
    so a job never goes over its budget across several runs."""
    batch = log_batch(lines)
    batch_bytes = sum(len(log.stage.encode()) + len(log.output.encode()) for log in batch)
    max_updates = JOB_LOG_BUDGET // batch_bytes if batch_bytes else 1 << 62
    counts = [0] * len(senders)
    ran_out = [False] * len(senders)
    used = used if used is not None else [{} for _ in senders]
    errors: list[BaseException] = []
    deadline = time.perf_counter() + seconds

    def body(index: int) -> None:
        send, held, budget = senders[index], jobs[index], used[index]
        requests = [pd.UpdateJobRequest(job_id=job_id, logs=batch) for job_id in held]
        n = 0
        try:
            while time.perf_counter() < deadline:
                live = [r for r in requests if budget.get(r.job_id, 0) < max_updates]
                if not live:
                    ran_out[index] = True
                    break
                for request in live:
                    if time.perf_counter() >= deadline:
                        break
                    response = send(request)
                    assert not response.canceled
                    budget[request.job_id] = budget.get(request.job_id, 0) + 1
                    n += 1
        except BaseException as error:
            errors.append(error)
        counts[index] = n

    threads = [threading.Thread(target=body, args=(i,)) for i in range(len(senders))]
    server_before = threads_cpu_s(server_pid)
    client_before = sum(os.times()[:2])
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    server_cpu = diff(threads_cpu_s(server_pid), server_before)
    return LoadResult(
        updates=sum(counts),
        lines=sum(counts) * lines,
        seconds=elapsed,
        server_cpu={k: v / elapsed for k, v in server_cpu.items()},
        client_cpu=(sum(os.times()[:2]) - client_before) / elapsed,
        ran_out=sum(ran_out),
    )


def combine(results: Sequence[LoadResult]) -> LoadResult:
    """Several runs of the same load as one (totals over total time)."""
    seconds = sum(r.seconds for r in results)
    kinds = {k for r in results for k in r.server_cpu}
    return LoadResult(
        updates=sum(r.updates for r in results),
        lines=sum(r.lines for r in results),
        seconds=seconds,
        server_cpu={
            k: sum(r.server_cpu.get(k, 0.0) * r.seconds for r in results) / seconds for k in kinds
        },
        client_cpu=sum(r.client_cpu * r.seconds for r in results) / seconds,
        ran_out=sum(r.ran_out for r in results),
    )


def count_lines(db_path: Path, table: str = "job_logs") -> int:
    """Log rows with the load's stage in a stopped server's SQLite file, one row per
    line (bench/peer_server.py's table)."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        (count,) = conn.execute(
            f"SELECT COUNT(*) FROM {table} WHERE stage = ?", (STAGE,)
        ).fetchone()
        return int(count)
    finally:
        conn.close()


def count_provd_lines(db_path: Path) -> int:
    """Lines with the load's stage in a stopped provd's SQLite file (its log chunks,
    provd/store/_log_chunks.py)."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        if "log_chunks" not in tables:  # a provd from before the chunks (PROVD_BENCH_SRC)
            return count_lines(db_path)
        (count,) = conn.execute(
            "SELECT COUNT(*) FROM log_chunks AS c, json_each(c.lines) AS r WHERE r.value ->> 3 = ?",
            (STAGE,),
        ).fetchone()
        return int(count)
    finally:
        conn.close()


def read_back(url: str, jobs: Sequence[Sequence[str]], threads: int = 8) -> dict[str, int]:
    """Every job's lines of the load's stage, read back through provd.v1's
    StreamJobLogs (all of them, page after page), by job id. Raises if a job's line
    ids do not increase."""
    from provd.gen.provd.v1 import jobs_pb2 as api

    def one(job_id: str) -> tuple[str, int]:
        client = job_client(url, ADMIN_TOKEN, http_client=http2_client())
        last, count = 0, 0
        for line in client.stream_job_logs(api.StreamJobLogsRequest(id=job_id)):
            if line.id <= last:
                raise AssertionError(f"job {job_id}: line id {line.id} after {last}")
            last = line.id
            count += line.stage == STAGE
        return job_id, count

    with ThreadPoolExecutor(threads) as pool:
        return dict(pool.map(one, [job_id for held in jobs for job_id in held]))


def provd_held_jobs(
    url: str, daemons: int, per_daemon: int, prefix: str = "bench-"
) -> list[list[str]]:
    """Create `daemons x per_daemon` jobs and have daemon i (`{prefix}i`) acquire its
    share, so each holds `per_daemon` running jobs."""
    admin = job_client(url, ADMIN_TOKEN, http_client=http2_client())
    file_hash = admin.upload_file(pb.UploadFileRequest(data=template_tar())).hash
    create = pb.CreateJobRequest(
        provisioner="echo", file_hash=file_hash, template_import=pb.TemplateImportInput()
    )
    for _ in range(daemons * per_daemon):
        admin.create_job(create)
    held: list[list[str]] = []
    for index in range(daemons):
        client = daemon_client(url, DAEMON_PSK, name=f"{prefix}{index}")
        mine = []
        for _ in range(per_daemon):
            requests = AcquireRequests()
            for acquired in client.acquire_job_with_cancel(requests):
                mine.append(acquired.job_id)
            requests.close()
        held.append(mine)
    return held


def worker_count(value: str) -> str:
    """`--workers`: a positive number or `auto`, passed on to `provd serve`."""
    if value.strip().lower() == "auto":
        return "auto"
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a number of workers or 'auto', got {value!r}")
    return str(int(value))


def open_channels(
    target: str, daemons: int, connections: str, workers: Sequence[int], kernel_spread: bool
) -> list[grpc.Channel]:
    """One channel per daemon: all on one shared connection, or each on its own
    (pinned half to each of `workers`, the processes accepting on `target`, if there
    are several and not `kernel_spread`)."""
    if connections == "shared":
        return [grpc.insecure_channel(target) for _ in range(daemons)]
    if len(workers) > 1 and not kernel_spread:
        return [
            pinned_channel(target, workers, workers[index % len(workers)])
            for index in range(daemons)
        ]
    channels = [grpc_channel(target) for _ in range(daemons)]
    for channel in channels:
        grpc.channel_ready_future(channel).result(timeout=30)
    return channels


def grpc_senders(channels: Sequence[grpc.Channel]) -> list[Send]:
    senders = []
    for index, channel in enumerate(channels):
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

        senders.append(send)
    return senders


def run_turn(
    pid: int,
    target: str,
    jobs: Sequence[Sequence[str]],
    seconds: float,
    args: argparse.Namespace,
    used: list[dict[str, int]],
    workers: Sequence[int] = (),
) -> tuple[LoadResult, list[int], float]:
    """One turn of the load on one server, on channels opened for it; with several
    `workers` (the children of `pid`), their CPU is the server's. Returns the load's
    result, the number of connections each worker held, and the whole machine's busy
    CPU seconds meanwhile (this benchmark, the servers, and any other work)."""
    channels = open_channels(target, args.daemons, args.connections, workers, args.kernel_spread)
    split = list(connection_split(target, workers).values()) if len(workers) > 1 else []
    before = tree_threads_cpu_s(pid) if workers else {}
    busy = machine_busy_s()
    result = run_load(pid, grpc_senders(channels), jobs, seconds, args.lines, used)
    busy = machine_busy_s() - busy
    if workers:
        cpu = diff(tree_threads_cpu_s(pid), before)
        result.server_cpu = {kind: value / result.seconds for kind, value in cpu.items()}
    for channel in channels:
        channel.close()
    return result, split, busy

"""Beyond one process: provd on SQLite with `--workers 2` and on PostgreSQL with two
replicas, against one process of each, side by side in one run.

    .venv/bin/python bench/scale_out.py [--seconds 15] [--turns 3] [--daemons 16]
        [--lines 10] [--dispatch-jobs 300] [--pg-fsync on|off] [--kernel-spread]
        [--h2load-daemons 64] [--no-h2load]

The servers, all `python -m provd serve --listen 127.0.0.1:0` with the durable
defaults, started once and running side by side; one configuration is loaded at a
time, the others idle:

    sqlite 1      one process on a new SQLite file (synchronous=full)
    sqlite w2     `--workers 2` on another new file: a supervisor and two workers
                  accepting on one port (SO_REUSEPORT)
    postgres 1    one process on a database of a throwaway PostgreSQL cluster
    postgres 2    two processes, replicas A and B on two ports, on another database
    sqlite A|B    (dispatch only) two plain `provd serve` on a third file, ports A, B

The loads, per configuration, in `--turns` turns: in every turn each configuration
takes its turn (the order rotating), so drift on a shared machine hits all alike.

    lifecycle   `--daemons` threads each loop CreateJob → AcquireJobWithCancel →
                UpdateJob (10 lines) → CompleteJob, as bench/lifecycle.py: jobs/s
    UpdateJob   the same threads, each a daemon holding its own running jobs, send
                UpdateJob with `--lines` lines as fast as answered (bench/_logload.py,
                the load of logs.py and peer.py): RPC/s
    UpdateJob,  (SQLite, one process and `--workers 2`) the same calls, sent by
    h2load      `--h2load-daemons` h2load processes, one connection and one call in
                flight each, counted in the database (bench/_h2load.py): RPC/s
    dispatch    one job in flight: CreateJob through one process, received by one of
                `--dispatch-daemons` daemons waiting on another (A → B: 2 replicas;
                two plain processes on one file; worker 1 → worker 2 of
                `--workers 2`), and same-process routes for reference; p50/p99 from
                just before CreateJob is sent, and from its answer

Why two clients for UpdateJob. On 2 cores, whatever the load generator uses the servers
do not get. The grpcio threads cost about 0.4 ms of CPU per call (0.3 cores at 750
calls/s), which caps what a second worker can show; h2load, in C, costs less (0.26-0.32
cores at 800-900 calls/s, most of it the kernel's loopback TCP). The `--workers 2`
goal (UpdateJob/s ≥ 1.6 times one process) is judged on the h2load load, with 64 daemons by
default: the least that keeps both configurations busy (with 32, a worker idled between
calls). Both are printed; `--no-h2load` leaves h2load out (then the goal is judged on
grpcio's figure).

The clients are grpcio (C core) in threads of this process, one channel and one TCP
connection per thread (grpcio's channels to one target otherwise share one
connection, which one worker would accept). For `--workers 2` the connections are
pinned half to each worker: a connection is opened, /proc tells which worker accepted
it (tests/procfs.py), and it is reopened until it lands on the wanted one; with
`--kernel-spread` the kernel's hash decides and the split is printed. Connections
are opened for each phase (provd closes one idle for 5 s). With 2 replicas, thread
i uses replica i mod 2.

PostgreSQL: one cluster for the run, started with tests/pg.py (initdb as `nobody`
when run as root, a Unix socket only, trust authentication). `--pg-fsync on` (the
default) runs it with fsync, synchronous_commit and full_page_writes on, its own
defaults: a commit is durable, as SQLite's synchronous=FULL is. `--pg-fsync off` is
the test suite's setting (all three off): not durable, so its figures are not
comparable with SQLite's. The setting in force is read back (`SHOW fsync`) and
printed, and a plain commit's latency is measured on both stores before the loads.

CPU comes from /proc, in cores: each server process, the PostgreSQL cluster's
processes, this process (the load generator; on 2 cores whatever it uses the servers
do not get), the whole machine's busy time ("machine": user, system, irq, softirq),
what the hypervisor stole, and "other", the machine's busy time minus all of ours
(other work on a shared machine; the idle servers). "cpu ms" is provd's and
PostgreSQL's CPU per job or per RPC, which other load disturbs less than rates.
`PROVD_BENCH_SRC=DIR` runs the servers from another checkout (bench/_common.py).
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # tests.pg, tests.procfs

import grpc
from _common import (
    ADMIN_TOKEN,
    Server,
    connection_split,
    emit,
    goal,
    grpc_channel,
    log,
    machine,
    machine_busy_s,
    machine_cpu_s,
    pinned_channel,
    process_cpu_s,
    process_tree,
    quantiles_ms,
    started,
    table,
    template_tar,
)
from _h2load import H2Daemon, H2Load, H2Result, h2load
from _logload import JOB_LOG_BUDGET, Send, daemon_metadata, log_batch, provd_held_jobs, run_load

from provd.gen.provd.v1 import daemons_pb2 as dpb
from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.gen.provisionerd import provisionerd_pb2 as pd
from tests import pg

GOAL_WORKERS_RATIO = 1.6  # UpdateJob RPC/s, --workers 2 ÷ 1 process, on 2 cores
LIFECYCLE_LINES = 10
SERVE = [sys.executable, "-m", "provd", "serve", "--listen", "127.0.0.1:0"]
RPC_TIMEOUT = 60.0
ADMIN = [("authorization", f"Bearer {ADMIN_TOKEN}")]
# PostgreSQL's own defaults: every commit waits for its WAL flush (fsync).
PG_DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}


# -- the clients ---------------------------------------------------------------------


class Caller:
    """The calls one thread makes on its channel: a daemon named `name`, and the admin."""

    def __init__(self, channel: grpc.Channel, name: str) -> None:
        self.name = name
        self.metadata = daemon_metadata(name)
        self._create = channel.unary_unary(
            "/provd.v1.JobService/CreateJob",
            request_serializer=pb.CreateJobRequest.SerializeToString,
            response_deserializer=pb.Job.FromString,
        )
        self._list_daemons = channel.unary_unary(
            "/provd.v1.DaemonService/ListDaemons",
            request_serializer=dpb.ListDaemonsRequest.SerializeToString,
            response_deserializer=dpb.ListDaemonsResponse.FromString,
        )
        self._acquire = channel.stream_stream(
            "/provisionerd.ProvisionerDaemon/AcquireJobWithCancel",
            request_serializer=pd.CancelAcquire.SerializeToString,
            response_deserializer=pd.AcquiredJob.FromString,
        )
        self._update = channel.unary_unary(
            "/provisionerd.ProvisionerDaemon/UpdateJob",
            request_serializer=pd.UpdateJobRequest.SerializeToString,
            response_deserializer=pd.UpdateJobResponse.FromString,
        )
        self._complete = channel.unary_unary(
            "/provisionerd.ProvisionerDaemon/CompleteJob",
            request_serializer=pd.CompletedJob.SerializeToString,
            response_deserializer=pd.Empty.FromString,
        )

    def create(self, request: pb.CreateJobRequest) -> pb.Job:
        return self._create(request, metadata=ADMIN, timeout=RPC_TIMEOUT)

    def connected_daemons(self) -> set[str]:
        response = self._list_daemons(dpb.ListDaemonsRequest(), metadata=ADMIN, timeout=10)
        return {daemon.name for daemon in response.daemons if daemon.connected}

    def acquire(self, requests: queue.SimpleQueue[pd.CancelAcquire | None]) -> Iterator[str]:
        """The job ids the stream answers with (provd answers once, then ends it); the
        stream is half-closed when it ends. Put a CancelAcquire in `requests` to cancel."""
        call = self._acquire(
            iter(requests.get, None), metadata=self.metadata, timeout=10 * RPC_TIMEOUT
        )
        try:
            for acquired in call:
                yield acquired.job_id
        finally:
            requests.put(None)

    def update(self, request: pd.UpdateJobRequest) -> pd.UpdateJobResponse:
        return self._update(request, metadata=self.metadata, timeout=RPC_TIMEOUT)

    def complete(self, job_id: str) -> None:
        done = pd.CompletedJob(job_id=job_id, template_import=pd.CompletedJob.TemplateImport())
        self._complete(done, metadata=self.metadata, timeout=RPC_TIMEOUT)

    def lifecycle(self, create: pb.CreateJobRequest, logs: Sequence[pd.Log]) -> None:
        self.create(create)
        job_ids = [job_id for job_id in self.acquire(queue.SimpleQueue()) if job_id]
        assert len(job_ids) == 1, job_ids
        assert not self.update(pd.UpdateJobRequest(job_id=job_ids[0], logs=logs)).canceled
        self.complete(job_ids[0])


def run_threads(count: int, body: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            body(index)
        except BaseException as error:  # report it from the main thread
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


# -- the configurations ----------------------------------------------------------------


@dataclass
class Config:
    key: str
    title: str
    servers: list[Server]
    workers: list[int] = field(default_factory=list)  # --workers: the worker pids
    held: list[list[str]] = field(default_factory=list)  # UpdateJob load: jobs per thread
    used: list[dict[str, int]] = field(default_factory=list)
    create: pb.CreateJobRequest = field(default_factory=pb.CreateJobRequest)
    db: Path | None = None  # the SQLite file (the h2load load counts its calls there)
    h2load: H2Load | None = None
    h2load_daemons: list[H2Daemon] = field(default_factory=list)

    def processes(self) -> dict[str, int]:
        """Label → pid of every process of the configuration, for CPU."""
        if self.workers:
            return {
                "supervisor": self.servers[0].pid,
                **{f"worker {i + 1}": pid for i, pid in enumerate(self.workers)},
            }
        if len(self.servers) == 1:
            return {"process": self.servers[0].pid}
        return {f"replica {'AB'[i]}": server.pid for i, server in enumerate(self.servers)}

    def channels(self, count: int, kernel_spread: bool) -> list[grpc.Channel]:
        """`count` connected channels, spread over the configuration's processes."""
        if self.workers and not kernel_spread:
            target = self.servers[0].target
            return [
                pinned_channel(target, self.workers, self.workers[i % len(self.workers)])
                for i in range(count)
            ]
        channels = [grpc_channel(self.servers[i % len(self.servers)].target) for i in range(count)]
        for channel in channels:
            grpc.channel_ready_future(channel).result(timeout=30)
        return channels

    def serving(self, index: int, kernel_spread: bool) -> str | None:
        """The label of the process that thread `index`'s connection goes to."""
        if self.workers:
            return None if kernel_spread else f"worker {index % len(self.workers) + 1}"
        if len(self.servers) == 1:
            return None
        return f"replica {'AB'[index % len(self.servers)]}"

    def split(self) -> list[int]:
        """Connections each worker holds (--workers only)."""
        if not self.workers:
            return []
        time.sleep(0.05)  # let the workers accept
        return list(connection_split(self.servers[0].target, self.workers).values())


# -- measuring -----------------------------------------------------------------------


@dataclass
class Sample:
    """One or more phases: what was counted, and CPU seconds spent meanwhile."""

    count: int = 0
    seconds: float = 0.0
    # Counted per serving process, when the clients were pinned to them.
    per_process: dict[str, int] = field(default_factory=dict)
    server: dict[str, float] = field(default_factory=dict)  # per process label
    postgres: float = 0.0
    client: float = 0.0
    busy: float = 0.0  # the whole machine: user, system, irq, softirq
    steal: float = 0.0  # the whole machine: stolen by the hypervisor

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def cores(self, cpu_s: float) -> float:
        return cpu_s / self.seconds

    @property
    def other(self) -> float:
        """CPU seconds the machine spent on anything else: other work, idle servers,
        the kernel's own threads."""
        return self.busy - sum(self.server.values()) - self.postgres - self.client

    def count_per_process(self, labels: Sequence[str | None], counts: Sequence[int]) -> None:
        """`counts[i]` was served by process `labels[i]` (None: not known)."""
        self.count = sum(counts)
        for label, count in zip(labels, counts, strict=True):
            if label is not None:
                self.per_process[label] = self.per_process.get(label, 0) + count

    def add(self, other: Sample) -> None:
        self.count += other.count
        self.seconds += other.seconds
        for label, count in other.per_process.items():
            self.per_process[label] = self.per_process.get(label, 0) + count
        for label, cpu in other.server.items():
            self.server[label] = self.server.get(label, 0.0) + cpu
        self.postgres += other.postgres
        self.client += other.client
        self.busy += other.busy
        self.steal += other.steal

    def summary(self) -> dict[str, object]:
        return {
            "count": self.count,
            "seconds": round(self.seconds, 2),
            "rate": round(self.rate, 1),
            "rate_per_process": {
                label: round(count / self.seconds, 1) for label, count in self.per_process.items()
            },
            "server_cores": {k: round(self.cores(v), 2) for k, v in self.server.items()},
            "postgres_cores": round(self.cores(self.postgres), 2),
            "client_cores": round(self.cores(self.client), 2),
            "machine_busy_cores": round(self.cores(self.busy), 2),
            "machine_steal_cores": round(self.cores(self.steal), 2),
            "other_cores": round(self.cores(self.other), 2),
        }


def tree_cpu(pid: int | None) -> dict[int, float]:
    if pid is None:
        return {}
    cpu = {}
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            cpu[member] = process_cpu_s(member)
    return cpu


@contextlib.contextmanager
def measured(processes: dict[str, int], postmaster: int | None) -> Iterator[Sample]:
    sample = Sample()
    server0 = {label: process_cpu_s(pid) for label, pid in processes.items()}
    pg0 = tree_cpu(postmaster)
    client0 = sum(os.times()[:2])
    machine0 = machine_cpu_s()
    start = time.perf_counter()
    yield sample
    sample.seconds = time.perf_counter() - start
    machine1 = machine_cpu_s()
    sample.busy = machine_busy_s(machine1) - machine_busy_s(machine0)
    sample.steal = machine1["steal"] - machine0["steal"]
    sample.client = sum(os.times()[:2]) - client0
    sample.server = {label: process_cpu_s(pid) - server0[label] for label, pid in processes.items()}
    pg1 = tree_cpu(postmaster)
    sample.postgres = sum(cpu - pg0.get(pid, 0.0) for pid, cpu in pg1.items())


# -- the phases ----------------------------------------------------------------------


def lifecycle_phase(
    config: Config, args: argparse.Namespace, seconds: float, postmaster: int | None
) -> tuple[Sample, list[int]]:
    channels = config.channels(args.daemons, args.kernel_spread)
    split = config.split()
    callers = [Caller(channel, f"life-{i}") for i, channel in enumerate(channels)]
    logs = log_batch(LIFECYCLE_LINES)
    counts = [0] * len(callers)
    with measured(config.processes(), postmaster) as sample:
        deadline = time.perf_counter() + seconds

        def body(index: int) -> None:
            while time.perf_counter() < deadline:
                callers[index].lifecycle(config.create, logs)
                counts[index] += 1

        run_threads(len(callers), body)
    labels = [config.serving(i, args.kernel_spread) for i in range(len(callers))]
    sample.count_per_process(labels, counts)
    for channel in channels:
        channel.close()
    return sample, split


def update_phase(
    config: Config, args: argparse.Namespace, seconds: float, postmaster: int | None
) -> tuple[Sample, list[int]]:
    channels = config.channels(args.daemons, args.kernel_spread)
    split = config.split()
    counts = [0] * len(channels)

    def counted(index: int, send: Send) -> Send:
        def call(request: pd.UpdateJobRequest) -> pd.UpdateJobResponse:
            counts[index] += 1
            return send(request)

        return call

    senders = [
        counted(i, Caller(channel, f"bench-{i}").update) for i, channel in enumerate(channels)
    ]
    with measured(config.processes(), postmaster) as sample:
        result = run_load(
            config.servers[0].pid, senders, config.held, seconds, args.lines, config.used
        )
    if result.ran_out:
        log(f"scale-out: {config.key}: {result.ran_out} threads ran out of jobs")
    assert sum(counts) == result.updates
    labels = [config.serving(i, args.kernel_spread) for i in range(len(channels))]
    sample.count_per_process(labels, counts)
    for channel in channels:
        channel.close()
    return sample, split


def h2load_phase(
    config: Config, seconds: float, postmaster: int | None
) -> tuple[Sample, list[int]]:
    """The UpdateJob load from h2load processes (bench/_h2load.py). The kernel spreads
    their connections over `--workers`; the split is read once they are open."""
    load = config.h2load
    assert load is not None
    ended: list[H2Result | BaseException] = []

    def run() -> None:
        try:
            ended.append(load.run(config.h2load_daemons, seconds))
        except BaseException as error:  # raised again below, in the main thread
            ended.append(error)

    with measured(config.processes(), postmaster) as sample:
        runner = threading.Thread(target=run, daemon=True)
        runner.start()
        time.sleep(min(1.0, seconds / 2))
        split = config.split()
        runner.join()
    result = ended[0]
    if isinstance(result, BaseException):
        raise result
    sample.count = result.updates
    sample.client += result.client_cpu_s
    return sample, split


@dataclass
class Route:
    """Dispatch from a creator on one process to daemons waiting on another."""

    key: str
    title: str
    config: Config
    creator: Callable[[], grpc.Channel]
    daemons: Callable[[int], list[grpc.Channel]]
    since_send: list[float] = field(default_factory=list)
    since_ack: list[float] = field(default_factory=list)


def dispatch_phase(route: Route, jobs: int, daemons: int, warmup: int) -> None:
    daemon_channels = route.daemons(daemons)
    creator_channel = route.creator()
    creator = Caller(creator_channel, "creator")
    waiters = [Caller(channel, f"disp-{i}") for i, channel in enumerate(daemon_channels)]
    arrivals: queue.SimpleQueue[tuple[str, float, int]] = queue.SimpleQueue()
    stopping = threading.Event()
    current: list[queue.SimpleQueue[pd.CancelAcquire | None]] = [
        queue.SimpleQueue() for _ in waiters
    ]

    def wait(index: int) -> None:
        """Keep a stream open; stamp each job as it arrives and open the next."""
        while True:
            current[index] = requests = queue.SimpleQueue()
            if stopping.is_set():  # after publishing `requests`: see below
                return
            for job_id in waiters[index].acquire(requests):
                received = time.perf_counter()
                if job_id:
                    arrivals.put((job_id, received, index))

    threads = [threading.Thread(target=wait, args=(i,), daemon=True) for i in range(daemons)]
    for thread in threads:
        thread.start()
    names = {waiter.name for waiter in waiters}
    deadline = time.monotonic() + 30
    while not names <= waiters[0].connected_daemons():  # on the daemons' process
        if time.monotonic() > deadline:
            raise RuntimeError(f"{route.key}: the daemons did not connect")
        time.sleep(0.01)
    received_by: list[tuple[str, int]] = []
    for n in range(warmup + jobs):
        sent = time.perf_counter()
        job = creator.create(route.config.create)
        acked = time.perf_counter()
        job_id, received, index = arrivals.get(timeout=30)
        assert job_id == job.id, (job_id, job.id)  # one job in flight at a time
        received_by.append((job_id, index))
        if n >= warmup:
            route.since_send.append(received - sent)
            route.since_ack.append(received - acked)
    stopping.set()
    for requests in current:
        requests.put(pd.CancelAcquire())
    for thread in threads:
        thread.join(30)
    assert arrivals.empty(), "a job arrived twice"
    for job_id, index in received_by:  # so the daemons hold no job in the next turn
        waiters[index].complete(job_id)
    for channel in [*daemon_channels, creator_channel]:
        channel.close()


# -- commit latency ------------------------------------------------------------------


def sqlite_commit_ms(path: Path, count: int = 200) -> dict[str, float]:
    """One-row INSERT + COMMIT, WAL, synchronous=FULL: what each provd write waits for."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE t (x BLOB)")
    seconds = []
    for _ in range(count):
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (randomblob(100))")
        conn.execute("COMMIT")
        seconds.append(time.perf_counter() - start)
    conn.close()
    return quantiles_ms(seconds)


def pg_commit_ms(dsn: str, count: int = 200) -> dict[str, float]:
    """The same on PostgreSQL through its Unix socket (autocommit: one commit each)."""
    import psycopg

    seconds = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x text)")
        for _ in range(count):
            start = time.perf_counter()
            conn.execute("INSERT INTO t VALUES (repeat('x', 100))")
            seconds.append(time.perf_counter() - start)
    return quantiles_ms(seconds)


# -- PostgreSQL --------------------------------------------------------------------


@contextlib.contextmanager
def pg_cluster(fsync: bool) -> Iterator[pg.Cluster]:
    """tests/pg.py's throwaway cluster, with PostgreSQL's durable defaults if `fsync`."""
    with mock.patch.dict(pg.SERVER_SETTINGS, PG_DURABLE if fsync else {}):
        cluster = pg.start_cluster()
    try:
        yield cluster
    finally:
        pg.stop_cluster(cluster)


def pg_settings(cluster: pg.Cluster) -> dict[str, str]:
    import psycopg

    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        return {
            name: str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
            for name in ("fsync", "synchronous_commit", "full_page_writes", "server_version")
        }


def pg_database(cluster: pg.Cluster, name: str) -> str:
    """A new database; returns its URL for `provd serve --db`."""
    import psycopg

    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    return f"postgresql://{pg.ROLE}@/{name}?host={quote(str(cluster.socket_dir), safe='')}"


def postmaster_pid(cluster: pg.Cluster) -> int:
    return int((cluster.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])


# -- the run -------------------------------------------------------------------------


def serve(stack: contextlib.ExitStack, db: str, *args: str) -> Server:
    return stack.enter_context(started([*SERVE, "--db", db, *args]))


def prepare(config: Config, args: argparse.Namespace, *, held: bool = True) -> None:
    """Upload the template; let every load thread's daemon hold its running jobs."""
    caller_channel = grpc_channel(config.servers[0].target)
    upload = caller_channel.unary_unary(
        "/provd.v1.JobService/UploadFile",
        request_serializer=pb.UploadFileRequest.SerializeToString,
        response_deserializer=pb.UploadFileResponse.FromString,
    )
    file_hash = upload(
        pb.UploadFileRequest(data=template_tar()), metadata=ADMIN, timeout=RPC_TIMEOUT
    ).hash
    caller_channel.close()
    config.create = pb.CreateJobRequest(
        provisioner="echo", file_hash=file_hash, template_import=pb.TemplateImportInput()
    )
    if held:
        config.held = provd_held_jobs(config.servers[0].url, args.daemons, args.jobs_per_daemon)
        config.used = [{} for _ in range(args.daemons)]


def prepare_h2load(config: Config, args: argparse.Namespace, workdir: Path) -> None:
    """Let the h2load daemons (`h2load-i`) take their running jobs; calibrate the count."""
    assert config.db is not None
    url = config.servers[0].url
    held = provd_held_jobs(url, args.h2load_daemons, args.jobs_per_daemon, prefix="h2load-")
    config.h2load_daemons = [H2Daemon(f"h2load-{i}", jobs) for i, jobs in enumerate(held)]
    config.h2load = H2Load(url, config.db, workdir, args.lines)
    config.h2load.calibrate(config.h2load_daemons[0], JOB_LOG_BUDGET)


def cores_text(sample: Sample) -> str:
    return " + ".join(f"{sample.cores(cpu):.2f}" for cpu in sample.server.values())


def throughput_rows(
    configs: Sequence[Config], samples: dict[str, Sample], turns: dict[str, list[float]]
) -> list[list[object]]:
    rows: list[list[object]] = []
    for config in configs:
        sample = samples[config.key]
        rows.append(
            [
                config.title,
                sample.rate,
                " + ".join(f"{n / sample.seconds:.0f}" for n in sample.per_process.values()),
                ", ".join(f"{rate:.0f}" for rate in turns[config.key]),
                (sum(sample.server.values()) + sample.postgres) / sample.count * 1000,
                sample.cores(sum(sample.server.values())),
                cores_text(sample),
                sample.cores(sample.postgres) if config.key.startswith("pg") else "",
                sample.cores(sample.client),
                sample.cores(sample.other),
                sample.cores(sample.busy),
                sample.cores(sample.steal),
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="per load and config")
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--daemons", type=int, default=16, help="load threads")
    parser.add_argument("--lines", type=int, default=10, help="log lines per UpdateJob")
    parser.add_argument("--jobs-per-daemon", type=int, default=4)
    parser.add_argument("--warmup-seconds", type=float, default=1.0, help="per load and config")
    parser.add_argument("--dispatch-jobs", type=int, default=300, help="per route, all turns")
    parser.add_argument("--dispatch-daemons", type=int, default=4)
    parser.add_argument("--dispatch-warmup", type=int, default=10, help="per route and turn")
    parser.add_argument("--pg-fsync", choices=["on", "off"], default="on")
    parser.add_argument(
        "--h2load-daemons", type=int, default=64, help="h2load processes (SQLite UpdateJob load)"
    )
    parser.add_argument(
        "--no-h2load", action="store_true", help="skip the h2load load (needs nghttp2-client)"
    )
    parser.add_argument(
        "--kernel-spread",
        action="store_true",
        help="--workers 2: let the kernel spread the connections (default: half each)",
    )
    args = parser.parse_args()
    if args.dispatch_daemons < 2:
        parser.error("--dispatch-daemons must be at least 2 (one is always waiting)")
    if not args.no_h2load:
        h2load()  # before anything starts: says how to install it if it is missing
    started_at = time.perf_counter()
    turn_seconds = args.seconds / args.turns
    turn_jobs = max(1, args.dispatch_jobs // args.turns)

    with (
        tempfile.TemporaryDirectory(prefix="provd-bench-") as tmp,
        pg_cluster(args.pg_fsync == "on") as cluster,
        contextlib.ExitStack() as stack,
    ):
        settings = pg_settings(cluster)
        log(f"scale-out: PostgreSQL {settings['server_version']}, fsync={settings['fsync']}")
        commit = {
            "sqlite": sqlite_commit_ms(Path(tmp) / "commit.db"),
            "postgres": pg_commit_ms(pg_database(cluster, "bench_commit")),
        }
        postmaster = postmaster_pid(cluster)
        log("scale-out: starting the servers")
        tmp_path = Path(tmp)
        single = serve(stack, str(tmp_path / "one.db"))
        supervisor = serve(stack, str(tmp_path / "workers.db"), "--workers", "2")
        workers = process_tree(supervisor.pid)[1:]
        assert len(workers) == 2, f"--workers 2 started {workers}"
        pair = [serve(stack, str(tmp_path / "pair.db")) for _ in range(2)]
        pg_one = pg_database(cluster, "bench_one")
        pg_two = pg_database(cluster, "bench_two")
        replica = serve(stack, pg_one)
        replicas = [serve(stack, pg_two) for _ in range(2)]
        configs = [
            Config("sqlite1", "sqlite, 1 process", [single], db=tmp_path / "one.db"),
            Config(
                "sqlite_w2",
                "sqlite, --workers 2",
                [supervisor],
                workers=workers,
                db=tmp_path / "workers.db",
            ),
            Config("pg1", "postgres, 1 replica", [replica]),
            Config("pg2", "postgres, 2 replicas", replicas),
        ]
        by_key = {config.key: config for config in configs}
        pair_config = Config("sqlite_pair", "sqlite, 2 processes", pair)
        for config in configs:
            log(f"scale-out: {config.key}: {args.daemons} daemons take their running jobs")
            prepare(config, args)
        prepare(pair_config, args, held=False)
        h2load_configs = [] if args.no_h2load else [c for c in configs if c.db is not None]
        for config in h2load_configs:
            log(f"scale-out: {config.key}: {args.h2load_daemons} h2load daemons take their jobs")
            prepare_h2load(config, args, tmp_path)

        def same(
            config: Config,
        ) -> tuple[Callable[[], grpc.Channel], Callable[[int], list[grpc.Channel]]]:
            target = config.servers[0].target
            return (
                lambda: config.channels(1, True)[0],
                lambda count: [grpc_channel(target) for _ in range(count)],
            )

        def across(
            config: Config,
        ) -> tuple[Callable[[], grpc.Channel], Callable[[int], list[grpc.Channel]]]:
            if config.workers:
                target, (a, b) = config.servers[0].target, config.workers
                return (
                    lambda: pinned_channel(target, config.workers, a),
                    lambda count: [pinned_channel(target, config.workers, b) for _ in range(count)],
                )
            a_target, b_target = (server.target for server in config.servers)
            return (
                lambda: grpc_channel(a_target),
                lambda count: [grpc_channel(b_target) for _ in range(count)],
            )

        routes = [
            Route("sqlite1_same", "sqlite, 1 process", by_key["sqlite1"], *same(by_key["sqlite1"])),
            Route("sqlite_pair_a_b", "sqlite, process A → B", pair_config, *across(pair_config)),
            Route(
                "sqlite_w2_a_b",
                "sqlite --workers 2, worker 1 → 2",
                by_key["sqlite_w2"],
                *across(by_key["sqlite_w2"]),
            ),
            Route("pg1_same", "postgres, 1 replica", by_key["pg1"], *same(by_key["pg1"])),
            Route("pg2_a_b", "postgres, replica A → B", by_key["pg2"], *across(by_key["pg2"])),
        ]

        for config in configs:
            log(f"scale-out: {config.key}: warm-up")
            lifecycle_phase(config, args, args.warmup_seconds, postmaster)
            update_phase(config, args, args.warmup_seconds, postmaster)
            if config in h2load_configs:
                h2load_phase(config, args.warmup_seconds, postmaster)

        lifecycles = {config.key: Sample() for config in configs}
        updates = {config.key: Sample() for config in configs}
        life_turns: dict[str, list[float]] = {config.key: [] for config in configs}
        update_turns: dict[str, list[float]] = {config.key: [] for config in configs}
        h2loads = {config.key: Sample() for config in h2load_configs}
        h2load_turns: dict[str, list[float]] = {config.key: [] for config in h2load_configs}
        splits: dict[str, list[list[int]]] = {"lifecycle": [], "updates": [], "h2load": []}
        for turn in range(args.turns):
            order = configs[turn % len(configs) :] + configs[: turn % len(configs)]
            for config in order:
                log(
                    f"scale-out: turn {turn + 1}/{args.turns}: {config.key}: lifecycle, then"
                    f" UpdateJob, {turn_seconds:.1f} s each"
                )
                sample, split = lifecycle_phase(config, args, turn_seconds, postmaster)
                lifecycles[config.key].add(sample)
                life_turns[config.key].append(sample.rate)
                if split:
                    splits["lifecycle"].append(split)
                sample, split = update_phase(config, args, turn_seconds, postmaster)
                updates[config.key].add(sample)
                update_turns[config.key].append(sample.rate)
                if split:
                    splits["updates"].append(split)
                if config in h2load_configs:
                    log(f"scale-out: turn {turn + 1}/{args.turns}: {config.key}: UpdateJob, h2load")
                    sample, split = h2load_phase(config, turn_seconds, postmaster)
                    h2loads[config.key].add(sample)
                    h2load_turns[config.key].append(sample.rate)
                    if split:
                        splits["h2load"].append(split)
            for route in routes[turn % len(routes) :] + routes[: turn % len(routes)]:
                log(f"scale-out: turn {turn + 1}/{args.turns}: dispatch {route.key}")
                dispatch_phase(route, turn_jobs, args.dispatch_daemons, args.dispatch_warmup)
        restarted = process_tree(supervisor.pid)[1:] != workers

    fsync_note = (
        f"PostgreSQL fsync={settings['fsync']}, synchronous_commit="
        f"{settings['synchronous_commit']}"
        + ("" if settings["fsync"] == "on" else " (NOT durable: not comparable with SQLite's)")
    )
    header = ["config", "rate", "per process", "per turn", "cpu ms", "server cpu", "per process"]
    header += ["postgres", "client", "other", "machine", "steal"]
    print(
        f"scale-out: {args.daemons} grpcio client threads, {args.turns} turns of"
        f" {turn_seconds:.1f} s per load; SQLite synchronous=full; {fsync_note};"
        f" cpu in cores of {os.cpu_count()}; cpu ms: provd's and PostgreSQL's CPU per job or"
        " RPC; other: the machine's busy CPU minus provd's, PostgreSQL's and the client's"
    )
    table(
        f"lifecycle jobs/s (CreateJob → acquire → UpdateJob, {LIFECYCLE_LINES} lines →"
        " CompleteJob)",
        header,
        throughput_rows(configs, lifecycles, life_turns),
    )
    table(
        f"UpdateJob RPC/s ({args.lines} lines each, each thread to its own running jobs)",
        header,
        throughput_rows(configs, updates, update_turns),
    )
    if h2load_configs:
        table(
            f"UpdateJob RPC/s, h2load client ({args.lines} lines each, {args.h2load_daemons}"
            " processes, one connection and one call in flight each)",
            header,
            throughput_rows(h2load_configs, h2loads, h2load_turns),
        )
    if splits["updates"]:
        spread = "kernel" if args.kernel_spread else "pinned"
        print(
            f"--workers 2 connections per worker ({spread}): lifecycle"
            f" {splits['lifecycle']}, UpdateJob {splits['updates']}; h2load (kernel)"
            f" {splits['h2load']}"
        )

    def ratio(samples: dict[str, Sample], top: str, bottom: str) -> float:
        return samples[top].rate / samples[bottom].rate

    def per_turn(rates: dict[str, list[float]], top: str, bottom: str) -> str:
        return ", ".join(f"{a / b:.2f}" for a, b in zip(rates[top], rates[bottom], strict=True))

    ratios = {
        "updates_workers2_over_1": ratio(updates, "sqlite_w2", "sqlite1"),
        "updates_replicas2_over_1": ratio(updates, "pg2", "pg1"),
        "lifecycle_workers2_over_1": ratio(lifecycles, "sqlite_w2", "sqlite1"),
        "lifecycle_replicas2_over_1": ratio(lifecycles, "pg2", "pg1"),
        "updates_pg1_over_sqlite1": ratio(updates, "pg1", "sqlite1"),
        "lifecycle_pg1_over_sqlite1": ratio(lifecycles, "pg1", "sqlite1"),
    }
    goal_key = "updates_workers2_over_1"
    if h2load_configs:
        ratios["updates_workers2_over_1_h2load"] = ratio(h2loads, "sqlite_w2", "sqlite1")
        goal_key = "updates_workers2_over_1_h2load"
    workers_ok = ratios[goal_key] >= GOAL_WORKERS_RATIO
    if h2load_configs:
        print(
            "UpdateJob/s --workers 2 ÷ 1 process, h2load client ="
            f" {ratios[goal_key]:.2f} (goal ≥ {GOAL_WORKERS_RATIO}: {goal(workers_ok)});"
            f" per turn: {per_turn(h2load_turns, 'sqlite_w2', 'sqlite1')}"
        )
    grpcio_goal = "" if h2load_configs else f" (goal ≥ {GOAL_WORKERS_RATIO}: {goal(workers_ok)})"
    print(
        f"UpdateJob/s --workers 2 ÷ 1 process, grpcio client ="
        f" {ratios['updates_workers2_over_1']:.2f}{grpcio_goal}; per turn:"
        f" {per_turn(update_turns, 'sqlite_w2', 'sqlite1')}"
    )
    print(
        f"UpdateJob/s 2 replicas ÷ 1 = {ratios['updates_replicas2_over_1']:.2f}; per turn:"
        f" {per_turn(update_turns, 'pg2', 'pg1')}"
    )
    print(
        f"lifecycle jobs/s --workers 2 ÷ 1 = {ratios['lifecycle_workers2_over_1']:.2f}"
        f" (per turn {per_turn(life_turns, 'sqlite_w2', 'sqlite1')}); 2 replicas ÷ 1 ="
        f" {ratios['lifecycle_replicas2_over_1']:.2f}"
        f" (per turn {per_turn(life_turns, 'pg2', 'pg1')})"
    )
    print(
        "one-row commit p50/p99 (ms): SQLite synchronous=full"
        f" {commit['sqlite']['p50']:.2f}/{commit['sqlite']['p99']:.2f}, PostgreSQL"
        f" {commit['postgres']['p50']:.2f}/{commit['postgres']['p99']:.2f}"
    )
    dispatch = {}
    rows = []
    for route in routes:
        sent = quantiles_ms(route.since_send)
        acked = quantiles_ms(route.since_ack)
        dispatch[route.key] = {
            **{f"{k}_ms": round(v, 2) for k, v in sent.items()},
            **{f"ack_{k}_ms": round(v, 2) for k, v in acked.items()},
            "jobs": len(route.since_send),
        }
        rows.append(
            [
                route.title,
                len(route.since_send),
                sent["p50"],
                sent["p90"],
                sent["p99"],
                acked["p50"],
                acked["p99"],
            ]
        )
    table(
        f"dispatch: create → received by one of {args.dispatch_daemons} waiting daemons (ms)",
        ["route", "jobs", "p50", "p90", "p99", "ack→ p50", "ack→ p99"],
        rows,
    )
    if restarted:
        print("note: a --workers 2 worker was restarted during the run")
    emit(
        {
            "bench": "scale_out",
            "daemons": args.daemons,
            "lines_per_update": args.lines,
            "turns": args.turns,
            "turn_seconds": round(turn_seconds, 2),
            "client": "grpcio",
            "workers_connections": "kernel" if args.kernel_spread else "pinned half each",
            "postgres": settings,
            "commit_ms": {k: {q: round(v, 3) for q, v in c.items()} for k, c in commit.items()},
            "lifecycle": {k: s.summary() for k, s in lifecycles.items()},
            "lifecycle_per_turn": {k: [round(r, 1) for r in v] for k, v in life_turns.items()},
            "updates": {k: s.summary() for k, s in updates.items()},
            "updates_per_turn": {k: [round(r, 1) for r in v] for k, v in update_turns.items()},
            "h2load_daemons": 0 if args.no_h2load else args.h2load_daemons,
            "updates_h2load": {k: s.summary() for k, s in h2loads.items()},
            "updates_h2load_per_turn": {
                k: [round(r, 1) for r in v] for k, v in h2load_turns.items()
            },
            "goal_ratio": goal_key,
            "connection_splits": splits,
            "ratios": {k: round(v, 3) for k, v in ratios.items()},
            "goal_workers_ratio": GOAL_WORKERS_RATIO,
            "goal_met": workers_ok,
            "dispatch": dispatch,
            "worker_restarted": restarted,
            "machine": machine(),
            "wall_s": round(time.perf_counter() - started_at, 2),
        }
    )


if __name__ == "__main__":
    main()

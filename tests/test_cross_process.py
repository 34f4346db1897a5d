"""Several `provd serve` processes on one database, over real sockets (issue 11,
point 7): a storm of daemons and jobs spread over them, wake-ups, cancels and log
followers that cross from one process to another, and SIGKILL of one of them in the
middle of a run.

Each scenario is a function of a `Deployment` (tests/deployments.py), run on each
deployment:

- postgres-3: three `provd serve --db postgresql://…` on one fresh schema of the
  throwaway cluster (tests/pg.py; skipped without PostgreSQL, failed with CI=true);
- sqlite-2: two `provd serve` on one SQLite file.

A scenario talks to "process i" only through the deployment (`jobs(i)`, `daemon(i,
…)`, `daemons(i)`, `daemon_urls(i)`, `kill(i)`), so a deployment whose processes
share one port (`--workers`) can be added to DEPLOYMENTS once it can pin a client to
a process.

No sleep orders anything: every wait is for an event or a condition (polled where
there is no event) under a generous deadline, which guards against hangs and is no
performance assertion. The wake-up latencies are printed (pytest -s)."""

from __future__ import annotations

import json
import random
import signal
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from connectrpc.errors import ConnectError

from provd.client.connect import call
from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.protocol import JobErrorCode
from tests import pg
from tests.archives import make_tar
from tests.daemon_clients import Acquisition, Follower, Jobs, TestDaemon, log, wait_until
from tests.deployments import Deployment, postgres_deployment, postgres_url, sqlite_deployment
from tests.processes import DaemonProcess, start_daemon

pytestmark = pytest.mark.slow

DEPLOYMENTS = ["postgres-3", "sqlite-2"]

HOUR = "3600"
# The backup polls at an hour: only a wake-up relayed between processes delivers in time.
NO_POLLS = ("--poll-interval", HOUR, "--log-poll-interval", HOUR)
FINISHED = {pb.JOB_STATUS_SUCCEEDED, pb.JOB_STATUS_FAILED, pb.JOB_STATUS_CANCELED}


# -- deployments ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[pg.Cluster]:
    yield from pg.cluster_for_fixture()


@dataclass(frozen=True)
class Database:
    kind: str  # one of DEPLOYMENTS
    postgres_url: str  # postgres-N
    db_path: Path  # sqlite-N
    data_home: Path

    @property
    def count(self) -> int:
        return int(self.kind.rsplit("-", 1)[1])


@pytest.fixture(params=DEPLOYMENTS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty database for one deployment: a schema of its own on the cluster (only
    postgres deployments ask for the cluster), or a new SQLite file."""
    kind = str(request.param)
    if kind.startswith("postgres"):
        cluster: pg.Cluster = request.getfixturevalue("pg_cluster")
        dsn = pg.create_schema(cluster)
        try:
            yield Database(kind, postgres_url(cluster, dsn), Path(), tmp_path / "data")
        finally:
            pg.drop_schema(cluster, dsn)
    else:
        yield Database(kind, "", tmp_path / "provd.db", tmp_path / "data")


DeploymentFactory = Callable[..., Awaitable[Deployment]]


@pytest.fixture
async def deploy(database: Database, nursery: trio.Nursery) -> AsyncIterator[DeploymentFactory]:
    """Start the deployment with `provd serve` flags; its processes are stopped at the
    end of the test (before the schema is dropped)."""
    started: list[Deployment] = []

    async def start(*args: str) -> Deployment:
        if database.postgres_url:
            deployment = await postgres_deployment(
                nursery, database.postgres_url, database.count, args, database.data_home
            )
        else:
            deployment = await sqlite_deployment(nursery, database.db_path, database.count, args)
        started.append(deployment)
        return deployment

    try:
        yield start
    finally:
        for deployment in started:
            await deployment.stop()
        for deployment in started:  # no process logged an unexpected error
            assert "Traceback" not in deployment.outputs(), deployment.outputs()


# -- helpers -------------------------------------------------------------------------


def _percentile_ms(samples: Sequence[float], percentile: int) -> str:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return f"{cuts[percentile - 1] * 1000:.1f} ms"


async def all_job_ids(jobs: Jobs, status: pb.JobStatus = pb.JOB_STATUS_UNSPECIFIED) -> list[str]:
    """Every job (in `status`) as ListJobs pages them."""
    ids: list[str] = []
    token = ""
    while True:
        page = await call(
            jobs.client.list_jobs, pb.ListJobsRequest(status=status, limit=500, page_token=token)
        )
        ids.extend(job.id for job in page.jobs)
        if not (token := page.next_page_token):
            return ids


async def wait_for_status(
    jobs: Jobs, job_id: str, statuses: set[pb.JobStatus], timeout: float = 30
) -> pb.Job:
    """GetJob until the job is in one of `statuses` (there is no event to wait for)."""
    with trio.fail_after(timeout):
        while (job := await jobs.get(job_id)).status not in statuses:
            await trio.sleep(0.05)
    return job


async def wait_connected(deployment: Deployment, i: int, names: set[str]) -> None:
    """Until ListDaemons through process i says every daemon named is connected: a
    stream of theirs is open to it (that process knows of its own streams at once)."""
    with trio.fail_after(30):
        while True:
            listed = {d.name for d in await deployment.daemons(i) if d.connected}
            if names <= listed:
                return
            await trio.sleep(0.02)


# -- 1. a storm over every process ------------------------------------------------------


async def storm(
    deployment: Deployment,
    nursery: trio.Nursery,
    *,
    daemons: int = 50,
    total: int = 500,
    creators: int = 4,
    seed: int = 0,
) -> dict[int, int]:
    """`daemons` test daemons, round robin over the processes, and `total` jobs
    created through random processes (by `creators` concurrent callers): every job
    delivered exactly once, every acquire stream answered exactly once (the method
    of tests/test_races.py, without the server's statistics: at the end every open
    stream, and any opened after, is canceled). Run with the backup polls at an hour,
    every job that waited reached its daemon through a wake-up. Returns how many jobs
    each process delivered."""
    rng = random.Random(seed)
    clients = [deployment.jobs(i) for i in range(len(deployment))]
    for client in clients:
        await client.file_hash()
    received: Counter[str] = Counter()
    delivered_by: Counter[int] = Counter()
    answers_per_stream: list[int] = []
    open_streams: set[Acquisition] = set()
    done = trio.Event()
    closing = False

    async def work(daemon: TestDaemon, process: int) -> None:
        while True:
            acquisition = await daemon.acquire(nursery)  # no checkpoint before the add
            open_streams.add(acquisition)
            if closing:  # opened after the storm ended: its one answer is empty
                acquisition.requests.cancel()
            try:
                answer = await acquisition.wait(timeout=60)
            finally:
                open_streams.discard(acquisition)
                answers_per_stream.append(len(acquisition.responses))
            if not answer.job_id:
                return  # canceled at the end of the storm
            received[answer.job_id] += 1
            delivered_by[process] += 1
            await daemon.complete(answer.job_id)
            if sum(received.values()) == total:
                done.set()

    created: list[str] = []
    to_create = iter(range(total))

    async def create() -> None:
        for _ in to_create:
            created.append((await rng.choice(clients).create()).id)

    fleet = [
        (deployment.daemon(i % len(deployment), f"storm-{i}"), i % len(deployment))
        for i in range(daemons)
    ]
    async with trio.open_nursery() as storm_nursery:
        for daemon, process in fleet:
            storm_nursery.start_soon(work, daemon, process)
        for _ in range(creators):
            storm_nursery.start_soon(create)
        with trio.fail_after(120):
            await done.wait()
        # Every stream still open (and every one opened from now on) is canceled and
        # gets exactly one, empty, answer; then every worker has returned.
        closing = True
        for acquisition in list(open_streams):
            acquisition.requests.cancel()
    assert len(created) == total
    assert sorted(received) == sorted(created)
    assert set(received.values()) == {1}
    assert set(answers_per_stream) == {1}
    assert len(answers_per_stream) == total + daemons
    # What any process reads: every job succeeded.
    for client in clients:
        assert sorted(await all_job_ids(client, pb.JOB_STATUS_SUCCEEDED)) == sorted(created)
    return dict(delivered_by)


async def test_storm_over_every_process(deploy: DeploymentFactory, nursery: trio.Nursery) -> None:
    deployment = await deploy(*NO_POLLS)
    started = time.monotonic()
    delivered_by = await storm(deployment, nursery)
    print(
        f"\n{deployment.name}: storm of 50 daemons x 500 jobs in"
        f" {time.monotonic() - started:.1f} s; jobs delivered by process: {delivered_by}"
    )
    # The daemons of every process took part (round robin, about 500/N each).
    assert set(delivered_by) == set(range(len(deployment)))


# -- 2. a job created through A reaches a daemon waiting on B ------------------------------


async def wake_up_latency(
    deployment: Deployment, nursery: trio.Nursery, *, count: int = 50, a: int = 0, b: int = 1
) -> list[float]:
    """`count` daemons wait on B (ListDaemons through B says so), then `count` jobs
    are created through A one after the other; each reaches one of them. Returns the
    seconds from sending each CreateJob to its job's arrival.

    "Connected" in ListDaemons is set when B registers a stream, just before its
    first (empty) claim; no client can see the claim itself, but CreateJob's own
    round trip and commit come long after it."""
    jobs_a = deployment.jobs(a)
    await jobs_a.file_hash()
    waiting = [deployment.daemon(b, f"waiting-{i}") for i in range(count)]
    arrived: dict[str, trio.Event] = {}
    arrival_times: dict[str, float] = {}
    acquisitions: list[Acquisition] = []

    async def watch(acquisition: Acquisition) -> None:
        await acquisition.ended.wait()
        at = time.perf_counter()
        for response in acquisition.responses:
            arrival_times[response.job_id] = at
            arrived.setdefault(response.job_id, trio.Event()).set()

    for daemon in waiting:
        acquisition = await daemon.acquire(nursery)
        acquisitions.append(acquisition)
        nursery.start_soon(watch, acquisition)
    await wait_connected(deployment, b, {daemon.name for daemon in waiting})

    latencies: list[float] = []
    created: list[str] = []
    for _ in range(count):
        sent = time.perf_counter()
        job = await jobs_a.create()
        created.append(job.id)
        # A guard, not a performance assertion: far inside the backup poll (an hour).
        with trio.fail_after(2):
            await arrived.setdefault(job.id, trio.Event()).wait()
        latencies.append(arrival_times[job.id] - sent)
    # Each stream answered once, each job to one stream.
    for acquisition in acquisitions:
        with trio.fail_after(10):
            await acquisition.ended.wait()
    assert sorted(acq.job_id for acq in acquisitions) == sorted(created)
    return latencies


async def test_a_job_created_through_a_reaches_a_daemon_waiting_on_b(
    deploy: DeploymentFactory, nursery: trio.Nursery
) -> None:
    deployment = await deploy(*NO_POLLS)
    latencies = await wake_up_latency(deployment, nursery)
    print(
        f"\n{deployment.name}: CreateJob sent through A -> received by a daemon waiting on B,"
        f" {len(latencies)} jobs: p50 {_percentile_ms(latencies, 50)},"
        f" p99 {_percentile_ms(latencies, 99)}, max {max(latencies) * 1000:.1f} ms"
    )


# -- 3. CancelJob through A reaches the daemon on B -----------------------------------------


async def cancel_across(deployment: Deployment, nursery: trio.Nursery) -> None:
    a, b = 0, 1
    others = [i for i in range(len(deployment)) if i != b]
    jobs_a = deployment.jobs(a)
    daemon = deployment.daemon(b, "canceled-on-b")

    # A running job: created through A, taken by a daemon waiting on B.
    acquisition = await daemon.acquire(nursery)
    await wait_connected(deployment, b, {daemon.name})
    job = await jobs_a.create()
    assert (await acquisition.wait()).job_id == job.id
    followers = {i: Follower(deployment.jobs(i), job.id, nursery) for i in range(len(deployment))}
    await wait_until(lambda: all("Queued" in f.stages() for f in followers.values()))
    assert not (await daemon.update(job.id)).canceled

    # Canceled through A: every process's follower hears it, the daemon's next
    # UpdateJob through B answers canceled, and its FailJob without an error (through
    # B) ends the job canceled, for every process.
    assert (await jobs_a.cancel(job.id)).status == pb.JOB_STATUS_CANCELING
    await wait_until(lambda: all("Cancel" in f.stages() for f in followers.values()))
    assert (await daemon.update(job.id)).canceled
    await daemon.fail(job.id)
    with trio.fail_after(10):
        for follower in followers.values():
            await follower.ended.wait()
    for i in range(len(deployment)):
        assert (await deployment.jobs(i).get(job.id)).status == pb.JOB_STATUS_CANCELED

    # A pending job canceled through A is never sent to a daemon on B: the next one
    # (created later, so behind it in the queue) is.
    pending = await jobs_a.create()
    assert (await jobs_a.cancel(pending.id)).status == pb.JOB_STATUS_CANCELED
    later = await deployment.jobs(others[-1]).create()
    assert (await (await daemon.acquire(nursery)).wait()).job_id == later.id
    never_ran = await deployment.jobs(b).get(pending.id)
    assert never_ran.status == pb.JOB_STATUS_CANCELED
    assert not never_ran.HasField("started_at") and not never_ran.worker_id


async def test_cancel_through_a_reaches_the_daemon_on_b(
    deploy: DeploymentFactory, nursery: trio.Nursery
) -> None:
    await cancel_across(await deploy(*NO_POLLS), nursery)


# -- 4. StreamJobLogs through A follows lines sent through B --------------------------------


async def logs_across(deployment: Deployment, nursery: trio.Nursery, *, lines: int = 5) -> None:
    """Lines a daemon sends through B, one at a time: a follower on every other
    process shows each before the next is sent; the job's end (through B) ends them."""
    b = 1
    daemon = deployment.daemon(b, "logging-on-b")
    job = await deployment.jobs(0).create()
    assert (await (await daemon.acquire(nursery)).wait()).job_id == job.id
    followers = [
        Follower(deployment.jobs(i), job.id, nursery) for i in range(len(deployment)) if i != b
    ]
    await wait_until(lambda: all("Queued" in f.stages() for f in followers))
    sent: list[str] = []
    for n in range(lines):
        sent.append(f"line {n} from B")
        await daemon.update(job.id, logs=[log(sent[-1])])
        await wait_until(lambda: all(sent[-1] in f.outputs() for f in followers))
        for follower in followers:  # as they arrive: nothing sent later is there yet
            assert [o for o in follower.outputs() if o.startswith("line ")] == sent
    await daemon.complete(job.id)
    with trio.fail_after(10):
        for follower in followers:
            await follower.ended.wait()
    for follower in followers:
        assert [o for o in follower.outputs() if o.startswith("line ")] == sent


async def test_log_followers_through_a_see_lines_sent_through_b(
    deploy: DeploymentFactory, nursery: trio.Nursery
) -> None:
    await logs_across(await deploy(*NO_POLLS), nursery)


# -- 5. SIGKILL one process in the middle of a run ------------------------------------------

HANG_SECONDS = 3.0
# The hang timeout is short (a job held by a daemon that vanished ends within seconds);
# the backup poll finds a job whose wake-up the killed process never got to send.
KILL_ARGS = ("--hang-timeout", str(HANG_SECONDS), "--poll-interval", "2")
ECHO_SPEC = {"stages": [{"name": "Working", "lines": ["one", "two", "three"], "line_delay": 0.05}]}


@dataclass
class Created:
    job_id: str
    daemon: str  # the one daemon whose tag it carries
    after_kill: bool


async def start_real_daemon(
    nursery: trio.Nursery, deployment: Deployment, first: int, name: str
) -> DaemonProcess:
    """`provd daemon` with every process's URL, process `first` first, taking only
    jobs tagged with its name."""
    urls = deployment.daemon_urls(first)
    more = [arg for url in urls[1:] for arg in ("--url", url)]
    return await start_daemon(nursery, urls[0], *more, "--name", name, "--tag", f"daemon={name}")


async def kill_one_in_the_middle(deployment: Deployment, nursery: trio.Nursery) -> dict[str, int]:
    """Real `provd daemon`s (each with every URL: two start on the victim, one on each
    survivor) run short echo jobs created through every process; a test daemon (the
    ghost) holds a job it took through the victim and heartbeats through it. The
    victim is SIGKILLed in the middle of it all. Then:

    - every CreateJob that returned OK is in the database (read through a survivor);
    - the daemons that were on the victim moved to a survivor and run the jobs meant
      for them (each job is tagged for one daemon) created after the kill;
    - every job created before the kill ends succeeded, or failed as hung (one the
      victim had claimed but not handed over);
    - the ghost's job, whose daemon vanished with the victim, is failed as hung by a
      survivor (the victim was dead by then)."""
    victim = len(deployment) - 1
    survivors = [i for i in range(len(deployment)) if i != victim]
    reader = deployment.jobs(survivors[0])
    rng = random.Random(11)
    spec = json.dumps(ECHO_SPEC).encode()
    uploaded = await call(
        reader.client.upload_file, pb.UploadFileRequest(data=make_tar({"provd-echo.json": spec}))
    )

    placement = [*survivors, victim, victim]
    names = [f"real-{k}-on-{first}" for k, first in enumerate(placement)]
    on_victim = [name for name, first in zip(names, placement, strict=True) if first == victim]
    real: dict[str, DaemonProcess] = {}

    async def start(k: int) -> None:
        real[names[k]] = await start_real_daemon(nursery, deployment, placement[k], names[k])

    async with trio.open_nursery() as starting:
        for k in range(len(names)):
            starting.start_soon(start, k)

    # The ghost: takes a job through the victim and heartbeats through it only.
    ghost = deployment.daemon(victim, "ghost", tags={"ghost": "yes"})
    ghost_acquisition = await ghost.acquire(nursery)
    await wait_connected(deployment, victim, {"ghost"})
    ghost_job = await reader.create(tags={"ghost": "yes"}, file_hash=uploaded.hash)
    assert (await ghost_acquisition.wait()).job_id == ghost_job.id
    killed = trio.Event()

    async def heartbeat_until_the_kill() -> None:
        while not killed.is_set():
            try:
                await ghost.update(ghost_job.id)
            except ConnectError:
                if killed.is_set():
                    return  # in flight at the kill: the victim died under it
                raise
            with trio.move_on_after(0.3):  # the heartbeat's pace; the kill ends it
                await killed.wait()

    nursery.start_soon(heartbeat_until_the_kill)

    acknowledged: list[Created] = []
    refused_by_victim = 0
    stop_creating = trio.Event()

    async def creator() -> None:
        nonlocal refused_by_victim
        while not stop_creating.is_set():
            process = rng.choice(deployment.alive())
            daemon = rng.choice(names)
            after_kill = killed.is_set()
            try:
                job = await deployment.jobs(process).create(
                    tags={"daemon": daemon}, file_hash=uploaded.hash
                )
            except ConnectError:
                if process != victim:
                    raise
                refused_by_victim += 1  # in flight at the kill: not acknowledged
                continue
            acknowledged.append(Created(job.id, daemon, after_kill))

    async with trio.open_nursery() as load:
        for _ in range(2):
            load.start_soon(creator)
        # The middle of the run: jobs are being created and several have succeeded.
        with trio.fail_after(60):
            while len(await all_job_ids(reader, pb.JOB_STATUS_SUCCEEDED)) < 10:
                await trio.sleep(0.05)
        killed.set()
        await deployment.kill(victim)
        ghost_at_the_kill = await reader.get(ghost_job.id)
        # Load on the survivors, then one job for each daemon that was on the victim.
        with trio.fail_after(60):
            while sum(c.after_kill for c in acknowledged) < 20:
                await trio.sleep(0.05)
        stop_creating.set()
    for name in on_victim:
        job = await reader.create(tags={"daemon": name}, file_hash=uploaded.hash)
        acknowledged.append(Created(job.id, name, True))

    # Every acknowledged job is in the database and ends.
    ids = {d.name: d.id for d in await deployment.daemons(survivors[0])}
    outcomes: Counter[str] = Counter()
    ran_after_kill: Counter[str] = Counter()
    for created in acknowledged:
        job = await wait_for_status(reader, created.job_id, FINISHED, timeout=60)
        assert job.tags["daemon"] == created.daemon
        if job.status == pb.JOB_STATUS_SUCCEEDED:
            outcomes["succeeded"] += 1
            assert job.worker_id == ids[created.daemon]
            ran_after_kill[created.daemon] += created.after_kill
        else:
            # Only a job the victim claimed and never handed over, or handed to a
            # daemon whose stream broke with it, can end otherwise: as hung.
            assert not created.after_kill, job
            assert job.status == pb.JOB_STATUS_FAILED and job.error_code == JobErrorCode.JOB_HUNG
            # ... and never ran: a daemon that got it would have run it to the end,
            # heartbeating through a survivor.
            stages = {line.stage for line in await reader.logs(job.id)}
            assert not stages & {"Setting up", "Working"}, (job, stages)
            outcomes["hung"] += 1
    for name in on_victim:
        assert ran_after_kill[name] >= 1, (name, ran_after_kill)
        output = real[name].output.decode()
        assert f"provd at {deployment.urls[victim]} is not answering; moving to" in output, output

    # The ghost's job: running at the kill, failed as hung afterwards, by a survivor.
    assert ghost_at_the_kill.status == pb.JOB_STATUS_RUNNING, ghost_at_the_kill
    hung = await wait_for_status(reader, ghost_job.id, FINISHED)
    assert hung.status == pb.JOB_STATUS_FAILED and hung.error_code == JobErrorCode.JOB_HUNG
    for i in survivors:
        assert (await deployment.jobs(i).get(ghost_job.id)).error_code == JobErrorCode.JOB_HUNG
    failed_it = f"job {ghost_job.id} hung on daemon {ids['ghost']}; failed it"
    await wait_until(lambda: any(failed_it in deployment.output(i) for i in survivors))

    # The real daemons stop cleanly on SIGTERM, through the survivors.
    for daemon in real.values():
        daemon.signal(signal.SIGTERM)
    for name, daemon in real.items():
        assert await daemon.wait() == 0, (name, daemon.output.decode())
    return {
        "acknowledged": len(acknowledged),
        "after_kill": sum(c.after_kill for c in acknowledged),
        "refused_by_victim": refused_by_victim,
        **outcomes,
    }


async def test_sigkill_one_process_in_the_middle_of_a_run(
    deploy: DeploymentFactory, nursery: trio.Nursery
) -> None:
    deployment = await deploy(*KILL_ARGS)
    figures = await kill_one_in_the_middle(deployment, nursery)
    print(f"\n{deployment.name}: SIGKILL of one process: {figures}")

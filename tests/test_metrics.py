"""`/metrics`: what a scrape shows after real calls over real sockets, the
`--metrics-listen` address, `--workers` adding up every worker's counters, and the
list in docs/operations.md matching what provd exposes."""

from __future__ import annotations

import json
import re
import signal
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path

import pytest
import trio
from connectrpc.protocol import ProtocolType
from prometheus_client.exposition import generate_latest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from trio.testing import MockClock

from provd.app import Running, serve
from provd.client.connect import call, http2_client, job_client
from provd.events import JobEvents
from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.metrics import METRICS, Metrics
from provd.reapers import ReaperSettings, reap_hung_jobs, reap_unroutable_jobs
from provd.registry import DaemonRegistry
from provd.store.memory import MemoryStore
from tests.conftest import ADMIN_TOKEN, Server, server_settings
from tests.daemon_clients import Jobs, TestDaemon
from tests.plain_http import http_get
from tests.processes import provd_env, start_server
from tests.store.support import make_job, make_running
from tests.virtual_clock import virtual_now

DOCS = Path(__file__).parent.parent / "docs" / "operations.md"


class Scrape:
    """One /metrics page, parsed."""

    def __init__(self, text: str) -> None:
        self.families = {family.name: family for family in text_string_to_metric_families(text)}

    def samples(self, name: str) -> list[Sample]:
        return [s for family in self.families.values() for s in family.samples if s.name == name]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples named `name` whose labels include `labels`."""
        return sum(
            s.value
            for s in self.samples(name)
            if all(s.labels.get(key) == value for key, value in labels.items())
        )


async def scrape(url: str) -> Scrape:
    status, body = await http_get(url + "/metrics")
    assert status == 200, body
    return Scrape(body)


async def run_one_job(server: Server, nursery: trio.Nursery) -> str:
    """Create a job over Connect, have a gRPC daemon take and complete it."""
    jobs = Jobs(server)
    created = await jobs.create()
    daemon = TestDaemon(server, "metrics-daemon", protocol=ProtocolType.GRPC)
    acquisition = await daemon.acquire(nursery)
    acquired = await acquisition.wait()
    assert acquired.job_id == created.id
    await daemon.update(created.id, logs=[{"output": "hello", "stage": "plan"}])
    await daemon.complete(created.id)
    return created.id


async def test_a_job_through_a_daemon_moves_the_counters(
    server: Server, nursery: trio.Nursery
) -> None:
    before = await scrape(server.url)
    assert before.value("provd_jobs_created_total") == 0
    await run_one_job(server, nursery)
    after = await scrape(server.url)
    assert after.value("provd_jobs_created_total", type="template_import") == 1
    assert (
        after.value("provd_jobs_completed_total", type="template_import", outcome="succeeded") == 1
    )
    assert after.value("provd_job_dispatch_latency_seconds_count") == 1
    assert after.value("provd_job_dispatch_latency_seconds_bucket", le="+Inf") == 1
    assert after.value("provd_log_lines_stored_total") == 1
    assert after.value("provd_log_lines_dropped_total") == 0
    # Connect for the job API, gRPC for the daemon.
    assert (
        after.value(
            "provd_rpc_requests_total",
            method="provd.v1.JobService/CreateJob",
            protocol="connect",
            code="ok",
        )
        == 1
    )
    for method in ("AcquireJobWithCancel", "UpdateJob", "CompleteJob"):
        assert (
            after.value(
                "provd_rpc_requests_total",
                method=f"provisionerd.ProvisionerDaemon/{method}",
                protocol="grpc",
                code="ok",
            )
            == 1
        ), method
    assert (
        after.value(
            "provd_rpc_duration_seconds_count",
            method="provisionerd.ProvisionerDaemon/CompleteJob",
            protocol="grpc",
        )
        == 1
    )
    assert after.value("provd_store_commit_batch_size_count") >= 4
    assert after.value("provd_store_commit_duration_seconds_sum") > 0
    # A daemon that streamed and reported is connected or idle, never stale.
    assert after.value("provd_daemons", state="stale") == 0
    assert after.value("provd_daemons") == 1


async def test_errors_are_counted_by_code(server: Server) -> None:
    client = job_client(server.url, "wrong-token")
    with pytest.raises(Exception, match="invalid admin token"):
        await call(client.get_job, pb.GetJobRequest(id="00000000-0000-0000-0000-000000000000"))
    grpc = job_client(
        server.url, ADMIN_TOKEN, protocol=ProtocolType.GRPC, http_client=http2_client()
    )
    with pytest.raises(Exception, match="no job"):
        await call(grpc.get_job, pb.GetJobRequest(id="00000000-0000-0000-0000-000000000000"))
    web = job_client(server.url, ADMIN_TOKEN, protocol=ProtocolType.GRPC_WEB)
    await call(web.list_jobs, pb.ListJobsRequest())
    page = await scrape(server.url)
    get_job = "provd.v1.JobService/GetJob"
    assert page.value("provd_rpc_requests_total", method=get_job, code="unauthenticated") == 1
    assert (
        page.value("provd_rpc_requests_total", method=get_job, protocol="grpc", code="not_found")
        == 1
    )
    assert (
        page.value(
            "provd_rpc_requests_total",
            method="provd.v1.JobService/ListJobs",
            protocol="grpc-web",
            code="ok",
        )
        == 1
    )


async def test_websocket_calls_are_counted(server: Server, nursery: trio.Nursery) -> None:
    jobs = Jobs(server)
    created = await jobs.create()
    daemon = TestDaemon(server, "ws-daemon", transport="websocket")
    assert (await (await daemon.acquire(nursery)).wait()).job_id == created.id
    page = await scrape(server.url)
    assert (
        page.value(
            "provd_rpc_requests_total",
            method="provisionerd.ProvisionerDaemon/AcquireJobWithCancel",
            protocol="websocket",
            code="ok",
        )
        == 1
    )


async def test_queue_depth_reflects_pending_jobs(server: Server) -> None:
    jobs = Jobs(server)
    for _ in range(3):
        await jobs.create()
    await jobs.create(provisioner="terraform")
    canceled = await jobs.create(provisioner="terraform")
    await jobs.cancel(canceled.id)
    page = await scrape(server.url)
    assert page.value("provd_queue_pending_jobs", organization="default", provisioner="echo") == 3
    assert (
        page.value("provd_queue_pending_jobs", organization="default", provisioner="terraform") == 1
    )
    assert page.value("provd_queue_oldest_pending_age_seconds", provisioner="echo") >= 0
    assert page.value("provd_jobs_completed_total", outcome="canceled") == 1


async def test_metrics_listen_serves_metrics_elsewhere(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    settings = server_settings(tmp_path / "provd.db", metrics_listen="127.0.0.1:0")
    running: Running = await nursery.start(partial(serve, settings))
    assert running.metrics_url is not None and running.metrics_url != running.url
    page = await scrape(running.metrics_url)
    assert "provd_jobs_created" in page.families
    status, _ = await http_get(running.url + "/metrics")
    assert status == 404
    for path in ("/healthz", "/readyz"):
        status, _ = await http_get(running.metrics_url + path)
        assert status == 200, path
    status, _ = await http_get(running.url + "/readyz")
    assert status == 200


def documented_metrics() -> dict[str, tuple[str, tuple[str, ...]]]:
    """The metrics docs/operations.md lists under "## Metrics": name -> (type, labels)."""
    section = DOCS.read_text().split("## Metrics", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(provd_\w+)` \| (\w+) \| ([^|]*) \|", section, re.MULTILINE)
    return {name: (kind, tuple(re.findall(r"`(\w+)`", labels))) for name, kind, labels in rows}


def exposed_names(page: Scrape) -> dict[str, str]:
    """Metric name (as documented: counters with `_total`) -> type, from a scrape."""
    names = {}
    for family in page.families.values():
        name = family.name + "_total" if family.type == "counter" else family.name
        names[name] = family.type
    return names


async def test_the_documented_list_is_what_provd_exposes(server: Server) -> None:
    page = await scrape(server.url)
    exposed = {
        name: kind for name, kind in exposed_names(page).items() if name.startswith("provd_")
    }
    documented = documented_metrics()
    assert {name: kind for name, (kind, _) in documented.items()} == exposed
    assert {info.name: (info.type, info.labels) for info in METRICS} == documented


@pytest.mark.slow
async def test_workers_add_up_their_counters(tmp_path: Path, nursery: trio.Nursery) -> None:
    """With --workers 2, jobs created through both workers all count, whichever worker
    a scrape lands on; the supervisor removes its metrics directory on exit."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    db_path = tmp_path / "provd.db"
    process = await start_server(
        nursery, db_path, "--workers", "2", env=provd_env(TMPDIR=str(temp))
    )
    [directory] = temp.glob("provd-metrics-*")
    server = Server(process.url, db_path, server_settings(db_path), None)  # type: ignore[arg-type]
    file_hash = await Jobs(server).file_hash()
    created = 0
    with trio.fail_after(60):
        # The kernel spreads new connections over the workers (SO_REUSEPORT): create
        # jobs, each on a connection of its own, until both workers have created some.
        while len(_created_by_worker(directory)) < 2:
            await _create_on_a_new_connection(process.url, file_hash)
            created += 1
    assert sum(_created_by_worker(directory).values()) == created
    for _ in range(6):  # any worker's page adds up every worker's counters
        page = await scrape(process.url)
        assert page.value("provd_jobs_created_total") == created
        assert (
            page.value(
                "provd_rpc_requests_total", method="provd.v1.JobService/CreateJob", code="ok"
            )
            == created
        )
        assert page.value("provd_queue_pending_jobs") == created
    process.signal(signal.SIGTERM)
    assert await process.wait() == 0
    assert not directory.exists()


async def _create_on_a_new_connection(url: str, file_hash: str) -> None:
    """CreateJob over Connect JSON on a new HTTP/1.1 connection (urllib keeps none)."""
    body = json.dumps({"fileHash": file_hash, "provisioner": "echo", "templateImport": {}})
    request = urllib.request.Request(
        url + "/provd.v1.JobService/CreateJob",
        data=body.encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_TOKEN}"},
    )

    def post() -> None:
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

    await trio.to_thread.run_sync(post)


def _created_by_worker(directory: Path) -> dict[str, float]:
    """Worker pid -> the jobs it counted as created, read from its value file."""
    created: dict[str, float] = {}
    for path in directory.glob("counter_*.db"):
        pid = path.stem.removeprefix("counter_")
        for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path)):  # type: ignore[no-untyped-call]
            if json.loads(key)[0] == "provd_jobs_created" and value > 0:
                created[pid] = created.get(pid, 0) + value
    return created


@pytest.mark.slow
async def test_workers_serve_metrics_listen(tmp_path: Path, nursery: trio.Nursery) -> None:
    """With --workers and --metrics-listen every worker serves the metrics address
    (the supervisor prints it) and none serves /metrics on the main port."""
    process = await start_server(
        nursery, tmp_path / "provd.db", "--workers", "2", "--metrics-listen", "127.0.0.1:0"
    )
    with trio.fail_after(15):
        while (found := re.search(rb"metrics on (http://\S+)/metrics", process.output)) is None:
            await trio.sleep(0.01)
    metrics_url = found.group(1).decode()
    for _ in range(4):  # new connections: whichever worker takes them
        # (Multiprocess mode leaves out a labelled counter that counted nothing yet.)
        assert "provd_log_lines_stored" in (await scrape(metrics_url)).families
        assert (await http_get(process.url + "/metrics"))[0] == 404
        assert await http_get(metrics_url + "/readyz") == (200, "ready\n")
    process.signal(signal.SIGTERM)
    assert await process.wait() == 0


async def test_the_reapers_count_what_they_fail(
    nursery: trio.Nursery, autojump_clock: MockClock
) -> None:
    """A hung job and an unroutable one, on virtual time: each reaper counts its own,
    and both count as failed jobs."""
    store = MemoryStore(now=virtual_now)
    registry = DaemonRegistry(store, heartbeat_interval=10, now=virtual_now)
    metrics = Metrics()
    await make_running(store, "quiet-daemon")
    await make_job(store, provisioner="nobody-runs-this")
    settings = ReaperSettings(
        hang_timeout_seconds=300, pending_timeout_seconds=600, interval_seconds=30
    )
    events = JobEvents()
    nursery.start_soon(
        partial(reap_hung_jobs, store, events, settings, now=virtual_now, metrics=metrics)
    )
    nursery.start_soon(
        partial(
            reap_unroutable_jobs,
            store,
            registry,
            events,
            settings,
            now=virtual_now,
            metrics=metrics,
        )
    )
    await trio.sleep(700)
    page = Scrape(generate_latest(metrics.registry).decode())
    assert page.value("provd_reaper_jobs_failed_total", reaper="hung") == 1
    assert page.value("provd_reaper_jobs_failed_total", reaper="unroutable") == 1
    assert page.value("provd_jobs_completed_total", outcome="failed") == 2

"""Dispatch latency: how long a new job takes to reach a daemon that is already waiting.

    .venv/bin/python bench/dispatch.py [--jobs 1000] [--daemons 4] [--subprocess]

A real provd server on 127.0.0.1:0, with a temporary SQLite file and the durable
defaults (synchronous=full): by default in this process (its scheduler says when a
daemon waits); with `--subprocess`, `python -m provd serve` in a process of its own,
as users run it, so the clients below do not share the server's GIL (`just bench`
uses this). `--daemons` daemons each keep an AcquireJobWithCancel stream open over
h2c; as soon as a stream answers, its daemon stamps the time and opens a new one.
The jobs are then created one at a time through the job API (CreateJob over
Connect), each only once a daemon is waiting and after the previous job arrived, so
every figure is one job's trip through an idle server:

    create→received        from just before CreateJob is sent
    created(ack)→received  from CreateJob's response; negative when the daemon had
                           the job before the creator had its answer
    GetJob round trip      the yardstick: after each job arrived, the creator asks for
                           it with GetJob (same client, same thread hop)

The goal compares create→received with the GetJob round trip's p50: p50 ≤ 1.5 times
it, p99 ≤ 3 times it.

Both ends stamp `time.perf_counter()` in their own thread of this one process, so the
clocks agree. Jobs are left running (the daemons never report back): only dispatch is
measured. The first `--warmup` jobs (connections, caches) are not counted. The
clients are provd.client's sync clients in worker threads (connectrpc's async client
needs asyncio). With `--subprocess` the scheduler is out of reach: every daemon is
first seen connected through ListDaemons, and with one job in flight at a time and
at least two daemons, all but the one that just got a job are always waiting.
The last line printed is one JSON object with the results.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path

import trio

from provd.app import Running, serve
from provd.client.connect import AcquireRequests, daemon_client, daemon_service_client, job_client
from provd.config import ServerSettings
from provd.gen.provd.v1 import daemons_pb2 as dpb
from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.gen.provisionerd.provisionerd_connect_client import ProvisionerDaemonClientSync

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import provd_server

ADMIN_TOKEN = "bench-admin-token"
# Issue 14: dispatch p50 within 1.5x, p99 within 3x the GetJob round trip's p50.
GOAL_P50_RATIO = 1.5
GOAL_P99_RATIO = 3.0
DAEMON_PSK = "bench-daemon-psk"


def template_tar() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:") as archive:
        content = b'resource "null_resource" "example" {}\n'
        info = tarfile.TarInfo("main.tf")
        info.size = len(content)
        archive.addfile(info, io.BytesIO(content))
    return out.getvalue()


class Daemon:
    """One daemon in a worker thread: a stream always open, reopened after each answer."""

    def __init__(self, url: str, name: str, arrived: trio.MemorySendChannel[tuple[str, float]]):
        self.client: ProvisionerDaemonClientSync = daemon_client(url, DAEMON_PSK, name=name)
        self.arrived = arrived
        self.stopping = threading.Event()
        self.requests = AcquireRequests()

    def run(self) -> None:
        while True:
            self.requests = requests = AcquireRequests()
            if self.stopping.is_set():  # after publishing `requests`: see stop()
                return
            for acquired in self.client.acquire_job_with_cancel(requests):
                received = time.perf_counter()
                if acquired.job_id:
                    trio.from_thread.run_sync(self.arrived.send_nowait, (acquired.job_id, received))
            requests.close()

    def stop(self) -> None:
        """From the trio thread: the current stream gets CancelAcquire, no new one opens."""
        self.stopping.set()
        self.requests.cancel()


def summarize(name: str, seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    row = {"p50": cuts[49], "p90": cuts[89], "p99": cuts[98], "max": ms[-1]}
    print(f"{name:<24}{len(ms):>7}" + "".join(f"{v:>10.2f}" for v in row.values()))
    return row


@contextlib.asynccontextmanager
async def in_process_server(tmp: str) -> AsyncIterator[tuple[str, Callable[[], bool]]]:
    """provd in this trio run; yields its URL and "is a daemon waiting?"."""
    stop_server = trio.Event()
    settings = ServerSettings(
        listen="127.0.0.1:0",
        db_path=Path(tmp) / "provd.db",
        admin_token=ADMIN_TOKEN,
        daemon_psk=DAEMON_PSK,
    )
    async with trio.open_nursery() as server_nursery:
        running: Running = await server_nursery.start(
            partial(serve, settings, shutdown_trigger=stop_server.wait)
        )
        scheduler = running.scheduler
        yield running.url, lambda: scheduler.statistics().waiters >= 1
        stop_server.set()


@contextlib.asynccontextmanager
async def subprocess_server(tmp: str) -> AsyncIterator[tuple[str, Callable[[], bool]]]:
    """`python -m provd serve` (bench/_common.py); a daemon is always waiting once all
    have connected (see the module's docstring)."""
    with provd_server(Path(tmp) / "provd.db") as server:
        yield server.url, lambda: True


def connected(url: str) -> int:
    response = daemon_service_client(url, ADMIN_TOKEN).list_daemons(dpb.ListDaemonsRequest())
    return sum(1 for daemon in response.daemons if daemon.connected)


async def bench(jobs: int, daemons: int, warmup: int, in_subprocess: bool) -> dict[str, object]:
    server = subprocess_server if in_subprocess else in_process_server
    with tempfile.TemporaryDirectory(prefix="provd-bench-") as tmp:
        async with server(tmp) as (url, daemon_waiting):
            client = job_client(url, ADMIN_TOKEN)
            in_thread = partial(trio.to_thread.run_sync, limiter=trio.CapacityLimiter(daemons + 8))
            upload = pb.UploadFileRequest(data=template_tar())
            request = pb.CreateJobRequest(
                provisioner="echo",
                file_hash=(await in_thread(client.upload_file, upload)).hash,
                template_import=pb.TemplateImportInput(),
            )
            send, arrivals = trio.open_memory_channel[tuple[str, float]](jobs + warmup)
            pool = [Daemon(url, f"bench-{i}", send) for i in range(daemons)]
            since_send: list[float] = []
            since_ack: list[float] = []
            get_job: list[float] = []
            async with trio.open_nursery() as daemon_nursery:
                for daemon in pool:
                    daemon_nursery.start_soon(in_thread, daemon.run)
                with trio.fail_after(30):
                    while await in_thread(connected, url) < daemons:
                        await trio.sleep(0.01)
                for n in range(warmup + jobs):
                    with trio.fail_after(10):
                        while not daemon_waiting():
                            await trio.sleep(0.0005)
                        sent = time.perf_counter()
                        job = await in_thread(client.create_job, request)
                        acked = time.perf_counter()
                        job_id, received = await arrivals.receive()
                    assert job_id == job.id, (job_id, job.id)  # one job in flight at a time
                    # The yardstick: one small unary RPC, same client, same thread hop.
                    asked = time.perf_counter()
                    await in_thread(client.get_job, pb.GetJobRequest(id=job.id))
                    answered = time.perf_counter()
                    if n >= warmup:
                        since_send.append(received - sent)
                        since_ack.append(received - acked)
                        get_job.append(answered - asked)
                for daemon in pool:
                    daemon.stop()
        assert arrivals.statistics().current_buffer_used == 0, "a job arrived twice"

    print(f"dispatch latency over {jobs} jobs, {daemons} waiting daemons (ms)")
    print(f"{'':<24}{'count':>7}{'p50':>10}{'p90':>10}{'p99':>10}{'max':>10}")
    sent_row = summarize("create→received", since_send)
    ack_row = summarize("created(ack)→received", since_ack)
    get_row = summarize("GetJob round trip", get_job)
    p50_ratio = sent_row["p50"] / get_row["p50"]
    p99_ratio = sent_row["p99"] / get_row["p50"]
    print(
        f"create→received ÷ GetJob p50: p50 {p50_ratio:.2f} (goal ≤ {GOAL_P50_RATIO}:"
        f" {'met' if p50_ratio <= GOAL_P50_RATIO else 'missed'}), p99 {p99_ratio:.2f}"
        f" (goal ≤ {GOAL_P99_RATIO}: {'met' if p99_ratio <= GOAL_P99_RATIO else 'missed'})"
    )
    result: dict[str, object] = {
        "bench": "dispatch",
        "jobs": jobs,
        "daemons": daemons,
        "server": "subprocess" if in_subprocess else "in-process",
    }
    result.update({f"{k}_ms": round(v, 3) for k, v in sent_row.items()})
    result.update({f"ack_{k}_ms": round(v, 3) for k, v in ack_row.items()})
    result.update({f"get_job_{k}_ms": round(v, 3) for k, v in get_row.items()})
    result.update(
        {
            "p50_over_get_job_p50": round(p50_ratio, 3),
            "p99_over_get_job_p50": round(p99_ratio, 3),
            "goal_met": p50_ratio <= GOAL_P50_RATIO and p99_ratio <= GOAL_P99_RATIO,
        }
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--daemons", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=20, help="jobs run first, not counted")
    parser.add_argument(
        "--subprocess", action="store_true", help="run provd as `python -m provd serve`"
    )
    args = parser.parse_args()
    if args.subprocess and args.daemons < 2:
        parser.error("--subprocess needs at least 2 daemons (one is always waiting)")
    started = time.perf_counter()
    result = trio.run(bench, args.jobs, args.daemons, args.warmup, args.subprocess)
    result["wall_s"] = round(time.perf_counter() - started, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

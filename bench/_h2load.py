"""An UpdateJob load driven by h2load (nghttp2's HTTP/2 load generator), for scaling.

The grpcio clients of bench/_logload.py spend about 0.3 ms of this process's CPU per
call. On a 2-core machine that is a sixth of the machine taken from the servers being
compared, and it grows with the rate, so it caps what a second worker can show. h2load
is C: one process per daemon, one connection each, one call in flight, a few
microseconds per call. It sends the same request as the grpcio load: gRPC over
cleartext HTTP/2, the daemon's headers, an UpdateJob with `lines` log lines to a job
the daemon holds.

h2load counts a gRPC error as a success (HTTP 200; the status is in the trailers), so
calls are counted in the database instead: every stored UpdateJob adds the same
number of bytes to its job's `log_bytes` (`calibrate` measures that number). A job
takes `budget` calls at most (under provd's per-job cap: past it, lines would be
dropped and calls get cheaper), so each process runs `-n` what its job has left, then
moves to the daemon's next job; at the deadline it is interrupted. Install h2load with
`apt-get install nghttp2-client` (Debian, Ubuntu) or `brew install nghttp2`.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from _logload import daemon_metadata, log_batch

from provd.gen.provisionerd import provisionerd_pb2 as pd

UPDATE_JOB_PATH = "/provisionerd.ProvisionerDaemon/UpdateJob"
CALIBRATION_CALLS = 5


def h2load() -> str:
    """The h2load executable, or SystemExit saying how to install it."""
    found = shutil.which("h2load")
    if found is None:
        raise SystemExit("h2load not found: apt-get install nghttp2-client (or pass --no-h2load)")
    return found


@dataclass
class H2Daemon:
    """One daemon of the load: its name and the running jobs it holds."""

    name: str
    jobs: list[str]


@dataclass
class H2Result:
    updates: int
    seconds: float
    client_cpu_s: float  # the h2load processes' CPU


class H2Load:
    """UpdateJob from h2load processes against one server (or one `--workers` port),
    counted in its SQLite file `db_path`."""

    def __init__(self, url: str, db_path: Path, workdir: Path, lines: int) -> None:
        self.url = url
        self.db_path = db_path
        self.workdir = workdir
        self.lines = lines
        self.bytes_per_update = 0
        self.budget = 0  # calls per job

    def calibrate(self, daemon: H2Daemon, job_budget_bytes: int) -> None:
        """Send `CALIBRATION_CALLS` UpdateJobs to the daemon's first job and read how
        many bytes each stored: proof that the request is right, and the unit of the
        count. Sets `budget` from `job_budget_bytes`."""
        job = daemon.jobs[0]
        before = self.stored([job])[job]
        process = self._start(daemon, job, CALIBRATION_CALLS, capture=True)
        output = process.communicate(timeout=60)[0].decode(errors="replace")
        if process.returncode != 0:
            raise RuntimeError(f"h2load failed:\n{output}")
        added = self.stored([job])[job] - before
        if added <= 0 or added % CALIBRATION_CALLS:
            raise RuntimeError(f"{CALIBRATION_CALLS} UpdateJobs stored {added} bytes:\n{output}")
        self.bytes_per_update = added // CALIBRATION_CALLS
        self.budget = job_budget_bytes // self.bytes_per_update

    def stored(self, jobs: Sequence[str]) -> dict[str, int]:
        """Each job's `log_bytes`; raises if one went over its log budget."""
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30)
        try:
            marks = ",".join("?" * len(jobs))
            rows = conn.execute(
                f"SELECT id, log_bytes, logs_overflowed FROM jobs WHERE id IN ({marks})",
                list(jobs),
            ).fetchall()
        finally:
            conn.close()
        if any(overflowed for _, _, overflowed in rows):
            raise RuntimeError("a job went over its log budget: the load would get cheaper")
        return {job_id: int(size) for job_id, size, _ in rows}

    def run(self, daemons: Sequence[H2Daemon], seconds: float) -> H2Result:
        """Every daemon's process sends UpdateJob for `seconds`; the count comes from
        the database once every process has ended."""
        assert self.bytes_per_update, "calibrate first"
        jobs = [job for daemon in daemons for job in daemon.jobs]
        before = self.stored(jobs)
        cpu_before = _children_cpu_s()
        deadline = time.perf_counter() + seconds
        errors: list[BaseException] = []

        def drive(daemon: H2Daemon) -> None:
            try:
                for job in daemon.jobs:
                    left = self.budget - before[job] // self.bytes_per_update
                    if left <= 0:
                        continue
                    process = self._start(daemon, job, left)
                    try:
                        process.wait(max(0.0, deadline - time.perf_counter()))
                    except subprocess.TimeoutExpired:
                        process.send_signal(signal.SIGINT)
                        process.wait(30)
                        return
                    if time.perf_counter() >= deadline:
                        return
                raise RuntimeError(f"{daemon.name} ran out of jobs before the deadline")
            except BaseException as error:
                errors.append(error)

        started = time.perf_counter()
        threads = [threading.Thread(target=drive, args=(d,), daemon=True) for d in daemons]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        if errors:
            raise errors[0]
        time.sleep(0.2)  # an answer cut off by the interrupt may still be committing
        after = self.stored(jobs)
        added = sum(after[job] - before[job] for job in jobs)
        if added % self.bytes_per_update:
            raise RuntimeError(f"{added} bytes stored: not a whole number of UpdateJobs")
        return H2Result(added // self.bytes_per_update, elapsed, _children_cpu_s() - cpu_before)

    def _start(
        self, daemon: H2Daemon, job: str, calls: int, *, capture: bool = False
    ) -> subprocess.Popen[bytes]:
        request = pd.UpdateJobRequest(job_id=job, logs=log_batch(self.lines))
        message = request.SerializeToString()
        body = self.workdir / f"update-{job}.bin"
        body.write_bytes(b"\0" + len(message).to_bytes(4, "big") + message)  # gRPC envelope
        headers = [
            *daemon_metadata(daemon.name),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        command = [h2load(), "-n", str(calls), "-c", "1", "-m", "1", "-d", str(body)]
        for name, value in headers:
            command += ["-H", f"{name}: {value}"]
        command.append(self.url + UPDATE_JOB_PATH)
        output = subprocess.PIPE if capture else subprocess.DEVNULL
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)


def _children_cpu_s() -> float:
    """User + system CPU of this process's ended (waited-for) children."""
    times = os.times()
    return times.children_user + times.children_system

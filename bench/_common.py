"""What the benchmarks share: a `provd serve` subprocess, /proc readings, tables, JSON.

Every server is started the way users start it (`python -m provd serve --listen
127.0.0.1:0 --db <new temporary file>`, durable defaults) and stopped with SIGTERM.
CPU figures come from /proc: a process's user+system seconds, and per thread, so a
table can say which thread of the server was busy (trio's main thread, the SQLite
writer, the reader pool).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc

REPO = Path(__file__).resolve().parent.parent
# The directory servers run from (their `provd` package): this checkout unless
# PROVD_BENCH_SRC names another, to compare two versions of provd side by side.
SERVER_SRC = Path(os.environ.get("PROVD_BENCH_SRC") or REPO)
ADMIN_TOKEN = "bench-admin-token"
DAEMON_PSK = "bench-daemon-psk"
LISTENING = re.compile(rb"listening on (https?://\S+)")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Hang guards, not measurements.
START_TIMEOUT = 30.0
EXIT_TIMEOUT = 30.0


def bench_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PROVD_ADMIN_TOKEN=ADMIN_TOKEN, PROVD_DAEMON_PSK=DAEMON_PSK, PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@dataclass
class Server:
    """A server subprocess: its PID, URL and everything it printed so far."""

    process: subprocess.Popen[bytes]
    url: str
    output: bytearray = field(default_factory=bytearray)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def target(self) -> str:
        """host:port, for grpcio."""
        return self.url.split("://", 1)[1]

    def rss_mb(self) -> float:
        return status_kb(self.pid, "VmRSS") / 1024

    def peak_rss_mb(self) -> float:
        return status_kb(self.pid, "VmHWM") / 1024

    def cpu_s(self) -> float:
        return process_cpu_s(self.pid)

    def threads_cpu_s(self) -> dict[str, float]:
        return threads_cpu_s(self.pid)


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _stat_cpu(path: Path) -> float:
    # Fields after the ")" that closes the command name; utime and stime are 14 and 15.
    fields = path.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    return _stat_cpu(Path(f"/proc/{pid}/stat"))


def threads_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds per thread kind: the main thread, the SQLite writer, trio's worker
    threads (the reader pool and other `to_thread` calls), anything else."""
    kinds: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            cpu = _stat_cpu(task / "stat")
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
        if task.name == str(pid):
            kind = "main"
        elif "sqlite" in name:  # provd-sqlite-writer, cut to 15 characters
            kind = "writer"
        elif name.startswith("Trio thread") or name.startswith("trio"):
            kind = "workers"
        else:
            kind = "other"
        kinds[kind] = kinds.get(kind, 0.0) + cpu
    return kinds


def diff(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


@contextlib.contextmanager
def provd_server(db_path: Path, *args: str) -> Iterator[Server]:
    """`python -m provd serve --listen 127.0.0.1:0 --db db_path ARGS`, stopped on exit."""
    command = [sys.executable, "-m", "provd", "serve", "--listen", "127.0.0.1:0"]
    with started([*command, "--db", str(db_path), *args]) as server:
        yield server


@contextlib.contextmanager
def started(command: Sequence[str], env: dict[str, str] | None = None) -> Iterator[Server]:
    """Run `command` until it prints "listening on URL"; SIGTERM it on exit."""
    process = subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env or bench_env(),
        cwd=SERVER_SRC,
    )
    assert process.stdout is not None
    output = bytearray()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while (match := LISTENING.search(output)) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command[:4]} did not start:\n{output.decode()}")
            chunk = process.stdout.read1(65536)
            if not chunk:
                raise RuntimeError(f"{command[:4]} exited before listening:\n{output.decode()}")
            output += chunk
        server = Server(process, match.group(1).decode(), output)
        drain = threading.Thread(target=_drain, args=(process, output), daemon=True)
        drain.start()
        yield server
    finally:
        stop(process)


def _drain(process: subprocess.Popen[bytes], output: bytearray) -> None:
    """Keep reading the server's output so it never blocks on a full pipe."""
    assert process.stdout is not None
    while chunk := process.stdout.read1(65536):
        output += chunk


def stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then SIGKILL if it has not exited within EXIT_TIMEOUT."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


@contextlib.contextmanager
def profiled(pid: int, path: str | None, *, rate: int = 250) -> Iterator[None]:
    """With a path, sample `pid` with py-spy while the block runs (all threads, idle
    ones included). `.svg` writes a flame graph; anything else, collapsed stacks."""
    if not path:
        yield
        return
    spy = Path(sys.executable).with_name("py-spy")
    fmt = "flamegraph" if path.endswith(".svg") else "raw"
    command = [str(spy), "record", "--pid", str(pid), "--rate", str(rate), "--threads"]
    command += ["--idle", "--format", fmt, "--output", path, "--nonblocking"]
    recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # let it attach
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)
        try:
            recorder.wait(30)
        except subprocess.TimeoutExpired:
            recorder.kill()
            recorder.wait()


def template_tar() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:") as archive:
        content = b'resource "null_resource" "example" {}\n'
        info = tarfile.TarInfo("main.tf")
        info.size = len(content)
        archive.addfile(info, io.BytesIO(content))
    return out.getvalue()


def quantiles_ms(seconds: Sequence[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return {"p50": cuts[49], "p90": cuts[89], "p99": cuts[98], "max": ms[-1]}


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "python": sys.version.split()[0],
    }


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a left-aligned first column and right-aligned figures."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(str(header[i])), *(len(row[i]) for row in cells)) for i in range(len(header))]
    print(title)
    line = [f"{header[0]:<{widths[0]}}"] + [
        f"{h:>{w}}" for h, w in zip(header[1:], widths[1:], strict=True)
    ]
    print("  ".join(line))
    for row in cells:
        out = [f"{row[0]:<{widths[0]}}"] + [
            f"{c:>{w}}" for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        print("  ".join(out))
    sys.stdout.flush()


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def emit(result: dict[str, object]) -> None:
    """The one JSON line every bench ends with."""
    print(json.dumps(result), flush=True)


def goal(ok: bool) -> str:
    return "met" if ok else "MISSED"


def rounded(values: dict[str, float], digits: int = 2) -> dict[str, float]:
    return {key: round(value, digits) for key, value in values.items()}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- several processes: process trees, the machine's CPU, grpcio connections ---------


def procfs() -> ModuleType:
    """tests/procfs.py (children of a process; which process holds a connection)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests import procfs

    return procfs


def process_tree(pid: int) -> list[int]:
    """`pid` and its live children (a `provd serve --workers N` supervisor and its
    workers)."""
    return [pid, *sorted(procfs().child_pids(pid))]


def tree_threads_cpu_s(pid: int) -> dict[str, float]:
    """`threads_cpu_s` summed over `pid` and its children, by thread kind."""
    kinds: dict[str, float] = {}
    for member in process_tree(pid):
        try:
            threads = threads_cpu_s(member)
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited meanwhile
        for kind, cpu in threads.items():
            kinds[kind] = kinds.get(kind, 0.0) + cpu
    return kinds


STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def machine_cpu_s() -> dict[str, float]:
    """The whole machine's CPU seconds since boot, all cores, by /proc/stat's kind
    (user, nice, system, idle, iowait, irq, softirq, steal)."""
    first = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    return {k: int(v) / CLOCK_TICKS for k, v in zip(STAT_FIELDS, first, strict=False)}


def machine_busy_s(cpu: dict[str, float] | None = None) -> float:
    """CPU seconds the machine's cores ran something (user, nice, system, irq,
    softirq) since boot: not idle, not waiting for I/O, not stolen by the hypervisor."""
    cpu = machine_cpu_s() if cpu is None else cpu
    return sum(cpu[k] for k in ("user", "nice", "system", "irq", "softirq"))


def grpc_channel(target: str) -> grpc.Channel:
    """A grpcio channel with a TCP connection of its own. grpcio's channels to one
    target share one connection by default (its global subchannel pool): 8 channels
    are 8 streams on one HTTP/2 connection, which one `--workers` process accepts."""
    import grpc

    return grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])


def pinned_channel(target: str, pids: Sequence[int], want: int, attempts: int = 64) -> grpc.Channel:
    """A connected `grpc_channel` whose connection process `want` (one of `pids`, all
    accepting on `target`'s port, e.g. `--workers` behind SO_REUSEPORT) accepted:
    connect, see through /proc which process holds the new connection, retry if it
    is another one. Nothing else may connect to the port meanwhile."""
    import grpc

    port = int(target.rsplit(":", 1)[1])
    proc = procfs()
    for _ in range(attempts):
        before = set(proc.accepted_connections(port))
        channel = grpc_channel(target)
        grpc.channel_ready_future(channel).result(timeout=START_TIMEOUT)
        holder = None
        deadline = time.monotonic() + START_TIMEOUT
        while holder is None:
            new = set(proc.accepted_connections(port)) - before
            held = proc.holders(port, set(pids))
            holders_of_new = {held[p] for p in new if p in held}
            if len(new) == 1 and holders_of_new:
                holder = holders_of_new.pop()
            elif time.monotonic() > deadline:
                raise RuntimeError(f"no process of {pids} holds the new connection {new}")
            else:
                time.sleep(0.002)
        if holder == want:
            return channel
        channel.close()
    raise RuntimeError(f"{attempts} connections, none accepted by {want}")


def connection_split(target: str, pids: Sequence[int]) -> dict[int, int]:
    """How many connections on `target`'s port each of `pids` holds."""
    port = int(target.rsplit(":", 1)[1])
    held = procfs().holders(port, set(pids))
    return {pid: sum(1 for holder in held.values() if holder == pid) for pid in pids}

"""`provd serve --workers N`: N processes serve one address and one database.

One process is bounded by one core (trio's loop, the store's threads and the
protocol work share a GIL). Workers lift that bound for RPC work; the database is
shared as any several provd processes share it: claims are atomic in the store and
wake-ups travel between the processes (`provd.wakeups`).

    supervisor (the `provd serve` process; serves no requests itself)
    ├── N listening sockets on one address (SO_REUSEPORT: the kernel spreads
    │   new connections over them; one shared socket where that is missing)
    └── one task per worker, each running `provd _worker` in a loop:
        start it, hand it its settings and socket, wait; if it dies, start it again

A worker gets its settings (pickled, from its own parent) on stdin and keeps stdin
open as a lifeline: when the supervisor is gone, however it went, the worker reads
end-of-file and drains. It reports "ready" on a pipe once it accepts connections.
The supervisor keeps every socket open for the life of the server, so connections
that the kernel hands to a dead worker's socket wait in its backlog for the
replacement instead of being refused.

Shutdown is cancellation: SIGINT/SIGTERM to the supervisor cancels the worker tasks,
which send SIGTERM to their workers (which drain as a single `provd serve` does) and
wait for them, then SIGKILL after the grace period and a margin.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Final

import trio

from provd.config import ServerSettings, parse_listen

logger = logging.getLogger(__name__)

# A worker that died is started again after this long, doubling up to the cap while
# it keeps dying young, so a worker that cannot run does not spin a core.
RESTART_BACKOFF_FIRST: Final = 0.5
RESTART_BACKOFF_CAP: Final = 10.0
# A worker that lived this long before dying restarts after the first backoff again.
HEALTHY_LIFE_SECONDS: Final = 30.0
# A draining worker gets the server's shutdown grace plus this to close its store.
DRAIN_MARGIN_SECONDS: Final = 10.0
LISTEN_BACKLOG: Final = 1024


def worker_count(value: str) -> int:
    """`--workers`: a positive number, or `auto` for the cores this process may use."""
    if value.strip().lower() == "auto":
        return available_cores()
    try:
        count = int(value)
    except ValueError:
        raise ValueError(f"expected a number of workers or 'auto', got {value!r}") from None
    if count < 1:
        raise ValueError(f"expected at least 1 worker, got {count}")
    return count


def available_cores() -> int:
    """The cores this process may run on (its affinity mask where there is one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


# -- sockets -------------------------------------------------------------------------


def bind_listeners(listen: str, count: int) -> list[socket.socket]:
    """`count` listening sockets on `listen` (port 0 picks one free port for all).

    With SO_REUSEPORT (Linux, the BSDs) each worker gets a socket of its own and the
    kernel spreads connections over them; without it, one socket is shared by all.
    Raises OSError as `bind` does (EADDRINUSE and the like).
    """
    host, port = parse_listen(listen)
    shared = not hasattr(socket, "SO_REUSEPORT") or sys.platform == "darwin"
    sockets: list[socket.socket] = []
    try:
        for _ in range(1 if shared else count):
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if not shared:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            # Accepted connections inherit it: no Nagle delay on small frames.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]
            sock.listen(LISTEN_BACKLOG)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets if not shared else sockets * count


def listen_url(sock: socket.socket, tls: bool) -> str:
    host, port = sock.getsockname()[:2]
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{host}:{port}"


# -- one worker ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What a worker is told on stdin: its number, its settings (with the listening
    socket's descriptor as `listen_fd`) and where to say it is ready."""

    index: int
    settings: ServerSettings
    ready_fd: int


def worker_command() -> list[str]:
    """How to run `provd _worker` with this very provd: the frozen executable itself,
    or this interpreter with the package."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "_worker"]
    return [sys.executable, "-m", "provd", "_worker"]


class WorkerFailedToStart(Exception):
    """A worker exited before it accepted connections, the first time it started."""


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


class Worker:
    """One worker slot: keeps a `provd _worker` process running on `sock` (and on
    `metrics_sock`, the `--metrics-listen` address, if there is one)."""

    def __init__(
        self,
        index: int,
        settings: ServerSettings,
        sock: socket.socket,
        *,
        metrics_sock: socket.socket | None = None,
        metrics_dir: str | None = None,
    ) -> None:
        """`metrics_dir`: where the workers keep their metric values, so that a scrape
        of any one of them adds up all of theirs (provd.metrics)."""
        self.index = index
        self._settings = settings
        self._sock = sock
        self._metrics_sock = metrics_sock
        self._metrics_dir = metrics_dir
        self.process: trio.Process | None = None
        self.restarts = 0
        # Set when the worker ended on a signal from us or on its own with status 0.
        self.drained_cleanly = True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the worker and report once it is ready; then restart it whenever it
        dies, until cancelled (which drains it)."""
        backoff = RESTART_BACKOFF_FIRST
        first = True
        while True:
            started_at = trio.current_time()
            ready, returncode = await self._live(task_status if first else None)
            if first and not ready:
                raise WorkerFailedToStart(
                    f"worker {self.index} exited while starting ({describe_exit(returncode)})"
                )
            first = False
            if trio.current_time() - started_at >= HEALTHY_LIFE_SECONDS:
                backoff = RESTART_BACKOFF_FIRST
            pid = self.process.pid if self.process else "?"
            logger.warning(
                "provd worker %d (pid %s) died (%s); starting it again in %g s",
                self.index,
                pid,
                describe_exit(returncode),
                backoff,
            )
            await trio.sleep(backoff)
            backoff = min(backoff * 2, RESTART_BACKOFF_CAP)
            self.restarts += 1

    async def _live(self, task_status: trio.TaskStatus[None] | None) -> tuple[bool, int]:
        """One life of the worker process: whether it became ready, and its return
        code. Cancellation drains it (SIGTERM, then SIGKILL)."""
        ready_read, ready_write = os.pipe()
        lifeline_read, lifeline_write = os.pipe()
        spec = WorkerSpec(
            index=self.index,
            settings=replace(
                self._settings,
                listen_fd=self._sock.fileno(),
                metrics_listen_fd=self._metrics_sock.fileno() if self._metrics_sock else None,
            ),
            ready_fd=ready_write,
        )
        try:
            # Small enough for the pipe's buffer: written before the worker runs.
            os.write(lifeline_write, pickle.dumps(spec))
            async with trio.open_nursery() as nursery:
                process: trio.Process = await nursery.start(
                    self._run_process, lifeline_read, ready_write
                )
                self.process = process
                os.close(ready_write)
                ready_write = -1
                os.close(lifeline_read)
                lifeline_read = -1
                ready = await _read_ready(ready_read)
                if ready and task_status is not None:
                    task_status.started()
                return ready, await process.wait()
        finally:
            for fd in (ready_read, ready_write, lifeline_read, lifeline_write):
                if fd >= 0:
                    os.close(fd)

    async def _run_process(
        self, stdin_fd: int, ready_fd: int, *, task_status: trio.TaskStatus[trio.Process]
    ) -> None:
        result = None
        env: Mapping[str, str] | None = None
        if self._metrics_dir is not None:
            # Read by prometheus-client when the worker first imports it.
            env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": self._metrics_dir}
        fds: tuple[int, ...] = (self._sock.fileno(), ready_fd)
        if self._metrics_sock is not None:
            fds += (self._metrics_sock.fileno(),)
        try:
            result = await trio.run_process(
                worker_command(),
                stdin=stdin_fd,
                check=False,
                env=env,
                pass_fds=fds,
                # Terminal signals (Ctrl-C) reach the supervisor only, which drains
                # each worker once.
                start_new_session=True,
                deliver_cancel=self._drain,
                task_status=task_status,
            )
        finally:
            code = result.returncode if result is not None else None
            if code is None and self.process is not None:
                code = self.process.returncode
            self.drained_cleanly = code in (0, None)
            if self._metrics_dir is not None and self.process is not None:
                # Its counters stay (they count toward the totals); what only a live
                # process may report goes.
                from prometheus_client.multiprocess import mark_process_dead

                mark_process_dead(self.process.pid, self._metrics_dir)  # type: ignore[no-untyped-call]

    async def _drain(self, process: trio.Process) -> None:
        process.send_signal(signal.SIGTERM)
        with trio.move_on_after(self._settings.shutdown_grace_seconds + DRAIN_MARGIN_SECONDS):
            await process.wait()
            return
        logger.warning("provd worker %d did not drain in time; killing it", self.index)
        process.kill()


async def _read_ready(fd: int) -> bool:
    """Whether the worker wrote its ready line before closing the pipe."""
    received = b""
    while True:
        await trio.lowlevel.wait_readable(fd)
        chunk = os.read(fd, 64)
        if not chunk:
            return received.startswith(b"ready")
        received += chunk
        if b"\n" in received:
            return received.startswith(b"ready")


# -- the supervisor ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Supervised:
    """What `supervise` reports once every worker accepts connections."""

    url: str
    workers: list[Worker]
    # The `--metrics-listen` address, when there is one.
    metrics_url: str | None = None


async def supervise(
    settings: ServerSettings,
    count: int,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]],
    task_status: trio.TaskStatus[Supervised] = trio.TASK_STATUS_IGNORED,
) -> bool:
    """Run `count` workers on `settings.listen` until `shutdown_trigger` returns, then
    drain them. Returns whether every worker ended cleanly. Raises
    `WorkerFailedToStart` if one exits before it is first ready (its own message is
    on stderr), and OSError if the address cannot be bound."""
    from provd.app import open_store

    # Migrate and check the store once, before N processes open it at the same time.
    async with open_store(settings):
        logger.debug("the store at %s is migrated and usable", settings.database)
    sockets = bind_listeners(settings.listen, count)
    metrics_sockets: list[socket.socket] = []
    # The workers' metric values, added up by whichever worker is scraped (removed at
    # exit: counters start from zero with the server, as in one process).
    metrics_dir = tempfile.mkdtemp(prefix="provd-metrics-")
    try:
        if settings.metrics_listen:
            metrics_sockets = bind_listeners(settings.metrics_listen, count)
        workers = [
            Worker(
                index,
                settings,
                sock,
                metrics_sock=metrics_sockets[index] if metrics_sockets else None,
                metrics_dir=metrics_dir,
            )
            for index, sock in enumerate(sockets)
        ]
        async with trio.open_nursery() as nursery:
            async with trio.open_nursery() as starting:
                for worker in workers:
                    starting.start_soon(nursery.start, worker.run)
            tls = settings.tls_cert is not None
            task_status.started(
                Supervised(
                    url=listen_url(sockets[0], tls),
                    workers=workers,
                    metrics_url=listen_url(metrics_sockets[0], False) if metrics_sockets else None,
                )
            )
            await shutdown_trigger()
            nursery.cancel_scope.cancel()
        return all(worker.drained_cleanly for worker in workers)
    finally:
        for sock in {id(sock): sock for sock in [*sockets, *metrics_sockets]}.values():
            sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)


# -- inside a worker -----------------------------------------------------------------


def read_spec() -> WorkerSpec:
    """The spec the supervisor wrote on stdin (exactly one pickle; nothing follows)."""
    spec = pickle.load(sys.stdin.buffer)  # our own parent's, on a pipe
    if not isinstance(spec, WorkerSpec):
        raise TypeError("stdin does not hold a provd worker spec")
    return spec


async def run_worker(spec: WorkerSpec) -> None:
    """Serve as worker `spec.index` until SIGTERM/SIGINT or until the supervisor is
    gone (end-of-file on stdin), then drain as `provd serve` does."""
    from provd.app import Running, serve

    stop = trio.Event()

    async def watch_signals(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # Held open for the whole run: a second signal must not fall back to the
        # default action and kill a worker that is draining.
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for _ in signals:
                stop.set()

    async def watch_supervisor() -> None:
        while True:
            await trio.lowlevel.wait_readable(0)
            if not os.read(0, 4096):
                logger.warning("provd worker %d: the supervisor is gone; draining", spec.index)
                stop.set()
                return

    ready_fd = spec.ready_fd
    try:
        async with trio.open_nursery() as nursery:

            async def serve_then_stop(task_status: trio.TaskStatus[Running]) -> None:
                await serve(spec.settings, shutdown_trigger=stop.wait, task_status=task_status)
                nursery.cancel_scope.cancel()  # drained: the watchers end too

            await nursery.start(watch_signals)
            nursery.start_soon(watch_supervisor)
            running: Running = await nursery.start(serve_then_stop)
            os.write(ready_fd, f"ready {running.url}\n".encode())
            os.close(ready_fd)
            ready_fd = -1
    finally:
        if ready_fd >= 0:
            os.close(ready_fd)  # not ready: the supervisor reads end-of-file

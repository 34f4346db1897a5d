"""provd's Prometheus metrics: what the server counts, and the `/metrics` page.

Only the server imports this module (and prometheus-client with it), when it serves:
the service modules take a `Metrics` or None and import the class for typing only, so
`provd --help` and the client commands never load it (tests/test_import_boundary.py).

Two kinds of figures:

- **Counted** as things happen (jobs created and completed, dispatch latency, RPCs,
  log lines, store commits, reaper actions): prometheus-client counters and
  histograms, a few microseconds per update, never one update per log line.
- **Read at scrape time** from the store (queue depth and oldest pending age per
  organization and provisioner, connected/stale/idle daemons): the whole database's
  view, so every process and worker reports the same numbers.

With `provd serve --workers N` a scrape lands on any worker, and its counters must
describe the whole server: the supervisor makes a private directory and passes it to
the workers as `PROMETHEUS_MULTIPROC_DIR`; prometheus-client then keeps each worker's
values in files there, and a scrape adds up every worker's, restarted ones included
(`MultiProcessCollector`). Without workers the values live in this process.

`METRICS` lists every metric with its type, labels and meaning: docs/operations.md
documents the same list, and a test keeps the two equal.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from connectrpc.errors import ConnectError
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from provd.errors import ProvdError
from provd.model import Job, PendingSummary, now_ms
from provd.rpc.errors import to_connect_error

if TYPE_CHECKING:
    from provd.registry import DaemonRegistry, DaemonView
    from provd.store import Store

logger = logging.getLogger(__name__)

# In the text format a `*_created` sample reads as a gauge of its own, one per counter
# and histogram; Prometheus does not need them (multiprocess mode drops them anyway).
disable_created_metrics()  # type: ignore[no-untyped-call]

MULTIPROC_DIR_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE: Final = CONTENT_TYPE_LATEST

# RPC protocols, as the `protocol` label spells them.
CONNECT: Final = "connect"
GRPC: Final = "grpc"
GRPC_WEB: Final = "grpc-web"
WEBSOCKET: Final = "websocket"

# Seconds: an RPC takes ~3 ms; an acquire stream may wait for hours.
_RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600)
# Seconds from a job's creation until a daemon gets it: milliseconds when a daemon
# waits, minutes or hours when none is free.
_DISPATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
_COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


@dataclass(frozen=True, slots=True)
class MetricInfo:
    """One metric as exposed: its full name, type, labels and meaning."""

    name: str
    type: str
    labels: tuple[str, ...]
    help: str


METRICS: Final = (
    MetricInfo(
        "provd_jobs_created_total", "counter", ("type",), "Jobs created through the job API."
    ),
    MetricInfo(
        "provd_jobs_completed_total",
        "counter",
        ("type", "outcome"),
        "Jobs that completed (outcome: succeeded, failed or canceled), whoever completed"
        " them: a daemon, a cancel of a pending job, a reaper, or provd itself when a job"
        " cannot be sent.",
    ),
    MetricInfo(
        "provd_job_dispatch_latency_seconds",
        "histogram",
        (),
        "Time from a job's creation until provd hands it to a daemon.",
    ),
    MetricInfo(
        "provd_rpc_requests_total",
        "counter",
        ("method", "protocol", "code"),
        "RPCs that reached a method (protocol: connect, grpc, grpc-web or websocket;"
        " code: ok or the Connect error code).",
    ),
    MetricInfo(
        "provd_rpc_duration_seconds",
        "histogram",
        ("method", "protocol"),
        "How long RPCs took, from their headers to their status (streams: their whole life).",
    ),
    MetricInfo(
        "provd_log_lines_stored_total",
        "counter",
        (),
        "Log lines from daemons stored within their job's log budget.",
    ),
    MetricInfo(
        "provd_log_lines_dropped_total",
        "counter",
        (),
        "Log lines from daemons in updates that reached or went past their job's log"
        " budget (the lines of the update that crossed it count here too).",
    ),
    MetricInfo(
        "provd_store_commit_duration_seconds",
        "histogram",
        (),
        "SQLite group commits, from BEGIN (with any wait for another process's write"
        " lock) to COMMIT and its fsync.",
    ),
    MetricInfo(
        "provd_store_commit_batch_size",
        "histogram",
        (),
        "Writes per SQLite group commit.",
    ),
    MetricInfo(
        "provd_reaper_jobs_failed_total",
        "counter",
        ("reaper",),
        "Jobs a reaper failed (reaper: hung, unroutable).",
    ),
    MetricInfo(
        "provd_queue_pending_jobs",
        "gauge",
        ("organization", "provisioner"),
        "Pending jobs, read from the store at scrape time.",
    ),
    MetricInfo(
        "provd_queue_oldest_pending_age_seconds",
        "gauge",
        ("organization", "provisioner"),
        "Age of the oldest pending job, read from the store at scrape time.",
    ),
    MetricInfo(
        "provd_daemons",
        "gauge",
        ("state",),
        "Known daemons by state (connected, stale, idle; as ListDaemons reports them),"
        " read from the store at scrape time.",
    ),
)
_INFO = {info.name: info for info in METRICS}


def _help(name: str) -> str:
    return _INFO[name].help


class Metrics:
    """The counters and histograms of one server, with cheap recording methods.

    Each instance has its own registry, so several servers in one process (tests)
    count apart. In multiprocess mode (`PROMETHEUS_MULTIPROC_DIR` set before
    prometheus-client was imported) the values also go to that directory's files.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        registry = self.registry

        def counter(name: str) -> Counter:
            info = _INFO[name]
            return Counter(name.removesuffix("_total"), info.help, info.labels, registry=registry)

        def histogram(name: str, buckets: Sequence[float]) -> Histogram:
            info = _INFO[name]
            return Histogram(name, info.help, info.labels, registry=registry, buckets=buckets)

        self._jobs_created = counter("provd_jobs_created_total")
        self._jobs_completed = counter("provd_jobs_completed_total")
        self._dispatch = histogram("provd_job_dispatch_latency_seconds", _DISPATCH_BUCKETS)
        self._rpcs = counter("provd_rpc_requests_total")
        self._rpc_duration = histogram("provd_rpc_duration_seconds", _RPC_BUCKETS)
        self._log_stored = counter("provd_log_lines_stored_total")
        self._log_dropped = counter("provd_log_lines_dropped_total")
        self._commit_duration = histogram("provd_store_commit_duration_seconds", _COMMIT_BUCKETS)
        self._commit_batch = histogram("provd_store_commit_batch_size", _BATCH_BUCKETS)
        self._reaped = counter("provd_reaper_jobs_failed_total")
        # labels() takes a lock and checks its arguments: the hot paths look their
        # children up here instead (a dict hit is ~0.1 µs).
        self._rpc_children: dict[tuple[str, str, str], Any] = {}
        self._duration_children: dict[tuple[str, str], Any] = {}
        self._multiproc_dir = os.environ.get(MULTIPROC_DIR_ENV, "")

    # -- recording (hot paths: a few µs each) ---------------------------------------

    def job_created(self, job: Job) -> None:
        self._jobs_created.labels(job.type.value).inc()

    def job_completed(self, job: Job) -> None:
        """Count `job` if it is completed (a caller passes what its store call returned)."""
        if job.status.is_terminal:
            self._jobs_completed.labels(job.type.value, job.status.value).inc()

    def job_dispatched(self, job: Job) -> None:
        self._dispatch.observe(max(0, now_ms() - job.created_at) / 1000)

    def rpc(self, method: str, protocol: str, code: str, seconds: float) -> None:
        """One RPC of `method` (`package.Service/Method`) ended with `code` ("ok" or a
        Connect code) after `seconds`."""
        key = (method, protocol, code)
        child = self._rpc_children.get(key)
        if child is None:
            child = self._rpc_children[key] = self._rpcs.labels(method, protocol, code)
        child.inc()
        duration = self._duration_children.get(key[:2])
        if duration is None:
            duration = self._duration_children[key[:2]] = self._rpc_duration.labels(
                method, protocol
            )
        duration.observe(seconds)

    def log_lines(self, count: int, *, overflowed: bool) -> None:
        """One UpdateJob's `count` lines; `overflowed`: the job is past its budget."""
        (self._log_dropped if overflowed else self._log_stored).inc(count)

    def store_commit(self, seconds: float, batch_size: int) -> None:
        """One SQLite group commit (called on the writer thread; prometheus-client's
        updates are thread-safe)."""
        self._commit_duration.observe(seconds)
        self._commit_batch.observe(batch_size)

    def reaped(self, reaper: str, jobs: Iterable[Job]) -> None:
        """`reaper` ("hung", "unroutable") failed `jobs`."""
        count = 0
        for job in jobs:
            self.job_completed(job)
            count += 1
        if count:
            self._reaped.labels(reaper).inc(count)

    # -- the page ------------------------------------------------------------------

    async def render(self, store: Store, registry: DaemonRegistry) -> bytes:
        """The exposition text: this server's (or every worker's) counters, and the
        figures read from the store now. A store that cannot be read leaves those
        families empty; the counters are served all the same."""
        summaries: list[PendingSummary] = []
        daemons: list[DaemonView] = []
        try:
            summaries = await store.pending_summary()
            daemons = await registry.list()
        except Exception as error:
            logger.warning("/metrics could not read the store: %s", error)
        snapshot = CollectorRegistry(auto_describe=False)
        snapshot.register(_StoreSnapshot(summaries, daemons, now_ms()))
        return self._counted() + generate_latest(snapshot)

    def _counted(self) -> bytes:
        if not self._multiproc_dir:
            return generate_latest(self.registry)
        from prometheus_client.multiprocess import MultiProcessCollector

        every_worker = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(every_worker, path=self._multiproc_dir)  # type: ignore[no-untyped-call]
        return generate_latest(every_worker)


class _StoreSnapshot:
    """A collector of figures read from the store once per scrape."""

    def __init__(
        self, summaries: Sequence[PendingSummary], daemons: Sequence[DaemonView], now: int
    ) -> None:
        self._summaries = summaries
        self._daemons = daemons
        self._now = now

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "provd_queue_pending_jobs",
            _help("provd_queue_pending_jobs"),
            labels=["organization", "provisioner"],
        )
        age = GaugeMetricFamily(
            "provd_queue_oldest_pending_age_seconds",
            _help("provd_queue_oldest_pending_age_seconds"),
            labels=["organization", "provisioner"],
        )
        # The store reports each (organization, provisioner, tags) queue; tags would
        # make the label set unbounded, so queues are added up per provisioner.
        counts: dict[tuple[str, str], int] = {}
        oldest: dict[tuple[str, str], int] = {}
        for summary in self._summaries:
            key = (summary.queue.organization, summary.queue.provisioner)
            counts[key] = counts.get(key, 0) + summary.count
            oldest[key] = min(oldest.get(key, summary.oldest_created_at), summary.oldest_created_at)
        for key, count in sorted(counts.items()):
            depth.add_metric(list(key), count)
            age.add_metric(list(key), max(0, self._now - oldest[key]) / 1000)
        yield depth
        yield age
        states = {"connected": 0, "stale": 0, "idle": 0}
        for view in self._daemons:
            states["connected" if view.connected else "stale" if view.stale else "idle"] += 1
        daemons = GaugeMetricFamily("provd_daemons", _help("provd_daemons"), labels=["state"])
        for state, count in states.items():
            daemons.add_metric([state], count)
        yield daemons


def rpc_protocol(content_type: str) -> str:
    """The `protocol` label of an HTTP RPC, from its request's content type."""
    if content_type.startswith("application/grpc-web"):
        return GRPC_WEB
    if content_type.startswith("application/grpc"):
        return GRPC
    return CONNECT


def rpc_code(error: BaseException | None) -> str:
    """The `code` label: "ok", or the Connect code `error` is answered with."""
    if error is None:
        return "ok"
    if isinstance(error, ConnectError):
        return str(error.code.value)
    if isinstance(error, ProvdError):
        return str(to_connect_error(error).code.value)
    return "unknown"


class RpcMetrics:
    """A connectrpc metadata interceptor that counts and times each RPC. It goes first
    in every service's interceptor list, so that its `on_end` runs last and sees the
    status the client gets (an auth refusal included)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def on_start(self, ctx: Any) -> float:
        return time.perf_counter()

    async def on_end(self, token: float, ctx: Any, error: Exception | None) -> None:
        method = ctx.method
        self._metrics.rpc(
            f"{method.service_name}/{method.name}",
            rpc_protocol(ctx.request_headers.get("content-type", "")),
            rpc_code(error),
            time.perf_counter() - token,
        )

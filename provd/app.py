"""`serve`: the root of provd's nursery tree.

    serve
    ├── open_sqlite_store ── writer thread (all writes, group commit)
    │   or open_postgres_store ── connection pool used from worker threads
    └── server nursery
        ├── Scheduler.run ── one task per group of identical waiting daemons
        ├── Wakeups.run ── wake-ups from other processes serving the same database
        │   (unix datagrams on SQLite; LISTEN/NOTIFY, one thread, on PostgreSQL)
        ├── DaemonRegistry.run ── flushes last-seen times and stream leases, re-reads
        │   the daemons other processes see
        ├── DaemonKeys.run ── flushes keys' last-used times, re-checks the keys of
        │   open streams
        ├── Health.run ── the /readyz store probes (provd/rpc/health.py)
        ├── reap_hung_jobs, reap_unroutable_jobs, run_retention
        ├── hypercorn.trio.serve on --metrics-listen, if set ── /metrics, /readyz
        └── hypercorn.trio.serve ── one task per connection and request

Shutdown is cancellation: the shutdown trigger turns /readyz to 503, makes hypercorn
stop accepting and give in-flight requests a grace period, then everything below is cancelled and
the store finishes its queued writes before the file is closed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from provd._compat import hypercorn_fixes
from provd.config import ServerSettings, parse_listen
from provd.dispatch import Dispatcher
from provd.errors import StoreUnusable
from provd.events import JobEvents
from provd.explain import explain_unroutable
from provd.file_cache import FileCache
from provd.job_service import JobService
from provd.key_revocations import KeyRevocations
from provd.keys import DaemonKeys
from provd.logging_setup import HTTP_LOGGER
from provd.metrics import Metrics
from provd.model import Daemon, Job, Queue
from provd.reapers import reap_hung_jobs, reap_unroutable_jobs
from provd.registry import DaemonRegistry
from provd.retention import run_retention
from provd.rpc.app import build_app
from provd.rpc.connections import limited_config
from provd.rpc.health import Health, PlainApp, metrics_endpoint
from provd.scheduler import Scheduler
from provd.store import Store
from provd.store.sqlite import open_sqlite_store
from provd.tracing import open_tracing
from provd.wakeups import DatagramRelay, Relay, RelayProvider, Wakeups

# hypercorn closes a connection after 1,000 requests by default, HTTP/2 included,
# which silently breaks busy daemons' streams. Effectively: never.
KEEP_ALIVE_MAX_REQUESTS = 2**62


@dataclass(frozen=True, slots=True)
class Running:
    """What `serve` reports once it accepts connections."""

    url: str
    db_path: str  # the SQLite file, or the PostgreSQL URL without its password
    scheduler: Scheduler
    # Where `/metrics` is served when not on the main port (`--metrics-listen`).
    metrics_url: str | None = None
    # The wake-ups of this process's job watchers (log followers, WatchJobs).
    events: JobEvents | None = None


def _base_config(
    settings: ServerSettings, listen: str, listen_fd: int | None, graceful_seconds: float
) -> Config:
    """What both of provd's hypercorn servers share: the connection limits, the
    address (or a socket a supervisor bound and listens on: `provd serve --workers`),
    keep-alive, and hypercorn's lines through provd's logging (provd.logging_setup)."""
    config = limited_config(settings.connections)
    if listen_fd is not None:
        config.bind = [f"fd://{listen_fd}"]
    else:
        host, port = parse_listen(listen)
        config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.keep_alive_max_requests = KEEP_ALIVE_MAX_REQUESTS
    config.graceful_timeout = graceful_seconds
    config.accesslog = None
    config.errorlog = logging.getLogger(HTTP_LOGGER)
    return config


def hypercorn_config(settings: ServerSettings) -> Config:
    """hypercorn's config for `settings`, with the connection limits (which need
    provd's hypercorn fixes: `serve` installs them)."""
    config = _base_config(
        settings, settings.listen, settings.listen_fd, settings.shutdown_grace_seconds
    )
    if settings.tls_cert is not None and settings.tls_key is not None:
        # TLS on the one port; ALPN offers h2 first, so gRPC clients get HTTP/2.
        config.certfile = str(settings.tls_cert)
        config.keyfile = str(settings.tls_key)
        config.alpn_protocols = ["h2", "http/1.1"]
    return config


def metrics_hypercorn_config(settings: ServerSettings) -> Config:
    """hypercorn's config for the `--metrics-listen` address: plain HTTP (meant for
    loopback and internal networks), the main port's connection limits."""
    return _base_config(settings, settings.metrics_listen, settings.metrics_listen_fd, 0)


@asynccontextmanager
async def open_store(settings: ServerSettings) -> AsyncIterator[Store]:
    """The store `settings` name, open (migrated and checked) until the block ends: the
    PostgreSQL database of `settings.postgres_url` if set, else the SQLite file
    `settings.db_path`."""
    if settings.postgres_url:
        try:
            from provd.store.postgres import open_postgres_store
        except ImportError as error:
            raise StoreUnusable(
                f"PostgreSQL needs psycopg, which is not installed ({error.name}):"
                " pip install 'provd[postgres]'"
            ) from None
        async with open_postgres_store(settings.postgres_url) as postgres:
            yield postgres
    else:
        async with open_sqlite_store(settings.db_path, synchronous=settings.synchronous) as sqlite:
            yield sqlite


async def serve(
    settings: ServerSettings,
    *,
    store: Store | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run provd until `shutdown_trigger` returns (or forever, until cancelled).

    Without `store`, provd opens the one `settings` names (`open_store`); with one,
    it serves that store and leaves opening and closing it to the caller.
    """
    hypercorn_fixes.apply()
    if store is None:
        async with open_store(settings) as opened:
            await _serve_store(settings, opened, shutdown_trigger, task_status)
    else:
        await _serve_store(settings, store, shutdown_trigger, task_status)


async def _serve_store(
    settings: ServerSettings,
    store: Store,
    shutdown_trigger: Callable[[], Awaitable[None]] | None,
    task_status: trio.TaskStatus[Running],
) -> None:
    # One wake-up path: what this process changes wakes its own scheduler and log
    # followers, then every other process serving the same database.
    # The store may bring its own relay (PostgreSQL: LISTEN/NOTIFY); else unix
    # datagrams beside the SQLite file.
    relay: Relay = (
        store.wakeup_relay()
        if isinstance(store, RelayProvider)
        else DatagramRelay(settings.db_path)
    )
    wakeups = Wakeups(store, relay)
    events = wakeups.events
    scheduler = Scheduler(
        store,
        job_changed=wakeups.job_changed,
        announce_available=wakeups.job_available,
        poll_interval=settings.poll_interval_seconds,
    )
    wakeups.deliver_jobs_to(scheduler.job_available)
    registry = DaemonRegistry(store, heartbeat_interval=settings.heartbeat_interval_seconds)
    # Deleting a daemon key ends its daemons' streams here, then in every other process.
    revocations = KeyRevocations()
    keys = DaemonKeys(store, revocations, announce_revoked=wakeups.key_revoked)
    wakeups.deliver_key_revocations_to(revocations.revoke, keys.recheck)

    # provd's own spans, when the OTEL_* environment asks for them (provd.tracing).
    tracing = open_tracing(dict(settings.otel_environment)) if settings.otel_environment else None

    def explain(queue: Queue) -> str | None:
        return explain_unroutable(queue, registry.live_daemons())

    metrics = Metrics()
    # Archives and file sizes, read once: CreateJob and the hand-over to a daemon
    # skip the store's reader threads for a template used recently.
    files = FileCache(store)
    jobs = JobService(
        store,
        events,
        settings.limits,
        job_available=wakeups.job_available,
        explain_unroutable=explain,
        live_daemons=registry.live_daemons,
        log_poll_interval_seconds=settings.log_poll_interval_seconds,
        metrics=metrics,
        files=files,
        create_job=scheduler.create_job,
    )

    def handed_over(job: Job, daemon: Daemon) -> None:
        # A claim turns the job running: its watchers hear of it here and everywhere.
        events.notify(job.id)
        if tracing is not None:
            tracing.job_handed_over(job, daemon)

    dispatcher = Dispatcher(
        store,
        scheduler,
        registry,
        events,
        settings.limits,
        keys=keys,
        unary_acquire_wait_seconds=settings.unary_acquire_wait_seconds,
        on_handed_over=handed_over,
        metrics=metrics,
        files=files,
    )
    # /readyz turns 503 the moment the drain begins, before in-flight requests end;
    # /metrics is on the main port unless `--metrics-listen` gives it an address.
    health = Health(store)
    separate_metrics = bool(settings.metrics_listen) or settings.metrics_listen_fd is not None
    plain_endpoints = {
        "/readyz": health.readyz,
        "/metrics": metrics_endpoint(metrics, store, registry),
    }
    main_endpoints = {"/readyz": health.readyz} if separate_metrics else plain_endpoints

    async def shutdown_then_drain() -> None:
        await (shutdown_trigger or trio.sleep_forever)()
        health.draining()

    app = build_app(
        store=store,
        jobs=jobs,
        dispatcher=dispatcher,
        registry=registry,
        keys=keys,
        admin_token=settings.admin_token,
        daemon_psk=settings.daemon_psk,
        cors_origins=settings.cors_origins,
        metrics=metrics,
        endpoints=main_endpoints,
    )
    if tracing is not None:
        app = tracing.around(app)
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        await nursery.start(wakeups.run)
        await nursery.start(registry.run)
        await nursery.start(keys.run)
        await nursery.start(health.run)
        if tracing is not None:
            await nursery.start(tracing.run)
        nursery.start_soon(
            partial(reap_hung_jobs, store, events, settings.reapers, metrics=metrics)
        )
        nursery.start_soon(
            partial(
                reap_unroutable_jobs, store, registry, events, settings.reapers, metrics=metrics
            )
        )
        nursery.start_soon(run_retention, store, settings.retain_seconds)

        async def serve_http(task_status: trio.TaskStatus[list[str]]) -> None:
            await hypercorn_serve(
                app,
                hypercorn_config(settings),
                shutdown_trigger=shutdown_then_drain,
                task_status=task_status,
            )
            nursery.cancel_scope.cancel()  # served its last request: stop the rest

        metrics_url = None
        if separate_metrics:
            # Up until the main port has drained: it answers /readyz (503) meanwhile.
            metrics_app: Any = PlainApp({**plain_endpoints, "/healthz": health.healthz})
            metrics_url = (
                await nursery.start(
                    partial(
                        hypercorn_serve,
                        metrics_app,
                        metrics_hypercorn_config(settings),
                        shutdown_trigger=trio.sleep_forever,
                    )
                )
            )[0]
        # SQLite's group commits (other backends have no such hook).
        observe_commits = getattr(store, "observe_commits", None)
        if observe_commits is not None:
            observe_commits(metrics.store_commit)
        binds = await nursery.start(serve_http)
        health.ready()
        task_status.started(
            Running(
                url=binds[0],
                db_path=settings.database,
                scheduler=scheduler,
                metrics_url=metrics_url,
                events=events,
            )
        )

"""`provd serve`: run the server in the foreground until SIGINT or SIGTERM.

The server's modules (and trio) are imported when the command runs, not when this
module is: `provd serve --help` and every other command stay light.

What keeps the server from starting (its address in use, a data directory it cannot
create, a database it cannot use) is one line on stderr that says what is wrong and
what to do, and exit status 2, never a traceback.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from provd import __version__
from provd.cli.settings import (
    CONFIG_FILE_META,
    effective_settings,
    format_effective_settings,
    load_config_file,
)
from provd.logging_setup import LOG_FORMATS, LOG_LEVELS, configure_logging
from provd.protocol import (
    DEFAULT_LISTEN,
    LOG_BUDGET_BYTES,
    PAYLOAD_MAX_BYTES,
    UPLOAD_MAX_BYTES,
    MiB,
)
from provd.secrets import (
    ADMIN_TOKEN_FILE,
    DAEMON_PSK_FILE,
    credentials_db_path,
    is_postgres_url,
    load_or_create_secret,
    secret_path,
)

if TYPE_CHECKING:
    from provd.config import ServerSettings

logger = logging.getLogger("provd.serve")


class _Seconds(click.ParamType[float | None]):
    """A positive, finite number of seconds (click's FloatRange lets nan and inf
    through); with `allow_off`, also `off` (None)."""

    name = "seconds"

    def __init__(self, *, allow_off: bool = False) -> None:
        self.allow_off = allow_off

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float | None:
        if value is None:
            return None
        # Floats are checked too: a settings file gives them as they are.
        text = str(value).strip().lower()
        if self.allow_off and text == "off":
            return None
        try:
            seconds = float(text)
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds) or seconds <= 0:
            expected = "a positive number of seconds" + (" or 'off'" if self.allow_off else "")
            self.fail(f"expected {expected}, got {value!r}", param, ctx)
        return seconds


class _CommaList(click.types.StringParamType):
    """A repeatable string option whose environment variable is comma-separated."""

    def split_envvar_value(self, rv: str) -> list[str]:
        return [item.strip() for item in rv.split(",") if item.strip()]


class _WorkerCount(click.ParamType[int]):
    """`--workers`: a positive number, or `auto` (one per core)."""

    name = "workers"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        from provd.workers import worker_count

        try:
            return worker_count(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


class _Duration(click.ParamType[float]):
    """`--retain`: 30d, 12h, 90m, 45s or seconds (fractions allowed); 0: forever."""

    name = "duration"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        # Floats are checked too: a settings file gives them as they are.
        from provd.retention import parse_duration

        try:
            return parse_duration(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


@click.command("serve", context_settings={"auto_envvar_prefix": "PROVD"})
@click.option(
    "--config",
    envvar="PROVD_CONFIG",
    metavar="FILE",
    is_eager=True,
    expose_value=False,
    callback=load_config_file,
    help="A TOML file of settings: each key a flag below without its dashes"
    " (hang-timeout = 300); flags and environment variables win over it (env PROVD_CONFIG).",
)
@click.option(
    "--print-config",
    is_flag=True,
    allow_from_autoenv=False,
    help="Print every setting, its value and where it came from (flag, env, file or"
    " default), secrets masked, and exit without starting.",
)
@click.option(
    "--listen",
    envvar="PROVD_LISTEN",
    default=DEFAULT_LISTEN,
    metavar="HOST:PORT",
    show_default=True,
    help="HOST:PORT to listen on (port 0 picks a free one).",
)
@click.option(
    "--db",
    "db",
    envvar="PROVD_DB",
    default=None,
    metavar="PATH|URL",
    show_default="$XDG_DATA_HOME/provd/provd.db",
    help="SQLite database file, or a postgresql://user:password@host/dbname URL (also"
    " postgres://) to serve a PostgreSQL database (env PROVD_DB).",
)
@click.option(
    "--durability",
    envvar="PROVD_DURABILITY",
    type=click.Choice(["full", "normal"]),
    default="full",
    show_default=True,
    help="full: every acknowledged write survives power loss;"
    " normal: it survives a crash of provd only (env PROVD_DURABILITY).",
)
@click.option(
    "--upload-max-mib",
    envvar="PROVD_UPLOAD_MAX_MIB",
    type=click.IntRange(min=1),
    default=UPLOAD_MAX_BYTES // MiB,
    show_default=True,
    metavar="MIB",
    help="Largest template archive accepted (env PROVD_UPLOAD_MAX_MIB).",
)
@click.option(
    "--payload-max-mib",
    envvar="PROVD_PAYLOAD_MAX_MIB",
    type=click.IntRange(min=1),
    default=PAYLOAD_MAX_BYTES // MiB,
    show_default=True,
    metavar="MIB",
    help="Largest job message sent to a daemon (archive and inputs); a job over it fails."
    " Raise it only for daemons that accept larger messages (env PROVD_PAYLOAD_MAX_MIB).",
)
@click.option(
    "--log-budget-mib",
    envvar="PROVD_LOG_BUDGET_MIB",
    type=click.IntRange(min=1),
    default=LOG_BUDGET_BYTES // MiB,
    show_default=True,
    metavar="MIB",
    help="Log output kept per job; past it lines are dropped and one line says so"
    " (env PROVD_LOG_BUDGET_MIB).",
)
@click.option(
    "--shutdown-grace",
    envvar="PROVD_SHUTDOWN_GRACE",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    metavar="SECONDS",
    help="Seconds in-flight requests get to finish on SIGINT/SIGTERM (env PROVD_SHUTDOWN_GRACE).",
)
@click.option(
    "--tls-cert",
    envvar="PROVD_TLS_CERT",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="PEM certificate (chain) to serve TLS with; needs --tls-key (env PROVD_TLS_CERT).",
)
@click.option(
    "--tls-key",
    envvar="PROVD_TLS_KEY",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="PEM private key of --tls-cert (env PROVD_TLS_KEY).",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    envvar="PROVD_CORS_ORIGINS",
    type=_CommaList(),
    multiple=True,
    show_default="none, no CORS headers",
    metavar="ORIGIN",
    help="Browser origin allowed to call provd, e.g. https://app.example.com"
    " (repeatable; '*' for any; env PROVD_CORS_ORIGINS, comma-separated).",
)
@click.option(
    "--max-connections-per-peer",
    envvar="PROVD_MAX_CONNECTIONS_PER_PEER",
    type=click.IntRange(min=1),
    metavar="N",
    default=128,
    show_default=True,
    help="Connections one client address may hold; raise it for many daemons behind one"
    " NAT address (env PROVD_MAX_CONNECTIONS_PER_PEER).",
)
@click.option(
    "--hang-timeout",
    envvar="PROVD_HANG_TIMEOUT",
    type=_Seconds(),
    default=300.0,
    show_default=True,
    metavar="SECONDS",
    help="A running job with no update for this long fails as hung (env PROVD_HANG_TIMEOUT).",
)
@click.option(
    "--pending-timeout",
    envvar="PROVD_PENDING_TIMEOUT",
    type=_Seconds(allow_off=True),
    default="1800",
    show_default=True,
    metavar="SECONDS|off",
    help="A pending job that no connected daemon can take fails after this long; off"
    " waits forever (env PROVD_PENDING_TIMEOUT).",
)
@click.option(
    "--heartbeat-interval",
    envvar="PROVD_HEARTBEAT_INTERVAL",
    type=_Seconds(),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="Daemons not heard from for three of these are stale (env PROVD_HEARTBEAT_INTERVAL).",
)
@click.option(
    "--poll-interval",
    envvar="PROVD_POLL_INTERVAL",
    type=_Seconds(),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="The scheduler's safety re-read of the queues, for wake-ups that were lost"
    " (env PROVD_POLL_INTERVAL).",
)
@click.option(
    "--log-poll-interval",
    envvar="PROVD_LOG_POLL_INTERVAL",
    type=_Seconds(),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="A log follower's safety re-read, for wake-ups that were lost"
    " (env PROVD_LOG_POLL_INTERVAL).",
)
@click.option(
    "--daemon-psk",
    "daemon_psk_mode",
    envvar="PROVD_DAEMON_PSK_MODE",
    type=click.Choice(["on", "off"], case_sensitive=False),
    default="on",
    show_default=True,
    help="off: daemons must present a daemon key ('provd keys create'), the pre-shared"
    " key is refused; also PROVD_DAEMON_PSK=off. on: daemons may use PROVD_DAEMON_PSK"
    " or the daemon-psk file beside the database (env PROVD_DAEMON_PSK_MODE).",
)
@click.option(
    "--retain",
    envvar="PROVD_RETAIN",
    type=_Duration(),
    default="30d",
    show_default=True,
    metavar="DURATION",
    help="Completed jobs older than this are deleted with their logs, then archives no job"
    " uses; 30d, 12h, 90m or seconds; 0 keeps everything (env PROVD_RETAIN).",
)
@click.option(
    "--metrics-listen",
    envvar="PROVD_METRICS_LISTEN",
    default="",
    show_default="none, /metrics on the main port",
    metavar="HOST:PORT",
    help="Serve /metrics (and /healthz, /readyz) on this address, plain HTTP, instead"
    " of the main port; meant for loopback or an internal network (env"
    " PROVD_METRICS_LISTEN).",
)
@click.option(
    "--workers",
    envvar="PROVD_WORKERS",
    type=_WorkerCount(),
    default="1",
    show_default=True,
    metavar="N|auto",
    help="Processes serving the one address and database; auto: one per core. More"
    " than one adds a supervisor that restarts a worker that dies (env PROVD_WORKERS).",
)
@click.option(
    "--log-format",
    envvar="PROVD_LOG_FORMAT",
    type=click.Choice(LOG_FORMATS),
    default="text",
    show_default=True,
    help="text: one line per record for people; json: one JSON object per line"
    " (env PROVD_LOG_FORMAT).",
)
@click.option(
    "--log-level",
    envvar="PROVD_LOG_LEVEL",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
    help="The least severe log lines written, on stderr (env PROVD_LOG_LEVEL).",
)
def serve_command(
    print_config: bool,
    listen: str,
    db: str | None,
    durability: str,
    upload_max_mib: int,
    payload_max_mib: int,
    log_budget_mib: int,
    shutdown_grace: float,
    tls_cert: Path | None,
    tls_key: Path | None,
    cors_origins: tuple[str, ...],
    max_connections_per_peer: int,
    hang_timeout: float,
    pending_timeout: float | None,
    heartbeat_interval: float,
    poll_interval: float,
    log_poll_interval: float,
    daemon_psk_mode: str,
    metrics_listen: str,
    workers: int,
    retain: float,
    log_format: str,
    log_level: str,
) -> None:
    """Run the provd server in the foreground."""
    if print_config:
        _print_config(db)
        return
    # First, so that whatever is logged while starting is in the format asked for.
    configure_logging(log_format, log_level.lower())
    import trio

    from provd.config import ServerSettings, parse_listen
    from provd.errors import StoreUnusable
    from provd.model import Limits
    from provd.reapers import ReaperSettings
    from provd.rpc.connections import ConnectionLimits
    from provd.rpc.cors import parse_origin
    from provd.store._files import prepare_data_dir

    try:
        parse_listen(listen)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--listen") from None
    if metrics_listen:
        try:
            parse_listen(metrics_listen)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--metrics-listen") from None
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if tls_cert is not None and tls_key is not None:
        _check_tls(tls_cert, tls_key)
    try:
        cors_origins = tuple(parse_origin(origin) for origin in cors_origins)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--cors-origin") from None
    postgres_url = db if db and is_postgres_url(db) else ""
    # On PostgreSQL the data directory holds only the credential files (when they do
    # not come from PROVD_ADMIN_TOKEN / PROVD_DAEMON_PSK), where the local CLI and
    # daemon look for them.
    db_path = credentials_db_path(db)
    psk_from_env = os.environ.get("PROVD_DAEMON_PSK", "")
    psk_off = daemon_psk_mode.lower() == "off" or psk_from_env.strip().lower() == "off"
    credentials_from_env = bool(os.environ.get("PROVD_ADMIN_TOKEN") and (psk_off or psk_from_env))
    if not postgres_url or not credentials_from_env:
        try:
            # Before the credentials are written in it: the directory is made 0700.
            prepare_data_dir(db_path)
        except StoreUnusable as error:
            _fail_to_start(str(error))
    settings = ServerSettings(
        listen=listen,
        db_path=db_path,
        postgres_url=postgres_url,
        admin_token=os.environ.get("PROVD_ADMIN_TOKEN")
        or load_or_create_secret(secret_path(db_path, ADMIN_TOKEN_FILE)),
        daemon_psk=daemon_psk(db_path, off=psk_off),
        synchronous="normal" if durability == "normal" else "full",
        limits=Limits(
            upload_max_bytes=upload_max_mib * MiB,
            payload_max_bytes=payload_max_mib * MiB,
            log_budget_bytes=log_budget_mib * MiB,
        ),
        shutdown_grace_seconds=shutdown_grace,
        tls_cert=tls_cert.resolve() if tls_cert else None,
        tls_key=tls_key.resolve() if tls_key else None,
        cors_origins=cors_origins,
        connections=ConnectionLimits(max_connections_per_peer=max_connections_per_peer),
        reapers=ReaperSettings(
            hang_timeout_seconds=hang_timeout, pending_timeout_seconds=pending_timeout
        ),
        heartbeat_interval_seconds=heartbeat_interval,
        poll_interval_seconds=poll_interval,
        log_poll_interval_seconds=log_poll_interval,
        retain_seconds=retain,
        log_format=log_format,
        log_level=log_level.lower(),
        otel_environment=_otel_environment(),
        metrics_listen=metrics_listen,
    )
    try:
        if workers > 1:
            clean = trio.run(_supervise_until_signalled, settings, workers)
            if not clean:
                sys.exit(1)
        else:
            trio.run(_serve_until_signalled, settings)
    except BaseException as error:
        message = startup_failure(error, listen)
        if message is None:
            raise
        _fail_to_start(message)


def _otel_environment() -> tuple[tuple[str, str], ...]:
    """The OTEL_* variables when they ask for spans and `provd[otel]` is installed;
    when it is not, one line says why the endpoint is ignored."""
    from provd.tracing import otel_environment, tracing_installed

    wanted = otel_environment(os.environ)
    if wanted and not tracing_installed():
        click.echo(
            "provd: an OTLP endpoint is set but provd[otel] is not installed; no spans"
            " are exported (pip install 'provd[otel]')",
            err=True,
        )
        return ()
    return wanted


def _print_config(db: str | None) -> None:
    """`--print-config`: every setting as TOML with its source, then the credentials,
    which come from the environment or from files beside the database (never shown)."""
    ctx = click.get_current_context()
    click.echo(f"# provd {__version__}: the settings of 'provd serve', each with its source")
    if ctx.meta.get(CONFIG_FILE_META):
        click.echo(f"# settings file: {ctx.meta[CONFIG_FILE_META]}")
    click.echo(format_effective_settings(effective_settings(ctx)))
    db_path = credentials_db_path(db)
    for name, env, file in (
        ("admin token", "PROVD_ADMIN_TOKEN", ADMIN_TOKEN_FILE),
        ("daemon PSK", "PROVD_DAEMON_PSK", DAEMON_PSK_FILE),
    ):
        value = os.environ.get(env, "")
        if value.strip().lower() == "off" and env == "PROVD_DAEMON_PSK":
            click.echo(f"# {name}: off  # env {env}")
        elif value:
            click.echo(f"# {name}: ***  # env {env}")
        else:
            click.echo(f"# {name}: ***  # file {secret_path(db_path, file)}")


def daemon_psk(db_path: Path, *, off: bool) -> str:
    """The daemons' pre-shared key: "" when it is off (`--daemon-psk off`, or
    PROVD_DAEMON_PSK=off: then no daemon-psk file is made either), else
    PROVD_DAEMON_PSK, else the daemon-psk file beside the database (made on first
    start)."""
    if off:
        return ""
    return os.environ.get("PROVD_DAEMON_PSK") or load_or_create_secret(
        secret_path(db_path, DAEMON_PSK_FILE)
    )


def _fail_to_start(message: str) -> NoReturn:
    click.echo(f"provd: {message}", err=True)
    sys.exit(2)


def startup_failure(error: BaseException, listen: str) -> str | None:
    """One line for an error that kept the server from starting, or None if `error`
    (or every error of a group) is something else."""
    from provd.errors import StoreUnusable
    from provd.workers import WorkerFailedToStart

    for leaf in _leaves(error):
        if isinstance(leaf, StoreUnusable):
            return str(leaf)
        if isinstance(leaf, WorkerFailedToStart):
            return f"{leaf}; its error is above"
        if isinstance(leaf, OSError) and leaf.errno in _BIND_ERRORS:
            return f"cannot listen on {listen}: {_BIND_ERRORS[leaf.errno]}"
    return None


_BIND_ERRORS = {
    errno.EADDRINUSE: "the address is already in use; stop what listens there, or choose"
    " another address with --listen (port 0 picks a free one)",
    errno.EACCES: "permission denied; ports below 1024 need privileges: choose a port"
    " above 1023 with --listen",
    errno.EADDRNOTAVAIL: "this machine has no such address; use one of its own (e.g."
    " 127.0.0.1) with --listen",
}


def _leaves(error: BaseException) -> Iterator[BaseException]:
    """`error` itself, or every error inside it if it is a group (nurseries make those)."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error


def _check_tls(cert: Path, key: Path) -> None:
    """Fail with a usage error now, not with a traceback once serving starts."""
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as error:
        raise click.BadParameter(
            f"cannot load {cert} with {key}: {error}", param_hint="--tls-cert/--tls-key"
        ) from None


async def _serve_until_signalled(settings: ServerSettings) -> None:
    import trio

    from provd.app import Running, serve

    stop = trio.Event()

    async def watch_signals(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                logger.info("%s, shutting down", signal.Signals(signum).name)
                stop.set()
                return

    async with trio.open_nursery() as nursery:
        await nursery.start(watch_signals)
        running: Running = await nursery.start(
            lambda task_status: serve(settings, shutdown_trigger=stop.wait, task_status=task_status)
        )
        click.echo(f"provd {__version__} listening on {running.url}")
        click.echo(f"database: {running.db_path}")
        if running.metrics_url:
            click.echo(f"metrics on {running.metrics_url}/metrics")
        sys.stdout.flush()


async def _supervise_until_signalled(settings: ServerSettings, count: int) -> bool:
    """`serve --workers N`: run the workers until SIGINT/SIGTERM, then drain them all.
    Returns whether every worker ended cleanly."""
    import trio

    from provd.workers import Supervised, supervise

    stop = trio.Event()
    clean = False

    async def watch_signals(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                if not stop.is_set():
                    name = signal.Signals(signum).name
                    logger.info("%s, draining %d workers", name, count)
                stop.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(watch_signals)

        async def run(task_status: trio.TaskStatus[Supervised]) -> None:
            nonlocal clean
            clean = await supervise(
                settings, count, shutdown_trigger=stop.wait, task_status=task_status
            )
            nursery.cancel_scope.cancel()

        supervised: Supervised = await nursery.start(run)
        pids = ", ".join(str(w.process.pid) for w in supervised.workers if w.process)
        click.echo(f"provd {__version__} listening on {supervised.url} ({count} workers: {pids})")
        click.echo(f"database: {settings.database}")
        if supervised.metrics_url:
            click.echo(f"metrics on {supervised.metrics_url}/metrics")
        sys.stdout.flush()
    return clean


@click.command("_worker", hidden=True)
def worker_command() -> None:
    """A worker process of `provd serve --workers` (started by it, not by people)."""
    import trio

    from provd.workers import read_spec, run_worker

    spec = read_spec()
    # The supervisor's log format and level, and the worker's number on every line.
    configure_logging(
        spec.settings.log_format, spec.settings.log_level, fields={"worker": spec.index}
    )
    try:
        trio.run(run_worker, spec)
    except BaseException as error:
        message = startup_failure(error, spec.settings.listen)
        if message is None:
            raise
        _fail_to_start(message)

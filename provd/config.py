"""provd's settings: one frozen object, from defaults < settings file < environment < flags.

The CLI resolves flags, environment (click's `envvar`) and the TOML file of `--config`
(click's `default_map`, provd.cli.settings); everything below the CLI receives a
finished `ServerSettings` and never reads the environment itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from provd.model import Limits
from provd.protocol import DEFAULT_LISTEN
from provd.reapers import ReaperSettings
from provd.rpc.connections import ConnectionLimits
from provd.secrets import default_db_path
from provd.store.sqlite import Synchronous


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 hosts in brackets) into its parts; raises ValueError."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


_QUERY_PASSWORD = re.compile(r"((?:^|&)password=)[^&]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """`url` with its password (if any) replaced by `***`, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(a PostgreSQL URL that is not valid)"
    if parts.password is not None:
        user, host = parts.username or "", parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{user}:***@{host}")
    query = _QUERY_PASSWORD.sub(r"\1***", parts.query)
    return urlunsplit(parts._replace(query=query))


@dataclass(frozen=True, slots=True)
class ServerSettings:
    listen: str = DEFAULT_LISTEN
    # A listening socket to serve instead of binding `listen` (a worker of
    # `provd serve --workers` gets one from its supervisor).
    listen_fd: int | None = None
    # The SQLite file; on PostgreSQL (`postgres_url` set) only where the credential
    # files live: beside it, in the data directory.
    db_path: Path = field(default_factory=default_db_path)
    # A postgresql:// (or postgres://) URL: serve that database instead of `db_path`.
    postgres_url: str = ""
    admin_token: str = ""
    # The daemons' pre-shared key; empty: off (`--daemon-psk off`), so that every
    # daemon needs a daemon key (docs/keys.md).
    daemon_psk: str = ""
    # "normal" trades the last transactions before a power cut for speed.
    synchronous: Synchronous = "full"
    limits: Limits = field(default_factory=Limits)
    reapers: ReaperSettings = field(default_factory=ReaperSettings)
    # How long a connection may take and how many one client address may hold.
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
    # How long the deprecated unary AcquireJob waits before an empty answer.
    unary_acquire_wait_seconds: float = 5.0
    # How often a log follower re-reads on its own (wake-ups are immediate).
    log_poll_interval_seconds: float = 1.0
    # The scheduler's backup poll for wake-ups it missed.
    poll_interval_seconds: float = 30.0
    # Daemons not seen for three of these are stale.
    heartbeat_interval_seconds: float = 10.0
    # How long in-flight requests get to finish on SIGINT/SIGTERM.
    shutdown_grace_seconds: float = 2.0
    # PEM files; with both set provd serves TLS only (ALPN h2, http/1.1) on `listen`.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Browser origins allowed to call provd (CORS); empty: no CORS headers at all.
    # "*" allows any origin.
    cors_origins: tuple[str, ...] = ()
    # Completed jobs older than this are deleted (provd.retention); 0 keeps everything.
    retain_seconds: float = 30 * 86_400.0
    # How provd's log lines look and which are written (provd.logging_setup); a worker
    # of `provd serve --workers` configures its logging from these.
    log_format: str = "text"
    log_level: str = "info"
    # The OTEL_* environment when it asks for spans (provd.tracing); empty: no tracing.
    otel_environment: tuple[tuple[str, str], ...] = ()
    # HOST:PORT that serves /metrics (and /healthz, /readyz) instead of the main port;
    # empty: /metrics is on the main port. Plain HTTP, no credentials.
    metrics_listen: str = ""
    # A listening socket to serve it on instead (a worker gets one from its supervisor).
    metrics_listen_fd: int | None = None

    @property
    def database(self) -> str:
        """Where the store is, for people: the file, or the URL without its password."""
        return redact_url(self.postgres_url) if self.postgres_url else str(self.db_path)

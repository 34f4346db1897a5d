"""Where a CLI command finds provd, with which admin token, and how a failed call is told.

Every command that calls the server takes `server_options`: `--url` (env `PROVD_URL`),
`--token` (env `PROVD_ADMIN_TOKEN`) and `--db` (env `PROVD_DB`), whose only use here is
to find the `admin-token` file that `provd serve` keeps beside its database. The
command receives a `Connection`; an `RpcError` it lets through becomes a `Failure`
(exit status 1) with a message that says what to do.

The calls go through `provd.client.connect_lite` (Connect over HTTP/1.1 on the
standard library), not connectrpc, whose import alone costs more than the CLI's
start-up budget (docs/performance.md, "CLI start-up"). It is imported by the first
call a command makes, so `--help` and bad usage stay cheap.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlsplit

import click
from click.core import ParameterSource

from provd.protocol import DEFAULT_URL

if TYPE_CHECKING:
    from google.protobuf.descriptor import ServiceDescriptor

    from provd.client.connect_lite import RpcError

    # The generated connectrpc clients' types: the light clients have their methods.
    from provd.gen.provd.v1.daemons_connect_client import DaemonServiceClientSync
    from provd.gen.provd.v1.jobs_connect_client import JobServiceClientSync
    from provd.gen.provd.v1.keys_connect_client import KeyServiceClientSync
    from provd.gen.provd.v1.quota_connect_client import QuotaServiceClientSync

F = TypeVar("F", bound=Callable[..., Any])


class Failure(click.ClickException):
    """The operation failed: `provd: <message>` on stderr, exit status 1."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"provd: {self.format_message()}", err=True)


@dataclass(frozen=True, slots=True)
class Connection:
    """A provd server and the admin token to present to it."""

    url: str
    token: str
    # Where the token came from, named in an `unauthenticated` error.
    token_source: str

    def jobs(self) -> JobServiceClientSync:
        from provd.gen.provd.v1 import jobs_pb2

        return cast("JobServiceClientSync", self._client(jobs_pb2, "JobService"))

    def daemons(self) -> DaemonServiceClientSync:
        from provd.gen.provd.v1 import daemons_pb2

        return cast("DaemonServiceClientSync", self._client(daemons_pb2, "DaemonService"))

    def keys(self) -> KeyServiceClientSync:
        from provd.gen.provd.v1 import keys_pb2

        return cast("KeyServiceClientSync", self._client(keys_pb2, "KeyService"))

    def quota(self) -> QuotaServiceClientSync:
        from provd.gen.provd.v1 import quota_pb2

        return cast("QuotaServiceClientSync", self._client(quota_pb2, "QuotaService"))

    def _client(self, module: Any, service: str) -> Any:
        """A client of `service` (in the generated `module`) that sends `Authorization:
        Bearer <token>`: the methods of connectrpc's generated sync client, over
        `provd.client.connect_lite`."""
        from provd.client.connect_lite import service_client

        descriptor: ServiceDescriptor = module.DESCRIPTOR.services_by_name[service]
        return service_client(self.url, descriptor, {"Authorization": f"Bearer {self.token}"})

    def describe(self, error: RpcError) -> str:
        """`error` in words, with what to try when that is not obvious."""
        if error.code == "unavailable" and isinstance(error.__cause__, OSError):
            # The transport failed: provd never answered. The message is the reason.
            return f"cannot reach provd at {self.url} ({error.message}); is 'provd serve' running?"
        message = f"{error.code}: {error.message}"
        if error.code == "unauthenticated":
            return f"{message} (the admin token came from {self.token_source})"
        if error.code == "unimplemented":
            return f"{message} (is {self.url} a provd server, and as new as this CLI?)"
        return message


def _check_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 (a port out of range raises)
    except ValueError as error:
        raise click.BadParameter(f"{value!r}: {error}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(
            f"{value!r} is not an http:// or https:// URL (e.g. {DEFAULT_URL})"
        )
    return value.rstrip("/")


def resolve_connection(url: str, token: str | None, db_path: str | None) -> Connection:
    """The token from --token or PROVD_ADMIN_TOKEN, else from the admin-token file
    beside the database; a `Failure` that says where it looked if there is none."""
    if token:
        source = click.get_current_context().get_parameter_source("token")
        named = "PROVD_ADMIN_TOKEN" if source is ParameterSource.ENVIRONMENT else "--token"
        return Connection(url, token, named)
    # Only here: provd.secrets imports the `secrets` module (hmac, hashlib, random).
    from provd.secrets import ADMIN_TOKEN_FILE, credentials_db_path, read_secret, secret_path

    path = secret_path(credentials_db_path(db_path), ADMIN_TOKEN_FILE)
    try:
        stored = read_secret(path)
    except OSError as error:
        raise Failure(f"cannot read the admin token in {path}: {error.strerror}") from None
    if not stored:
        raise Failure(
            f"no admin token: {path} does not exist or is empty. Pass --token, set"
            " PROVD_ADMIN_TOKEN, or point --db (PROVD_DB) at the database 'provd serve' uses"
        )
    return Connection(url, stored, str(path))


_SERVER_OPTIONS = (
    click.option(
        "--url",
        metavar="URL",
        envvar="PROVD_URL",
        default=DEFAULT_URL,
        show_default=True,
        callback=_check_url,
        help="The provd server (env PROVD_URL).",
    ),
    click.option(
        "--token",
        metavar="TOKEN",
        envvar="PROVD_ADMIN_TOKEN",
        default=None,
        help="Admin token (env PROVD_ADMIN_TOKEN)  [default: the admin-token file beside --db]",
    ),
    click.option(
        "--db",
        "db_path",
        metavar="PATH|URL",
        envvar="PROVD_DB",
        default=None,
        help="The server's database, to find its admin-token file (env PROVD_DB; for a"
        " postgresql:// URL, the default data directory's)"
        "  [default: $XDG_DATA_HOME/provd/provd.db]",
    ),
)


def server_options(command: F) -> F:
    """Add --url, --token and --db to `command`, which takes `connection: Connection`
    instead, and turn a failed call into a `Failure`."""

    @functools.wraps(command)
    def wrapper(*args: Any, url: str, token: str | None, db_path: str | None, **kwargs: Any) -> Any:
        connection = resolve_connection(url, token, db_path)
        try:
            return command(*args, connection=connection, **kwargs)
        except click.ClickException:
            raise
        except Exception as error:
            # Only a call to provd raises RpcError, and it has imported connect_lite.
            from provd.client.connect_lite import RpcError

            if not isinstance(error, RpcError):
                raise
            raise Failure(connection.describe(error)) from None

    decorated: Any = wrapper
    for option in reversed(_SERVER_OPTIONS):
        decorated = option(decorated)
    return decorated  # type: ignore[no-any-return]
